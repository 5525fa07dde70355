"""Shared pieces of the command-line tools: common options and the error-to-exit-code wrapper."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

import lfdn_edge

USER_ERRORS = (ValueError, OSError, ImportError, RuntimeError, KeyError)  # OSError covers FileNotFoundError


def add_common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=None,
                   help="feature/data cache (default: $LFDN_EDGE_CACHE or ~/.cache/lfdn-edge)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--version", action="version", version=f"lfdn-edge {lfdn_edge.__version__}")


def run_cli(args: argparse.Namespace, body: Callable[[], int]) -> int:
    """Run ``body``; a user error (bad path, bad data, bad option value) prints 'error: ...' and exits 2.

    With ``--quiet`` every tqdm bar (ours and the data loaders') is switched off.
    """
    if getattr(args, "quiet", False):
        quiet_progress_bars()
    try:
        return body()
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def quiet_progress_bars() -> None:
    """Switch off every tqdm bar in this process (tqdm reads TQDM_DISABLE only when it is imported, which has
    happened by now, so its constructor default is changed instead; an explicit disable= still wins)."""
    from functools import partialmethod

    import tqdm

    tqdm.tqdm.__init__ = partialmethod(tqdm.tqdm.__init__, disable=True)


def check_output_path(path, option: str) -> None:
    """Fail before any work when an output path can never be written (a folder, or under a file)."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{option} {p} is a folder; give a file path")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{option} {p}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise ValueError(f"{option} {p}: folder {parent} is not writable")
            break


def check_positive(value: int | None, option: str) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{option} must be >= 1, got {value}")
