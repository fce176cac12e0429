"""functions-framework's `--source` for the budget guard's fuzz tests: the real function module, with only
its authorized session swapped for a plain one (the fake APIs on 127.0.0.1 take no Google credentials)."""
import importlib.util
import sys
from pathlib import Path

import requests

SOURCE = Path(__file__).resolve().parents[1] / "functions" / "emergency_budget" / "main.py"
_spec = importlib.util.spec_from_file_location("emergency_budget_main", SOURCE)
main = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = main
_spec.loader.exec_module(main)
main._session = requests.Session

on_budget_notification = main.on_budget_notification
