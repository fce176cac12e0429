"""`python -m infra teardown --stack staging`: how to destroy a stack whose data is protected (never prod).

Data is protected in every stack (infra/components/guards.py): `pulumi destroy` refuses a protected
resource, and the APIs refuse to delete a Cloud SQL or Redis instance with deletion protection, or a
non-empty bucket without force_destroy. This command plans the stack with `netra:teardown=true` (which
the config refuses for prod), checks offline that every guard is lifted in that plan, lists what the
destroy will take, and prints the three commands that do it:

    pulumi config set netra:teardown true --stack S   # the program lifts protect and the provider guards
    pulumi up --stack S                               # applies exactly that (the state unprotects them)
    pulumi destroy --stack S

Exit 0 printed, 2 usage (prod, unknown stack, invalid config), 4 the teardown plan still guards something.
"""
from __future__ import annotations

import argparse
import json
import sys

EXIT_OK, EXIT_USAGE, EXIT_FAILED = 0, 2, 4
TEARDOWN_KEY = "netra:teardown"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "teardown", help="print the commands that lift the data guards of a staging stack and destroy it",
        description="Check offline that netra:teardown=true lifts every data guard of the stack, list the data "
                    "the destroy takes, and print the pulumi commands. Refused for prod. Exit 0 ok, 2 usage or "
                    "prod, 4 a guard would stay on.")
    p.add_argument("--stack", required=True, help="stack name (Pulumi.STACK.yaml); never a prod stack")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def steps(stack: str) -> list[str]:
    return [f"pulumi config set {TEARDOWN_KEY} true --stack {stack}", f"pulumi up --stack {stack}",
            f"pulumi destroy --stack {stack}"]


def run(args: argparse.Namespace) -> int:
    from infra.components.guards import STATEFUL_TYPES
    from infra.config import ConfigError
    from infra.plan import PROJECT_ROOT, StackFileError, checked_run

    root = getattr(args, "root", PROJECT_ROOT)
    try:
        # the config refuses netra:teardown in prod (infra/config/stack.py), naming the key
        run_, violations = checked_run(args.stack, root, sets=[f"{TEARDOWN_KEY}=true"])
    except (StackFileError, ConfigError) as e:
        print(f"error: teardown of stack {args.stack!r} refused:\n{e}", file=sys.stderr)
        return EXIT_USAGE
    data = sorted((r for r in run_.resources if r.type in STATEFUL_TYPES), key=lambda r: (r.type, r.name))
    still = [r for r in data if r.protect]
    blocking = [v for v in violations if v["level"] == "mandatory"]
    doc = {"stack": args.stack, "steps": steps(args.stack),
           "destroys": [{"type": r.type, "name": r.name, "urn": r.urn} for r in data],
           "stillProtected": [r.urn for r in still], "policy": blocking}
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"Teardown of {args.stack}: {len(data)} resources holding data lose their guards and are destroyed:")
        for r in data:
            print(f"  - {r.type}  {r.name}")
        print("\nRun, in order:")
        for i, s in enumerate(doc["steps"], 1):
            print(f"  {i}. {s}")
        for urn in doc["stillProtected"]:
            print(f"error: {urn} is still protected in the teardown plan", file=sys.stderr)
        for v in blocking:
            print(f"error: [{v['policy']}] {v['message']}", file=sys.stderr)
    return EXIT_FAILED if still or blocking else EXIT_OK
