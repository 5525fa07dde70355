"""Shared pieces of the command-line tools: common options and the error-to-exit-code wrapper."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

import lfdn_edge

USER_ERRORS = (ValueError, FileNotFoundError, ImportError, RuntimeError, KeyError)


def add_common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=None,
                   help="feature/data cache (default: $LFDN_EDGE_CACHE or ~/.cache/lfdn-edge)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--version", action="version", version=f"lfdn-edge {lfdn_edge.__version__}")


def run_cli(args: argparse.Namespace, body: Callable[[], int]) -> int:
    """Run ``body``; a user error (bad path, bad data, bad option value) prints 'error: ...' and exits 2.

    With ``--quiet`` every tqdm bar (ours and the data loaders') is switched off through TQDM_DISABLE.
    """
    if getattr(args, "quiet", False):
        os.environ["TQDM_DISABLE"] = "1"
    try:
        return body()
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
