"""`python -m infra plan --stack STACK [--json]`: the offline plan, the project's main job."""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

EXIT_OK, EXIT_POLICY, EXIT_USAGE = 0, 1, 2
FORMATS = ("text", "json", "tfplan-json")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plan", help="offline plan of a stack: resources, traffic, policy violations",
                              description="Run the Pulumi program offline under Pulumi's mocks with Pulumi.STACK.yaml "
                                          "and check it with the policy pack. Exit 0 ok, 1 mandatory policy violation, "
                                          "2 invalid config or usage.")
    p.add_argument("--stack", required=True, help="stack name: reads Pulumi.STACK.yaml")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout (= --format json)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="text (default), json, or tfplan-json: the plan as Terraform plan JSON for Terraform-ecosystem "
                        "scanners such as Checkov (no policy check; secrets exported as null + sensitive_values)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for this plan only, e.g. netra:canaryPercent=10 "
                        "(value parsed as YAML; dotted paths like netra:services.backend.canaryPercent)")
    p.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    from infra.config import ConfigError
    from infra.plan import StackFileError, checked_run, plan_document

    fmt = args.format or ("json" if args.json else "text")
    if args.json and fmt != "json":
        print(f"error: --json and --format {fmt} disagree; use one of them", file=sys.stderr)
        return EXIT_USAGE
    try:
        result, violations = checked_run(args.stack, overrides=parse_overrides(args.set), policy=fmt != "tfplan-json")
    except (ValueError, StackFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as e:
        print(f"error: invalid config for stack {args.stack!r} ({len(e.problems)} problem(s)); nothing registered:",
              file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    if fmt == "tfplan-json":
        from infra.plan.tfplan import export

        json.dump(export(result.resources), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    doc = plan_document(result, violations)
    if fmt == "json":
        json.dump(doc, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(doc))
    return EXIT_POLICY if any(v["level"] == "mandatory" for v in violations) else EXIT_OK


def render_text(doc: dict) -> str:
    lines = [f"Plan of {doc['project']}/{doc['stack']} (offline, Pulumi mocks): {len(doc['resources'])} resources", ""]
    children = defaultdict(list)
    by_urn = {r["urn"]: r for r in doc["resources"]}
    for r in doc["resources"]:
        children[r["parent"] if r["parent"] in by_urn else ""].append(r)

    def walk(urn: str, depth: int) -> None:
        for r in children.get(urn, []):
            lines.append(f"{'  ' * depth}+ {r['type']}  {r['name']}")
            walk(r["urn"], depth + 1)

    walk("", 1)
    outputs = doc["outputs"]
    for _, svc in sorted((outputs.get("services") or {}).items(), key=lambda kv: kv[1]["serviceName"]):
        lines += ["", f"Traffic  {svc['serviceName']}  (candidate {svc['candidateRevision']}, "
                      f"canaryPercent {svc['canaryPercent']})"]
        for t in svc["traffic"]:
            lines.append(f"  {t['percent']:>3} %  {t['tag']:<7} {t['revision']}")
    if doc["warnings"]:
        lines += ["", "Warnings:"] + [f"  ! {w}" for w in doc["warnings"]]
    violations = doc["policy"]["violations"]
    lines += ["", f"Policy: {len(violations)} violation(s)"]
    for v in violations:
        lines.append(f"  [{v['level']}] {v['policy']}: {v['message']}" + (f"  ({v['urn']})" if v.get("urn") else ""))
    return "\n".join(lines) + "\n"
