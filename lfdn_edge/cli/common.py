"""Shared pieces of the command-line tools: common options, argument parsers, and the error-to-exit-code
wrapper (user errors are one line and exit status 2; bugs keep their traceback)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

from .._version import __version__
from ..errors import USER_ERRORS


def add_common_options(p: argparse.ArgumentParser, cache: bool = True, quiet: bool = True) -> None:
    if cache:
        p.add_argument("--cache-dir", default=None,
                       help="feature/data cache (default: $LFDN_EDGE_CACHE or ~/.cache/lfdn-edge)")
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--version", action="version", version=f"lfdn-edge {__version__}")


def run_cli(args: argparse.Namespace, body: Callable[[], int]) -> int:
    """Run ``body``. A user error (bad path, bad data, bad option value, something this machine cannot run,
    a diverged training run: :data:`lfdn_edge.errors.USER_ERRORS`) prints 'error: ...' and returns 2;
    any other exception is a bug and propagates with its traceback."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return body()
        except USER_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line for the user ("warning: ..."), without the source location."""
    print(f"warning: {message}", file=sys.stderr)


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


def parse_list(text: str, kind=str) -> list:
    """``"a,b,c"`` -> ``[kind(a), kind(b), kind(c)]`` (argparse type)."""
    try:
        items = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    if not items:
        raise argparse.ArgumentTypeError("empty list")
    return items


def parse_batch(text: str) -> tuple[int, int, int]:
    """``"MIN,OPT,MAX"`` with 1 <= MIN <= OPT <= MAX (argparse type)."""
    try:
        parts = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX integers, got {text!r}") from None
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {text!r}")
    return parts


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` (argparse type)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH (e.g. 480x640), got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"frame size must be positive, got {text!r}")
    return h, w


def parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """An ArgumentParser whose description is the module docstring (examples kept as written)."""
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
