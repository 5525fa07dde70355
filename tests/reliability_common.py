"""Shared by tests/test_reliability_*.py: the harness in tools/reliability_report.py, and the opt-in switch
for the long runs (LFDN_EDGE_LONG_TESTS=1: 10,000 soak calls per backend, 1,000 mutations per file kind,
20 kill -9 trials per command; without it the fast CI sizes)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONG = os.environ.get("LFDN_EDGE_LONG_TESTS", "") not in ("", "0")


def harness():
    name = "lfdn_reliability_report"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "reliability_report.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def sizes() -> dict:
    h = harness()
    return h.LONG if LONG else h.FAST
