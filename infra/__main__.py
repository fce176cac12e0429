"""`python -m infra plan | gate | rollout | rollback | bake | …`: the operator's command line.

Each command module registers its own sub-command and keeps heavy imports inside its `run`, so
`plan` starts fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

# google-api-core warns on every import that Python 3.11 support ends in 2027: noise in an operator's
# terminal during an incident, not something the operator can act on (the pinned runtime is 3.11)
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")

# modules that define `register(subparsers)`; a command whose module is not present is not offered
COMMAND_MODULES = ("infra.plan.cli", "infra.canary.cli", "infra.release.cli", "infra.scan", "infra.teardown", "infra.preflight",
                   "infra.bootstrap.cli")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m infra", description="Netra platform stack: plan, gate, rollout, rollback")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if not (e.name and (name == e.name or name.startswith(e.name + "."))):
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--sandbox" in argv or any(a.startswith("--sandbox=") for a in argv):
        # before any command module is imported: stack files from the sandbox, its local servers started
        from infra.release.sandbox import SandboxError, prepare

        try:
            argv = prepare(argv)
        except SandboxError as exc:
            print(f"python -m infra: error: {exc}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
