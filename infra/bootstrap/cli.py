"""`python -m infra bootstrap --stack S [--json]`: the offline plan of the bootstrap program (bootstrap/),
with the main stack's mocks and recorder. Applying it is `cd bootstrap && pulumi up` with your own
credentials (docs: tutorials/first-deploy.md)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "bootstrap"
EXIT_OK, EXIT_USAGE = 0, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bootstrap", help="offline plan of the bootstrap program (state bucket, secrets key, CI identities)",
        description="Plan bootstrap/ (run once per GCP project: Pulumi state bucket, KMS key for the gcpkms:// "
                    "secrets provider, Artifact Registry repository, deploy/gate/preview service accounts with the "
                    "roles the main program's resource types need, GitHub Workload Identity) offline with "
                    "bootstrap/Pulumi.STACK.yaml. Exit 0 ok, 2 invalid config or usage.")
    p.add_argument("--stack", required=True, help="reads bootstrap/Pulumi.STACK.yaml (e.g. example)")
    p.add_argument("--json", action="store_true", help="print one JSON object: resources and outputs")
    p.set_defaults(func=run)


def plan(stack: str, root: Path = ROOT, roles=None):
    """The ProgramRun of the bootstrap program for bootstrap/Pulumi.<stack>.yaml. Raises StackFileError /
    ConfigError (validated before anything registers)."""
    from infra.plan.engine import COMPUTED, run_program
    from infra.plan.stackfile import read_stack

    from .config import load_bootstrap_config
    from .program import main

    stack_file = read_stack(stack, root)
    load_bootstrap_config(stack_file.config)  # every problem before any registration
    COMPUTED.update(MOCK_OUTPUTS)
    return run_program(lambda: main(roles), stack_file.project, stack, stack_file.config, stack_file.secret_keys)


def _provider_outputs(name: str, inputs: dict) -> dict:
    from infra.plan.engine import CALLS

    number = CALLS["gcp:organizations/getProject:getProject"]({"projectId": inputs.get("project")})["number"]
    return {"name": f"projects/{number}/locations/global/workloadIdentityPools/{inputs['workloadIdentityPoolId']}"
                    f"/providers/{inputs['workloadIdentityPoolProviderId']}"}


# computed outputs the bootstrap program reads, shaped as the provider returns them
MOCK_OUTPUTS = {
    "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider": _provider_outputs,
    "gcp:serviceaccount/account:Account": lambda name, inputs: {
        "email": f"{inputs['accountId']}@{inputs.get('project')}.iam.gserviceaccount.com",
        "name": f"projects/{inputs.get('project')}/serviceAccounts/{inputs['accountId']}@{inputs.get('project')}"
                f".iam.gserviceaccount.com",
        "member": f"serviceAccount:{inputs['accountId']}@{inputs.get('project')}.iam.gserviceaccount.com"},
}


def run(args: argparse.Namespace) -> int:
    from infra.config import ConfigError
    from infra.plan import StackFileError
    from infra.plan.engine import redact

    try:
        result = plan(args.stack)
    except StackFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as e:
        print(f"error: invalid bootstrap config for stack {args.stack!r} ({len(e.problems)} problem(s)); nothing "
              "registered:\n" + "".join(f"  {p}\n" for p in e.problems), file=sys.stderr, end="")
        return EXIT_USAGE
    outputs = redact(result.outputs)
    if args.json:
        json.dump({"resources": [r.to_json() for r in sorted(result.resources, key=lambda r: r.urn)],
                   "outputs": outputs}, sys.stdout, indent=2)
        print()
        return EXIT_OK
    print(f"Bootstrap plan of netra-bootstrap/{args.stack}: {len(result.resources)} resources")
    for r in sorted(result.resources, key=lambda r: r.urn):
        print(f"  + {r.type}  {r.name}")
    roles = outputs.pop("deployRoles", {})
    print("\nDeploy identity roles (from the main program's resource types):")
    for role, types in sorted(roles.items()):
        print(f"  {role}: {', '.join(t.split(':')[-1] for t in types)}")
    print("\nOutputs (GitHub repository variables, `pulumi login`, `pulumi stack init --secrets-provider`):")
    for key, value in sorted(outputs.items()):
        print(f"  {key}: {value}")
    print("\nApply it with your own credentials: cd bootstrap && pulumi up --stack " + args.stack)
    return EXIT_OK
