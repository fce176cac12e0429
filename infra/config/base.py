"""Shared base for the typed stack config: camelCase keys, unknown keys refused, values frozen, and the strict
field types every model uses (numbers, booleans, and strings bounded and checked as the Google APIs accept them)."""
from __future__ import annotations

import math
import re
import types
import unicodedata
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Mapping

from pydantic import AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, ValidationInfo, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

PROBLEMS_ERROR = "netra_problems"


def accepts_container(annotation: Any) -> frozenset[str]:
    """Which JSON containers ("object", "array") a field of this type takes."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return accepts_container(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return frozenset().union(*(accepts_container(a) for a in typing.get_args(annotation)))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) or origin in (dict, Mapping) or annotation is dict:
        return frozenset({"object"})
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple):
        return frozenset({"array"})
    return frozenset()


def decode_where_container(annotation: Any, value: Any) -> Any:
    """`value` with every JSON string decoded where the schema takes an object (or array) there, and only
    there. `pulumi config set --path KEY.a '{"x": 1}'` stores a *string* at `a` (the CLI types only
    true / false / integers); the engine hands it over as a string. Where the field takes an object,
    the string is decoded (and validated as that object); where it takes a string, it stays one."""
    from .source import EngineValueError, decode_engine_value

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return decode_where_container(args[0], value)
    if isinstance(value, str):
        accepted = accepts_container(annotation)
        if not accepted:
            return value
        try:
            decoded = decode_engine_value(value)
        except EngineValueError as e:
            raise ValueError(f"{'.'.join(map(str, e.path))}: {e}" if e.path else str(e)) from None
        kind = "object" if isinstance(decoded, dict) else "array" if isinstance(decoded, list) else None
        return decoded if kind in accepted else value
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if accepts_container(a)]
        return decode_where_container(members[0], value) if len(members) == 1 else value
    if origin in (dict, Mapping) and len(args) == 2 and isinstance(value, dict):
        return {k: decode_where_container(args[1], v) for k, v in value.items()}
    if origin is list and args and isinstance(value, list):
        return [decode_where_container(args[0], v) for v in value]
    return value


class ConfigModel(BaseModel):
    """Every config section: keys are camelCase as in Pulumi.<stack>.yaml, unknown keys are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=False,
        extra="forbid",
        frozen=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _decode_json_strings(cls, data: Any) -> Any:
        """Each field's value with JSON strings decoded where the field takes an object (`decode_where_container`)."""
        if not isinstance(data, dict):
            return data
        fields = model_alias_fields(cls)
        return {k: decode_where_container(fields[k].annotation, v) if k in fields else v for k, v in data.items()}


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


# --- strict field types ------------------------------------------------------------------------------
# The engine hands top-level config to programs as strings ("10", "true"), structured values as JSON, so
# numbers and booleans are accepted as such or as their exact string form, nothing looser: a boolean is
# never a number (pydantic's lax mode reads `true` as 1), a number never a boolean, `.inf`/`nan` never a
# number, and every number fits a JSON double exactly (the wire carries numbers as doubles).

MAX_INT = 2**53
# The Google APIs' integers are int32 unless the proto says otherwise (Cloud Storage's lifecycle `age`,
# Cloud Run's instance counts, Cloud SQL's retention days, ...): an Int beyond them is refused here, not
# by the API half-way through an update.
INT32_MIN, INT32_MAX = -2**31, 2**31 - 1
MAX_FLOAT = 1e15
_INT_TEXT = re.compile(r"[-+]?[0-9]{1,16}")
_FLOAT_TEXT = re.compile(r"[-+]?([0-9]{1,16}(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{1,3})?")


def _strict_int(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"must be a whole number, got {str(v).lower()}")
    if isinstance(v, str):
        if not _INT_TEXT.fullmatch(v):
            raise ValueError(f"must be a whole number, got {v!r}")
        v = int(v)
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"must be a finite whole number, got {v}")
    if isinstance(v, (int, float)) and not INT32_MIN <= v <= INT32_MAX:
        raise ValueError(f"must be between {INT32_MIN} and {INT32_MAX} (the Google APIs' 32-bit integers), "
                         f"got {v if isinstance(v, int) else format(v, '.10g')}")
    return v


def _strict_float(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"must be a number, got {str(v).lower()}")
    if isinstance(v, str):
        if not _FLOAT_TEXT.fullmatch(v):
            raise ValueError(f"must be a number, got {v!r}")
        v = float(v)
    if isinstance(v, (int, float)):
        if not math.isfinite(v):
            raise ValueError(f"must be a finite number, got {v}")
        if abs(v) > MAX_FLOAT:
            raise ValueError(f"must be between -1e15 and 1e15, got {v:.6g}")
    return v


def _strict_bool(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return v == "true"
    raise ValueError(f"must be true or false, got {v!r}")


Int = Annotated[int, BeforeValidator(_strict_int)]
Float = Annotated[float, BeforeValidator(_strict_float), AllowInfNan(False)]
Bool = Annotated[bool, BeforeValidator(_strict_bool)]

# Characters no config value needs and which hide in a terminal: control characters (a trailing newline
# included), zero-width and other format characters, line/paragraph separators, private-use, unassigned.
_HIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"}


def _clean_text(v: Any) -> Any:
    if not isinstance(v, str):
        raise ValueError(f"must be a string, got {_shown(v)}")
    bad = next((c for c in v if unicodedata.category(c) in _HIDDEN_CATEGORIES), None)
    if bad is not None:
        raise ValueError(f"must not contain control or invisible characters, got U+{ord(bad):04X} in {_shown(v)}")
    if v != v.strip():
        raise ValueError(f"must not start or end with whitespace, got {_shown(v)}")
    return v


def _shown(v: Any, limit: int = 80) -> str:
    text = repr(v)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(v) if isinstance(v, str) else len(text)} characters)"


@dataclass(frozen=True)
class Allowed:
    """What a string field accepts, in words, for the generated config reference (docs/reference/config.md);
    pydantic ignores this metadata, the field's validators enforce it."""

    what: str


def text(max_length: int, pattern: str | None = None, what: str = "") -> Any:
    """A string of at most `max_length` characters without control or invisible characters or surrounding
    whitespace; `pattern` (matched against the whole string) narrows it to what the Google API accepts,
    `what` says so in the error."""
    regex = re.compile(pattern) if pattern else None

    def check(v: str) -> str:
        if len(v) > max_length or (regex is not None and not regex.fullmatch(v)):
            rule = what or (f"match {pattern}" if pattern else "")
            raise ValueError(f"must be {rule + ', ' if rule else ''}at most {max_length} characters, got {_shown(v)}")
        return v

    return Annotated[str, BeforeValidator(_clean_text), AfterValidator(check),
                     Allowed(f"{what}, at most {max_length} characters" if what else f"text, at most {max_length} characters")]


def checked(problem: Any, what: str) -> Any:
    """A clean string whose `problem(value)` (a message, or None when fine) must be None; `what` says in
    words what it accepts (the config reference)."""

    def check(v: str) -> str:
        found = problem(v)
        if found:
            raise ValueError(found)
        return v

    return Annotated[str, BeforeValidator(_clean_text), AfterValidator(check), Allowed(what)]


Text = text(1024)
# An IAM member as the IAM API accepts it: `<kind>:<email>` (user, group, serviceAccount) or `domain:<domain>`,
# ASCII only (an email's local part, a DNS domain with a letter TLD).
_DOMAIN = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
_EMAIL = r"[A-Za-z0-9][A-Za-z0-9._%+'-]{0,63}@" + _DOMAIN


def iam_member(*kinds: str) -> Any:
    """A member of one of `kinds` (user, group, serviceAccount, domain), e.g. group:sre@netra.ai."""
    emails = [k for k in kinds if k != "domain"]
    pattern = "|".join(([f"(?:{'|'.join(emails)}):{_EMAIL}"] if emails else []) +
                       ([f"domain:{_DOMAIN}"] if "domain" in kinds else []))
    examples = ", ".join(f"{k}:{'netra.ai' if k == 'domain' else 'name@netra.ai'}" for k in kinds)
    return text(320, f"(?:{pattern})", f"an IAM member ({examples}; ASCII email or domain)")
# RFC 1035 label: Cloud Run service and revision names (the API allows 63 characters).
RFC1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
ResourceName = text(63, RFC1035, "an RFC 1035 name (lowercase letters, digits and -, starting with a letter, "
                                 "not ending with -)")
# GCP label values: lowercase letters, digits, _ and -.
LabelValue = text(63, r"[a-z0-9_-]*", "a label value (lowercase letters, digits, _ and -)")
UrlPath = text(1024, r"/[\x21-\x7e]*", "a URL path starting with / (printable ASCII, no spaces)")

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}\Z")
# REGISTRY[:PORT]/PATH[:TAG][@sha256:DIGEST], as Docker and Artifact Registry accept it (lowercase path)
IMAGE = re.compile(r"[a-z0-9]([a-z0-9.\-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._\-]+[a-z0-9]+)*)+"
                   r"(:[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})?(@sha256:[0-9a-f]{64})?")
HOSTNAME_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def image_problem(v: str) -> str | None:
    if len(v) > 1024 or not IMAGE.fullmatch(v):
        return f"must be a container image reference like REGISTRY/PATH[:TAG][@sha256:DIGEST], got {_shown(v)}"
    return None


def hostname_problem(name: Any) -> str | None:
    if not isinstance(name, str):
        return f"must be a hostname like app.example.com, got {_shown(name)}"
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(HOSTNAME_LABEL.fullmatch(lbl) for lbl in labels) or labels[-1].isdigit():
        return f"must be a fully qualified hostname like app.example.com (lowercase, no wildcard, no scheme), got {_shown(name)}"
    return None


def email_problem(v: str) -> str | None:
    local, at, domain = v.rpartition("@")
    if not at or len(v) > 254 or len(local) > 64 or not EMAIL_LOCAL.fullmatch(local) or hostname_problem(domain.lower()):
        return f"must be an email address like oncall@example.com, got {_shown(v)}"
    return None


Image = checked(image_problem, "a container image reference REGISTRY/PATH[:TAG][@sha256:DIGEST]")
Hostname = checked(hostname_problem, "a fully qualified hostname like app.example.com (lowercase, no wildcard)")
Email = checked(email_problem, "an email address")


def distinct(values: Any) -> Any:
    """A list whose items each name one thing (a resource, a route): a repeat would register the same
    resource twice, which the engine refuses halfway through an update."""
    found = [(str(i), f"repeats {v!r}") for i, v in enumerate(values) if v in list(values)[:i]]
    if found:
        raise problems(*found)
    return values


Distinct = AfterValidator(distinct)


def unwrap_type(t: Any) -> Any:
    """Optional[X] / Annotated[X, ...] -> X (the field type a config path ends on)."""
    while True:
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            t = typing.get_args(t)[0]
        elif origin is typing.Union:
            args = [a for a in typing.get_args(t) if a is not type(None)]
            if len(args) != 1:
                return t
            t = args[0]
        else:
            return t


def type_at(model: Any, parts: Any) -> Any:
    """Walk a config model's types along `parts` (keys as users write them, list indexes) to the type
    found there, or None where the path leaves the model."""
    node: Any = model
    for part in parts:
        node = unwrap_type(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = model_alias_fields(node).get(part)
            if field is None:
                return None
            node = field.annotation
        elif typing.get_origin(node) in (dict, Mapping):
            node = typing.get_args(node)[1]
        elif typing.get_origin(node) in (list, tuple):
            node = typing.get_args(node)[0]
        else:
            return None
    return node
