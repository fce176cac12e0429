"""`compute`: pulumi_gcp.compute as the components import it.

In the offline plan only the modules in `MODULES` are loaded (the workaround lives in
infra/compat/gcp_compute.py, pinned to the pulumi_gcp version it was written for); under `pulumi up`
and `pulumi preview` this is the real `pulumi_gcp.compute`. A component that needs another compute
resource adds its module to `infra.compat.gcp_compute.MODULES`.
"""
from infra.compat.gcp_compute import MODULES, compute_package

compute = compute_package()

__all__ = ["MODULES", "compute"]
