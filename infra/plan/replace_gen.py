"""Generate the replace table (infra/plan/replace_table.json) from the provider's own schema source.

pulumi-gcp is the Terraform Google provider (google-beta) bridged: an input the Terraform schema marks
`ForceNew` (or a `CustomizeDiff` marks with `ForceNew` / `customdiff.ForceNewIf*`) replaces the resource
when it changes. The installed wheel carries no schema, so this works in two steps:

    python -m infra.plan.replace_gen extract --provider-git DIR [--rev REV]
        reads the Go source of terraform-provider-google-beta (a git directory, e.g. the one `fetch
        github:hashicorp/terraform-provider-google-beta` brings) and writes the vendored extract
        infra/plan/replace_extract.json: per Terraform resource the program uses, its ForceNew attribute
        paths, its conditional ones (with the CustomizeDiff function that decides) and its list blocks
        of at most one item; with the source's commit and date.
    python -m infra.plan.replace_gen generate
        offline: maps the extract to Pulumi type tokens and wire (camelCase) property paths, checked
        against the installed pulumi_gcp's typed `*Args` classes, and writes the table with its
        provenance (the pulumi_gcp version it was generated for; tests/test_replace.py fails when the
        installed version differs).

The random and tls providers (plugin framework) mark every configurable attribute `RequiresReplace`;
their entries are in the extract as read from those schemas (`FRAMEWORK`, below).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterator, Optional

HERE = Path(__file__).resolve().parent
EXTRACT = HERE / "replace_extract.json"
TABLE = HERE / "replace_table.json"

# terraform-provider-random / -tls (plugin framework): every argument has a RequiresReplace plan modifier
# (random_password: length, special, upper, lower, numeric, min_*, override_special, keepers; the tls
# resources: every input). Read from those providers' schemas; kept here because they are short.
FRAMEWORK = {
    "random_password": ["keepers", "length", "lower", "min_lower", "min_numeric", "min_special", "min_upper",
                        "number", "numeric", "override_special", "special", "upper"],
    "tls_private_key": ["algorithm", "ecdsa_curve", "rsa_bits"],
    "tls_self_signed_cert": ["allowed_uses", "dns_names", "early_renewal_hours", "ip_addresses",
                             "is_ca_certificate", "private_key_pem", "set_authority_key_id", "set_subject_key_id",
                             "subject", "uris", "validity_period_hours"],
    "tls_cert_request": ["dns_names", "ip_addresses", "private_key_pem", "subject", "uris"],
    "tls_locally_signed_cert": ["allowed_uses", "ca_cert_pem", "ca_private_key_pem", "cert_request_pem",
                                "early_renewal_hours", "is_ca_certificate", "set_subject_key_id",
                                "validity_period_hours"],
}


# ------------------------------------------------------------------ a small reader of Go composite literals

def _skip(src: str, i: int) -> int:
    """Index after a string, raw string, rune or comment starting at i (or i itself if none starts)."""
    c = src[i]
    if c == '"' or c == "'":
        j = i + 1
        while src[j] != c:
            j += 2 if src[j] == "\\" else 1
        return j + 1
    if c == "`":
        return src.index("`", i + 1) + 1
    if src.startswith("//", i):
        j = src.find("\n", i)
        return len(src) if j < 0 else j
    if src.startswith("/*", i):
        return src.index("*/", i) + 2
    return i


def _brackets(src: str, i: int = 0):
    """(index, character, depth after it) of every bracket and comma from i on, outside strings and
    comments."""
    depth = 0
    while i < len(src):
        j = _skip(src, i)
        if j != i:
            i = j
            continue
        c = src[i]
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
        if c in "{([})],":
            yield i, c, depth
        i += 1


def close_of(src: str, i: int) -> int:
    """Index of the bracket closing the one at i."""
    for k, c, depth in _brackets(src, i):
        if c in "})]" and depth == 0:
            return k
    raise ValueError("unbalanced")


def split_top(body: str) -> list[str]:
    """The comma-separated items of a composite literal's body, at its top level."""
    out, start = [], 0
    for k, c, depth in _brackets(body):
        if c == "," and depth == 0:
            out.append(body[start:k].strip())
            start = k + 1
    if body[start:].strip():
        out.append(body[start:].strip())
    return out


def _uncommented(item: str) -> str:
    while True:
        item = item.lstrip()
        j = _skip(item, 0) if item.startswith(("//", "/*")) else 0
        if not j:
            return item
        item = item[j:]


def key_value(item: str) -> Optional[tuple[str, str]]:
    item = _uncommented(item)
    m = re.match(r'\s*("(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*)\s*:\s*', item, re.S)
    if not m:
        return None
    return m.group(1).strip('"'), item[m.end():].strip()


def literal_body(expr: str) -> Optional[str]:
    """The body of `&schema.X{...}`, `map[..]..{...}` or a bare `{...}`."""
    i = expr.find("{")
    if i < 0:
        return None
    head = expr[:i].strip()
    if head and not re.fullmatch(r"&?[A-Za-z0-9_.]+|map\[string\]\*?schema\.Schema", head):
        return None
    return expr[i + 1:close_of(expr, i)]


class Source:
    """Function bodies by name over the provider's Go files (non-test)."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.funcs: dict[str, str] = {}
        self.vars: dict[str, str] = {}  # package-level `var X = map[string]*schema.Schema{...}`
        for text in files.values():
            for m in re.finditer(r"^func ([A-Za-z0-9_]+)\([^)]*\)[^{\n]*\{", text, re.M):
                body = text[m.end() - 1:close_of(text, m.end() - 1) + 1]
                self.funcs.setdefault(m.group(1), body)
            for m in re.finditer(r"^var ([A-Za-z0-9_]+) = (map\[string\]\*schema\.Schema)\{", text, re.M):
                brace = m.end() - 1
                self.vars.setdefault(m.group(1), text[m.start(2):close_of(text, brace) + 1])

    def returned(self, name: str) -> Optional[str]:
        """The composite literal a function returns (`return &schema.Resource{...}`), as an expression."""
        body = self.funcs.get(name.rsplit(".", 1)[-1])
        if body is None:
            return None
        m = re.search(r"return\s+(&?[A-Za-z0-9_.]+\{|map\[string\]\*schema\.Schema\{)", body)
        if not m:
            return None
        start = m.start(1)
        brace = body.index("{", start)
        return body[start:close_of(body, brace) + 1]


CALL = re.compile(r"^([A-Za-z0-9_.]+)\(\)$")


class Extractor:
    def __init__(self, source: Source):
        self.src = source

    def schema_map(self, expr: str) -> Optional[str]:
        """The body of the schema map `expr` is: a literal, a function returning one, a package variable, or
        `MergeSchemas(a, b, ...)` of those (bodies joined)."""
        expr = expr.strip()
        merge = re.fullmatch(r"(?:tpgresource\.)?MergeSchemas\((.*)\)", expr, re.S)
        if merge:
            parts = [self.schema_map(a) for a in split_top(merge.group(1))]
            return None if None in parts else ",\n".join(parts)
        if re.fullmatch(r"[A-Za-z0-9_.]+", expr):
            expr = self.src.vars.get(expr.rsplit(".", 1)[-1], "")
        m = CALL.match(expr)
        if m:
            expr = self.src.returned(m.group(1)) or ""
        return literal_body(expr) if expr.startswith("map[") else None

    def fields(self, map_body: str, prefix: str, out: dict) -> None:
        for item in split_top(map_body):
            kv = key_value(item)
            if kv is None:
                continue
            name, value = kv
            m = CALL.match(value)
            if m:
                value = self.src.returned(m.group(1)) or ""
            body = literal_body(value)
            if body is None:
                out["unread"].append(f"{prefix}{name}")
                continue
            attrs = dict(kv2 for kv2 in map(key_value, split_top(body)) if kv2)
            path = f"{prefix}{name}"
            if attrs.get("ForceNew") == "true":
                out["forceNew"].append(path)
            if attrs.get("MaxItems") == "1":
                out["maxItemsOne"].append(path)
            if attrs.get("Computed") == "true" and "Optional" not in attrs and "Required" not in attrs:
                continue  # output only
            elem = attrs.get("Elem")
            if elem:
                m = CALL.match(elem)
                elem_expr = (self.src.returned(m.group(1)) or "") if m else elem
                rbody = literal_body(elem_expr) if "Resource" in elem_expr.split("{", 1)[0] else None
                if rbody is not None:
                    inner = dict(kv2 for kv2 in map(key_value, split_top(rbody)) if kv2)
                    sm = self.schema_map(inner.get("Schema", ""))
                    if sm is not None:
                        self.fields(sm, path + ".", out)

    def resource(self, func: str) -> dict:
        out = {"forceNew": [], "forceNewIf": [], "maxItemsOne": [], "unread": []}
        fbody = self.src.funcs.get(func.rsplit(".", 1)[-1], "") if "(" not in func else f"return {func}"
        iam = re.search(r"return\s+(?:tpgiamresource\.)?ResourceIamMember\(\s*([A-Za-z0-9_.]+)", fbody)
        if iam:  # an IAM member: the generic member schema merged with its parent's (tpgiamresource)
            sm = self.schema_map(f"MergeSchemas(IamMemberBaseSchema, {iam.group(1)})")
            if sm is None:
                out["unread"].append(f"{func}(): IAM member schema")
            else:
                self.fields(sm, "", out)
            return {k: sorted(set(v)) if k != "forceNewIf" else v for k, v in out.items()}
        expr = self.src.returned(func)
        body = literal_body(expr or "")
        if body is None:
            out["unread"].append(f"{func}(): no schema.Resource literal")
            return out
        top = dict(kv for kv in map(key_value, split_top(body)) if kv)
        sm = self.schema_map(top.get("Schema", ""))
        if sm is None:
            out["unread"].append(f"{func}(): Schema is not a map literal")
        else:
            self.fields(sm, "", out)
        diff = top.get("CustomizeDiff", "")
        for m in re.finditer(r"ForceNewIf(?:Change)?\(\s*\"([^\"]+)\"\s*,\s*([A-Za-z0-9_.]+)", diff):
            out["forceNewIf"].append({"path": _dotted(m.group(1)), "when": m.group(2)})
        for name in sorted(set(re.findall(r"\b([A-Za-z_][A-Za-z0-9_.]*)\b", diff))):
            fbody = self.src.funcs.get(name.rsplit(".", 1)[-1])
            if fbody is None or "customdiff" in name:
                continue
            for p in re.findall(r"\.ForceNew\(\s*\"([^\"]+)\"", fbody):
                out["forceNewIf"].append({"path": _dotted(p), "when": name})
        for k in out:
            if k == "forceNewIf":
                out[k] = [dict(t) for t in sorted({tuple(sorted(d.items())) for d in out[k]})]
            else:
                out[k] = sorted(set(out[k]))
        return out


def _dotted(tf_path: str) -> str:
    """settings.0.disk_size -> settings.disk_size."""
    return ".".join(p for p in tf_path.split(".") if not p.isdigit())


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", repo, *args], capture_output=True, text=True, check=True).stdout


def extract(repo: str, rev: str, tf_types: set[str]) -> dict:
    names = [p for p in _git(repo, "ls-tree", "-r", "--name-only", rev, "google-beta/").splitlines()
             if p.endswith(".go") and not p.endswith("_test.go") and ("/services/" in p or "/tpgresource/" in p or "/tpgiamresource/" in p)]
    files = {}
    for p in names:  # one `git cat-file --batch` would be faster; this runs once per provider bump
        files[p] = None
    batch = subprocess.run(["git", "--git-dir", repo, "cat-file", "--batch"], input="".join(f"{rev}:{p}\n" for p in files).encode(),
                           capture_output=True, check=True).stdout
    pos = 0
    for p in list(files):
        header_end = batch.index(b"\n", pos)
        size = int(batch[pos:header_end].split()[2])
        files[p] = batch[header_end + 1:header_end + 1 + size].decode("utf-8", "replace")
        pos = header_end + 1 + size + 1
    source = Source(files)
    registered: dict[str, str] = {}
    for text in files.values():
        for m in re.finditer(r"registry\.Schema\{", text):
            body = text[m.end() - 1:close_of(text, m.end() - 1)]
            name = re.search(r'Name:\s*"([a-z0-9_]+)"', body)
            func = re.search(r"Schema:\s*([A-Za-z0-9_.]+)\(\)", body)
            iam = re.search(r"Schema:\s*(?:tpgiamresource\.)?ResourceIamMember\(\s*([A-Za-z0-9_.]+)", body)
            if name and ("SchemaTypeResource" in body or "SchemaTypeIAMResource" in body):
                if func:
                    registered[name.group(1)] = func.group(1)
                elif iam:  # generated IAM members name their parent's schema in the registration itself
                    registered[name.group(1)] = f"ResourceIamMember({iam.group(1)})"
    ex = Extractor(source)
    resources = {}
    for tf in sorted(tf_types):
        if tf in FRAMEWORK:
            resources[tf] = {"forceNew": FRAMEWORK[tf], "forceNewIf": [], "maxItemsOne": [], "unread": [],
                             "source": "plugin-framework RequiresReplace"}
        elif tf in registered:
            resources[tf] = {**ex.resource(registered[tf]), "source": registered[tf]}
        else:
            resources[tf] = {"forceNew": [], "forceNewIf": [], "maxItemsOne": [], "unread": ["not registered in the source"],
                             "source": None}
    commit = _git(repo, "rev-parse", rev).strip()
    date = _git(repo, "log", "-1", "--format=%cI", rev).strip()
    return {"provider": "hashicorp/terraform-provider-google-beta", "commit": commit, "commitDate": date,
            "note": "ForceNew / CustomizeDiff ForceNew per Terraform resource the program registers; random and tls "
                    "from their plugin-framework schemas (RequiresReplace)",
            "resources": resources}


# ------------------------------------------------------------------ generate: the extract in Pulumi's terms

def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _candidates(tf_name: str) -> list[str]:
    c = _camel(tf_name)
    return [c, c + "s", c[:-1] + "ies" if c.endswith("y") else c + "es", c + "es"]


def wire_path(type_token: str, tf_path: str, singular: dict) -> Optional[str]:
    """`settings.ip_configuration.private_network` -> `settings.ipConfiguration.privateNetwork`, following the
    SDK's `*Args` classes (pluralised list names included); None if the SDK has no such input."""
    from .tfplan import _fields, args_class

    try:
        cls = args_class(type_token)
    except (AttributeError, ImportError):
        return None
    out, snake_path = [], ""
    for seg in tf_path.split("."):
        fields = _fields(cls) if cls is not None else {}
        found = None
        for wire, (kind, nested, snake) in fields.items():
            sub = f"{snake_path}.{snake}" if snake_path else snake
            if wire in _candidates(seg) or singular.get(sub) == seg:
                found = (wire, kind, nested, sub)
                break
        if found is None:
            return None
        wire, kind, nested, snake_path = found
        out.append(wire)
        cls = nested if kind in ("block", "blocks") else None
    return ".".join(out)


def generate(extract_doc: dict, type_map: dict[str, str]) -> dict:
    from .tfplan import SINGULAR_BLOCKS

    version = metadata.version("pulumi_gcp")
    types = {}
    for token, tf in sorted(type_map.items()):
        e = extract_doc["resources"].get(tf)
        if e is None:
            continue
        singular = {sdk_path: name for (t, sdk_path), name in SINGULAR_BLOCKS.items() if t == tf}
        entry = {"terraform": tf, "replaceOnChanges": [], "replaceIf": [], "notInSdk": []}
        for p in e["forceNew"]:
            w = wire_path(token, p, singular)
            (entry["replaceOnChanges"].append(w) if w else entry["notInSdk"].append(p))
        for c in e["forceNewIf"]:
            w = wire_path(token, c["path"], singular)
            if w:
                entry["replaceIf"].append({"path": w, "when": c["when"]})
            else:
                entry["notInSdk"].append(c["path"])
        entry["replaceOnChanges"].sort()
        types[token] = entry
    return {
        "header": ("Replace-on-change input paths (wire names) per resource type the program registers. Generated by "
                   "`python -m infra.plan.replace_gen generate` from infra/plan/replace_extract.json, the ForceNew "
                   "attributes read from the Terraform provider's Go source (pulumi-gcp bridges "
                   "terraform-provider-google-beta); do not edit."),
        "pulumiGcpVersion": version,
        "source": {k: extract_doc[k] for k in ("provider", "commit", "commitDate")},
        "types": types,
    }


def program_types() -> dict[str, str]:
    """Pulumi type token -> Terraform type of every resource the program registers (infra/plan/tfplan.py)."""
    from .tfplan import TF_TYPES

    return dict(TF_TYPES)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.plan.replace_gen", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="read the provider's Go source into infra/plan/replace_extract.json")
    e.add_argument("--provider-git", required=True, help="git directory of terraform-provider-google-beta")
    e.add_argument("--rev", default="HEAD")
    g = sub.add_parser("generate", help="write infra/plan/replace_table.json from the extract (offline)")
    g.add_argument("--check", action="store_true", help="exit 1 if the committed table differs from a fresh one")
    args = p.parse_args(argv)
    if args.cmd == "extract":
        doc = extract(args.provider_git, args.rev, set(program_types().values()))
        EXTRACT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        unread = {k: v["unread"] for k, v in doc["resources"].items() if v["unread"]}
        print(f"wrote {EXTRACT.name}: {len(doc['resources'])} resources; unread: {json.dumps(unread)[:2000]}")
        return 0
    table = generate(json.loads(EXTRACT.read_text()), program_types())
    text = json.dumps(table, indent=1, sort_keys=True) + "\n"
    if args.check:
        same = TABLE.exists() and TABLE.read_text() == text
        print("replace table up to date" if same else "replace table stale: run python -m infra.plan.replace_gen generate")
        return 0 if same else 1
    TABLE.write_text(text)
    print(f"wrote {TABLE.name}: {len(table['types'])} types, pulumi_gcp {table['pulumiGcpVersion']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
