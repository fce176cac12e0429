"""Shared base for the typed stack config: camelCase keys, unknown keys refused, values frozen."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

PROBLEMS_ERROR = "netra_problems"


class ConfigModel(BaseModel):
    """Every config section: keys are camelCase as in Pulumi.<stack>.yaml, unknown keys are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=False,
        extra="forbid",
        frozen=True,
    )


def problems(*items: tuple[str, str]) -> PydanticCustomError:
    """A validator's error carrying (sub-key, message) pairs, so each problem names its own key.

    A check over a map (env, secrets) reports each entry under its own key; the loader expands
    these pairs into one line each.
    """
    return PydanticCustomError(
        PROBLEMS_ERROR,
        "{summary}",
        {"summary": "; ".join(f"{k}: {m}" for k, m in items), "problems": list(items)},
    )


def ordered_after(value: int, info: ValidationInfo, field: str, op: str) -> int:
    """`value` must be `op` ("<=" or ">") the already-validated `field`; skipped when that field is broken,
    so this check still reports alongside its errors."""
    other = info.data.get(field)
    if other is not None and not (value <= other if op == "<=" else value > other):
        raise ValueError(f"must be {op} {to_camel(field)} ({other}), got {value}")
    return value


def model_alias_fields(model: type[BaseModel]) -> dict[str, Any]:
    """camelCase key -> field info, for did-you-mean suggestions and path walking."""
    return {(f.alias or name): f for name, f in model.model_fields.items()}
