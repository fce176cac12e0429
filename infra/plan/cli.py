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
    p.add_argument("--preview", action="store_true",
                   help="plan as a first `pulumi preview` of a fresh stack sees it: the id and computed outputs of "
                        "every resource (it does not exist yet) are unknown, and so is every input derived from them; "
                        "the policy pack then decides on what is known (docs/preview-parity.md)")
    p.add_argument("--summary", action="store_true",
                   help="print only the traffic per service, the warnings and the policy verdict (no resource list)")
    p.add_argument("--against", metavar="FILE|GITREF",
                   help="print what changes against a previous plan (`plan --json` output) or the plan of a git ref: "
                        "per resource create / update (changed input paths; secrets compared by digest, never "
                        "printed) / replace (+-, -+ delete before replace, with the dependents deleted first: the "
                        "provider's ForceNew table) / delete, per service revision and traffic before and after; exit 1 "
                        "when a resource holding data would be replaced or deleted without netra:allowReplace")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from infra.config import ConfigError
    from infra.plan import PROJECT_ROOT, StackFileError, checked_run, plan_document
    from infra.plan.engine import DuplicateUrnError

    fmt = getattr(args, "format", None) or ("json" if args.json else "text")
    if args.json and fmt != "json":
        print(f"error: --json and --format {fmt} disagree; use one of them", file=sys.stderr)
        return EXIT_USAGE
    args.json = fmt == "json"
    if getattr(args, "summary", False) and (fmt != "text" or getattr(args, "against", None)):
        print("error: --summary shortens the text plan; it does not combine with --json, --format or --against",
              file=sys.stderr)
        return EXIT_USAGE
    # root / policy: not command-line options; the input fuzz test runs this function in-process on copies
    root, policy = getattr(args, "root", PROJECT_ROOT), getattr(args, "policy", True)
    preview = bool(getattr(args, "preview", False))
    if preview and (fmt == "tfplan-json" or getattr(args, "against", None)):
        print("error: --preview plans a fresh stack (nothing exists yet); it does not combine with "
              f"{'--against' if getattr(args, 'against', None) else '--format tfplan-json'}", file=sys.stderr)
        return EXIT_USAGE
    before = None
    if getattr(args, "against", None):  # before planning: a wrong --against fails fast
        from infra.plan.diff import AgainstError, load_against

        try:
            before = load_against(args.against, args.stack, root)
        except AgainstError as e:
            return _refused(args, f"error: {e}", [{"key": "--against", "message": str(e)}])
    try:
        result, violations = checked_run(args.stack, root, sets=args.set, policy=policy and fmt != "tfplan-json",
                                         preview=preview)
    except StackFileError as e:
        return _refused(args, f"error: {e}", [{"key": "--stack", "message": str(e)}])
    except DuplicateUrnError as e:  # what the engine refuses at registration (mocks would overwrite)
        return _refused(args, f"error: the program registers a resource URN twice, which the engine refuses:\n"
                              + "".join(f"  {u}\n" for u in e.urns), [{"key": "urn", "message": str(e)}])
    except ConfigError as e:
        return _refused(args, f"error: invalid config for stack {args.stack!r} ({len(e.problems)} problem(s)); "
                              "nothing registered:\n" + "".join(f"  {p}\n" for p in e.problems),
                        [p.to_json() for p in e.problems])
    if fmt == "tfplan-json":
        from infra.plan.tfplan import export

        json.dump(export(result.resources), sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
        return EXIT_OK
    doc = plan_document(result, violations, preview=preview)
    if before is not None:
        from infra.plan.diff import diff_plans, render_diff

        d = diff_plans(before, doc)
        if args.json:
            json.dump(d, sys.stdout, indent=2, allow_nan=False)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(render_diff(d, args.against))
        if d["refused"]:  # a replacement or delete of a stateful resource no allowance covers
            return EXIT_POLICY
    elif args.json:
        # allow_nan=False: the document is JSON or the plan fails loudly, never `Infinity` on stdout
        json.dump(doc, sys.stdout, indent=2, sort_keys=False, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(doc, summary=getattr(args, "summary", False)))
    return EXIT_POLICY if any(v["level"] == "mandatory" for v in violations) else EXIT_OK


def _refused(args: argparse.Namespace, text: str, problems: list[dict]) -> int:
    """Exit 2: the report on stderr; with --json also one JSON object on stdout listing the problems."""
    print(text.rstrip("\n"), file=sys.stderr)
    if args.json:
        json.dump({"stack": args.stack, "error": "invalid config or usage; nothing registered",
                   "problems": problems}, sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    return EXIT_USAGE


def render_text(doc: dict, summary: bool = False) -> str:
    """The readable plan: every registered resource as a tree (what the program declares; `--against` shows
    what would be created, updated or deleted), then traffic, warnings and the policy verdict. `summary`:
    only the last three."""
    mode = ", preview of a fresh stack: [unknown] = known only after create" if doc.get("mode") == "preview" else ""
    lines = [f"Plan of {doc['project']}/{doc['stack']} (offline, Pulumi mocks{mode}): {len(doc['resources'])} resources "
             + ("registered (--summary: resource list omitted)" if summary else
                "registered (plan --against REF shows what changes)"), ""]
    children = defaultdict(list)
    by_urn = {r["urn"]: r for r in doc["resources"]}
    for r in sorted(doc["resources"], key=lambda r: r["urn"]):
        children[r["parent"] if r["parent"] in by_urn else ""].append(r)

    def walk(urn: str, depth: int) -> None:
        for r in children.get(urn, []):
            lines.append(f"{'  ' * depth}{r['type']}  {r['name']}")
            walk(r["urn"], depth + 1)

    if not summary:
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
