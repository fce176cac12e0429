"""Netra go-live policies, one module per area. `ALL` is what policies/__main__.py packs."""
from . import analytics, cloudrun, data, edge, exposure, iam, stack, stateful

ALL = [*cloudrun.POLICIES, *data.POLICIES, *edge.POLICIES, *exposure.POLICIES, *stack.POLICIES, *analytics.POLICIES,
       *iam.POLICIES, *stateful.POLICIES]
PACK_NAME = "netra-go-live"

__all__ = ["ALL", "PACK_NAME"]
