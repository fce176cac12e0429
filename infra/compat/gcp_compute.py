"""`pulumi_gcp.compute` for the offline plan, importing only the resource modules the platform uses.

The package's `__init__` imports all of its ~290 resource modules up front: about 1 s of the offline
plan (measured: 1.04 s of a 3.0 s `plan --stack prod`), while the platform needs 13 of them plus the
shared `_inputs`/`outputs`. The partial package is the `pulumi_gcp.compute` module object with only
those loaded; its classes are the real typed resources and `*Args`. The first read of a name not
loaded runs the package's own `__init__` (in the same module object), so code reading
`pulumi_gcp.compute.<anything>` keeps working.

Only in the offline plan: `infra/plan/engine.py` calls `use_partial_compute()` when it is imported,
before the program is. Under `pulumi up` / `preview` nothing imports the engine, so `compute_package()`
is the real package imported in full, exactly as pulumi_gcp ships it. Also full when the installed
pulumi_gcp is not the version this was written for (pinned in infra/compat/__init__.py): the plan is
then slower, never wrong, and tests/test_compat.py fails naming this workaround.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from pathlib import Path

import pulumi_gcp

PACKAGE = "pulumi_gcp.compute"
MODULES = (
    "network", "subnetwork", "global_address", "managed_ssl_certificate", "ssl_policy", "security_policy",
    "region_network_endpoint_group", "backend_service", "backend_bucket", "url_map", "target_https_proxy",
    "target_http_proxy", "global_forwarding_rule",
    # the analytics cluster (infra/components/clickhouse/)
    "firewall", "router", "router_nat", "address", "disk", "instance_template", "instance_group_manager",
    "per_instance_config", "health_check", "region_backend_service", "forwarding_rule",
)
_lock = threading.RLock()


def _executed(module: object) -> bool:
    """True for a fully imported package; never touches a lazy module (any attribute read loads it all)."""
    if module is None or type(module) is not types.ModuleType:  # pulumi's/importlib's lazy module subclasses
        return False
    return "Autoscaler" in module.__dict__


def _load() -> types.ModuleType:
    with _lock:
        existing = sys.modules.get(PACKAGE)
        if _executed(existing) or getattr(type(existing), "__netra_partial__", False):
            return existing
        directory = Path(pulumi_gcp.__file__).parent / "compute"
        spec = importlib.util.spec_from_file_location(
            PACKAGE, directory / "__init__.py", submodule_search_locations=[str(directory)])

        class PartialPackage(types.ModuleType):
            __netra_partial__ = True

            def __getattr__(self, name: str):  # only called for names not loaded yet
                if name.startswith("__"):
                    raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")
                submodule = sys.modules.get(f"{PACKAGE}.{name}")
                if submodule is not None:  # `from . import outputs` while outputs itself is loading
                    return submodule
                with _lock:
                    self.__class__ = types.ModuleType  # the real package from now on
                    spec.loader.exec_module(self)
                return getattr(self, name)

        if isinstance(existing, types.ModuleType) and type(existing).__name__ == "_LazyModule":
            # pulumi_gcp's own not-yet-loaded module: keep the object (others may hold it), change its class
            package = existing
        else:
            package = importlib.util.module_from_spec(spec)
        package.__class__ = PartialPackage
        sys.modules[PACKAGE] = package
        pulumi_gcp.compute = package
        for name in ("outputs", "_inputs", *MODULES):
            module = importlib.import_module(f"{PACKAGE}.{name}")
            for attr in getattr(module, "__all__", ()):
                setattr(package, attr, getattr(module, attr))
        return package



_partial_wanted = False


def use_partial_compute() -> None:
    """The offline plan's switch: later `compute_package()` calls load only `MODULES`."""
    global _partial_wanted
    _partial_wanted = True


def partial_compute_active() -> bool:
    from infra.compat import pinned

    return _partial_wanted and pinned("pulumi_gcp")


def compute_package() -> types.ModuleType:
    """`pulumi_gcp.compute`: partial in the offline plan, the real package everywhere else."""
    if partial_compute_active():
        return _load()
    return importlib.import_module(PACKAGE)
