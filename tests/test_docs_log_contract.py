"""docs/log-contract.md lists exactly the log-based metrics infra/signals.py declares (one source of the
contract: the stack declares them, the gate reads them, the doc tells the application what to write)."""
from __future__ import annotations

import re
from pathlib import Path

from infra import signals

DOC = Path(__file__).resolve().parents[1] / "docs" / "log-contract.md"


def test_every_signal_is_in_the_contract_table_and_nothing_else():
    text = DOC.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `") and not line.startswith("| `event`")]
    listed = {m for row in rows for m in re.findall(r"`(netra_[a-z_]+)`", re.split(r"(?<!\\)\|", row)[3])}
    assert listed == {s.metric for s in signals.ALL_SIGNALS}
    events = {re.match(r"\| `([a-z_]+)`", row).group(1) for row in rows}
    assert events == {s.event for s in signals.ALL_SIGNALS}


def test_the_value_signals_carry_the_flag_arm():
    for s in (signals.LLM_REQUEST_COST, signals.LLM_REQUEST_TOKENS, signals.QUALITY_SCORE, signals.CACHE_LOOKUP,
              signals.CACHE_LOOKUP_LATENCY, signals.SEMANTIC_MATCH, signals.BUDGET_TRACKING):
        assert signals.FLAG_ARM in s.labels, s.metric
