"""`python -m infra scan`: Checkov over each stack's plan (Terraform plan JSON), failures checked against waivers.

A second opinion beside our own policy pack: the offline plan is exported as Terraform plan JSON
(`infra/plan/tfplan.py`) and Checkov runs from its own virtualenv (`make scan` creates `.venv-checkov`
from `scan/requirements-checkov.txt`; its pins conflict with the project's). Every failed check must be
waived in `scan/checkov-waivers.yaml` with a reason, and every waiver must still match a failure
(a stale waiver hides nothing, so it fails the scan too). Exit 0 clean, 1 unwaived failure or stale
waiver, 2 usage (no Checkov, bad waiver file, invalid config).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAIVERS = ROOT / "scan" / "checkov-waivers.yaml"
DEFAULT_CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class ScanError(Exception):
    """A usage problem: Checkov missing or failing to run, or an invalid waiver file (exit 2)."""


@dataclass(frozen=True)
class Waiver:
    check: str  # CKV_GCP_62
    resource: str  # Terraform address, fnmatch pattern: google_storage_bucket.access-logs
    reason: str
    stacks: tuple[str, ...] = ()  # empty: every stack

    def matches(self, stack: str, check: str, resource: str) -> bool:
        return (check == self.check and fnmatch.fnmatchcase(resource, self.resource)
                and (not self.stacks or stack in self.stacks))


@dataclass
class StackResult:
    stack: str
    passed: int
    failed: list[tuple[str, str, str]]  # (check id, resource address, check name)
    waived: list[tuple[str, str, Waiver]]

    @property
    def unwaived(self) -> list[tuple[str, str, str]]:
        done = {(c, r) for c, r, _ in self.waived}
        return [f for f in self.failed if (f[0], f[1]) not in done]


def load_waivers(path: Path = WAIVERS) -> list[Waiver]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ScanError(f"{path.name}: cannot read: {e}") from None
    entries = doc.get("waivers") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ScanError(f"{path.name}: expected a top-level `waivers:` list")
    out, problems = [], []
    for i, w in enumerate(entries):
        where = f"{path.name}: waivers[{i}]"
        if not isinstance(w, dict) or set(w) - {"check", "resource", "reason", "stacks"}:
            problems.append(f"{where}: keys are check, resource, reason, stacks")
            continue
        check, resource, reason, stacks = w.get("check"), w.get("resource"), w.get("reason"), w.get("stacks") or []
        if not (isinstance(check, str) and check.startswith("CKV")):
            problems.append(f"{where}.check: a Checkov id like CKV_GCP_62, got {check!r}")
        if not (isinstance(resource, str) and "." in resource):
            problems.append(f"{where}.resource: a Terraform address (pattern) like google_storage_bucket.backups, got {resource!r}")
        if not (isinstance(reason, str) and len(reason.split()) >= 5):
            problems.append(f"{where}.reason: say why the finding is accepted (a sentence), got {reason!r}")
        if not (isinstance(stacks, list) and all(isinstance(s, str) for s in stacks)):
            problems.append(f"{where}.stacks: a list of stack names, got {stacks!r}")
        if not problems:
            out.append(Waiver(check, resource, reason.strip(), tuple(stacks)))
    if problems:
        raise ScanError("\n".join(problems))
    return out


def run_checkov(checkov: Path, plan_file: Path) -> dict:
    """Checkov's JSON report of one Terraform plan file (its own exit code only says "something failed")."""
    if not checkov.exists():
        raise ScanError(f"--checkov: {checkov} not found; `make scan` installs it into .venv-checkov")
    cmd = [str(checkov), "-f", str(plan_file), "--framework", "terraform_plan", "--output", "json",
           "--skip-download", "--compact"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "BC_SKIP_MAPPING": "TRUE",
                               "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false", "LOG_LEVEL": "ERROR"})
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ScanError(f"checkov exited {proc.returncode} without a JSON report: {proc.stderr.strip()[-2000:]}") from None
    if isinstance(report, list):  # one report per framework
        report = next((r for r in report if r.get("check_type") == "terraform_plan"), report[0])
    return report


def evaluate(stack: str, report: dict, waivers: list[Waiver]) -> StackResult:
    results = report.get("results") or {}
    failed = sorted({(c["check_id"], c["resource"], c.get("check_name", "")) for c in results.get("failed_checks", [])})
    waived = []
    for check, resource, _ in failed:
        w = next((w for w in waivers if w.matches(stack, check, resource)), None)
        if w is not None:
            waived.append((check, resource, w))
    return StackResult(stack, len(results.get("passed_checks", [])), failed, waived)


def stale_waivers(results: list[StackResult], waivers: list[Waiver]) -> list[Waiver]:
    used = {id(w) for r in results for _, _, w in r.waived}
    scanned = {r.stack for r in results}
    return [w for w in waivers if id(w) not in used and (not w.stacks or set(w.stacks) & scanned)]


def export_plan(stack: str, directory: Path) -> Path:
    from infra.plan import run_stack
    from infra.plan.tfplan import export

    path = directory / f"{stack}.tfplan.json"
    path.write_text(json.dumps(export(run_stack(stack).resources), indent=1))
    return path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("scan", help="Checkov over each stack's plan (Terraform plan JSON), with waivers",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--stack", action="append", dest="stacks", metavar="STACK",
                   help="stack to scan (repeatable); default staging and prod")
    p.add_argument("--checkov", type=Path, default=DEFAULT_CHECKOV, help="checkov executable (default .venv-checkov)")
    p.add_argument("--waivers", type=Path, default=WAIVERS, help="waiver file (default scan/checkov-waivers.yaml)")
    p.add_argument("--out", type=Path, help="keep each stack's plan and Checkov report in this directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from infra.config import ConfigError
    from infra.plan import StackFileError

    stacks = args.stacks or ["staging", "prod"]
    try:
        waivers = load_waivers(args.waivers)
        with tempfile.TemporaryDirectory() as tmp:
            out = args.out or Path(tmp)
            out.mkdir(parents=True, exist_ok=True)
            results = []
            for stack in stacks:
                report = run_checkov(args.checkov, export_plan(stack, out))
                (out / f"{stack}.checkov.json").write_text(json.dumps(report, indent=1))
                results.append(evaluate(stack, report, waivers))
    except (ScanError, StackFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as e:
        print(f"error: invalid config ({len(e.problems)} problem(s)):", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    bad = False
    for r in results:
        print(f"{r.stack}: {r.passed} passed, {len(r.failed)} failed ({len(r.waived)} waived, "
              f"{len(r.unwaived)} not waived)")
        for check, resource, w in r.waived:
            print(f"  waived  {check:<12} {resource}: {w.reason.split('. ')[0].rstrip('.')}.")
        for check, resource, name in r.unwaived:
            print(f"  FAILED  {check:<12} {resource}: {name}")
            bad = True
    for w in stale_waivers(results, waivers):
        print(f"stale waiver: {w.check} {w.resource} matches no failure; remove it from {args.waivers.name}")
        bad = True
    return EXIT_FINDINGS if bad else EXIT_OK
