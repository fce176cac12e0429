"""Pulumi entry point of the bootstrap program (`cd bootstrap && pulumi up`): infra/bootstrap/program.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: the `infra` package

from infra.bootstrap.program import main  # noqa: E402

main()
