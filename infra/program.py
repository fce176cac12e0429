"""The Pulumi program: typed config in, components out (infra/wiring.py). `__main__.py` at the root
only calls `main()`."""
from __future__ import annotations

from typing import Sequence

import pulumi

from infra import supply_chain, wiring
from infra.release import model as release
from infra.config import ConfigError, Problem, StackConfig, load_stack_config
from infra.config.secure import stack_file_secure_paths


class InvalidStackConfig(pulumi.RunError):
    """Printed by Pulumi without a traceback; the offline plan turns it back into the ConfigError (exit 2)."""

    def __init__(self, error: ConfigError):
        self.error = error
        super().__init__(f"invalid stack config ({len(error.problems)} problem(s)):\n{error}")


def pulumi_config() -> dict[str, str]:
    """Every config key of the stack, as the engine passed them to this process (the loader refuses
    namespaces this program does not read, so a `gcp:projet` typo is an error, not a silent default)."""
    from pulumi.runtime import config as runtime_config

    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}


def unledgered_approvals(flat: dict) -> list[tuple[str, str]]:
    """Approvals that move traffic only when the release ledger rendered them: the stamp the release commands
    write with `netra:release` (infra/release/view.py) must match the record and the stable revisions as
    this `pulumi up` sees them. A hand-written approval, or a record edited or restored from a stale copy
    after it was rendered, is refused naming its key, so a `pulumi up` that disagrees with the ledger
    moves no traffic."""
    from infra.release.state import RELEASE_KEY, decode, read_release_doc
    from infra.release.view import AUTHORIZING, STAMP, release_digest

    config = {k: decode(v) for k, v in flat.items()}
    recorded = read_release_doc(config)
    granting = [f"{RELEASE_KEY}.{kind}.{name}" for kind in AUTHORIZING
                for name, record in sorted((recorded.get(kind) or {}).items())
                if not (isinstance(record, dict) and record.get("rejected"))]
    stamp = recorded.get(STAMP)
    if not granting or (isinstance(stamp, dict) and stamp.get("digest") == release_digest(recorded, config)):
        return []
    why = ("has no release-ledger stamp" if not isinstance(stamp, dict) else
           f"differs from what the release ledger rendered (generation {stamp.get('generation')})")
    return [(key, f"{why}: an approval gives traffic only through the gate or `python -m infra approve`, which "
                  f"record it in the release ledger and render it stamped; remove it, or let a release command "
                  f"(`python -m infra rollout|approve|rollback --stack <stack>`) render the ledger's state") for key in granting]


def check_before_build(cfg: StackConfig, flat: dict | None = None) -> None:
    """The checks that need more than one key's value and the candidate revision names (computed from the
    config alone), so that every refusal happens before the first resource registers; raise ConfigError."""
    found = wiring.share_problems(cfg) + wiring.flag_problems(cfg) + unledgered_approvals(flat or {})
    if found:
        raise ConfigError([Problem(key, message) for key, message in found])


def under_offline_plan() -> bool:
    """True when the program runs under Pulumi's mocks (the offline plan, tests), not a real preview/up."""
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.settings import get_monitor

    return isinstance(get_monitor(), MockMonitor)


def placeholder_digests() -> None:
    """Images pinned to the all-zero placeholder digest: a warning in the offline plan, a refusal (before
    anything registers) in `pulumi preview` / `pulumi up`, in every stack."""
    found = supply_chain.placeholder_images(pulumi_config())
    if not found:
        return
    message = supply_chain.placeholder_message(pulumi.get_stack(), found)
    if under_offline_plan():
        pulumi.log.warn(message)
    else:
        raise pulumi.RunError(message)


def load(secret_paths: Sequence[str] | None = None) -> StackConfig:
    """`secret_paths`: the dotted keys that were `secure:`; by default read from Pulumi.<stack>.yaml (the
    engine only names top-level keys). The offline plan passes its own (stack file plus overrides)."""
    if secret_paths is None:
        secret_paths = stack_file_secure_paths(pulumi.get_stack())
    try:
        flat = pulumi_config()
        cfg = load_stack_config(flat, pulumi.get_stack(), secret_paths=secret_paths)
        check_before_build(cfg, flat)
        return cfg
    except ConfigError as e:
        # RunError: Pulumi prints the message without a traceback and registers nothing.
        from infra.config.loader import for_stack

        e = ConfigError(for_stack(e.problems, pulumi.get_stack()))
        raise pulumi.RunError(f"invalid stack config ({len(e.problems)} problem(s)):\n{e}") from None


def build(cfg: StackConfig) -> dict:
    """Build the stack and return its outputs."""
    return wiring.build(cfg).outputs()


def main(secret_paths: Sequence[str] | None = None) -> None:
    cfg = load(secret_paths)
    placeholder_digests()
    try:
        outputs = build(cfg)
    except ConfigError as e:  # a component's own check (check_before_build runs the same ones first)
        raise InvalidStackConfig(e) from None
    for name, value in outputs.items():
        pulumi.export(name, value)
    journal = cfg.release.rollout
    for warning in release.override_warnings(cfg.canary_percent, {k: s.canary_percent for k, s in cfg.services.items()},
                                             journal.services if journal and journal.scope == "service" else ()):
        pulumi.log.warn(warning)
