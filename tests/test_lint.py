"""Lint: ``ruff check lfdn_edge tools`` (ruff pinned in the [test] extra, rules in pyproject.toml [tool.ruff]) finds
nothing, ruff really reads every Python file there, and no folder of ours has a name that linters and formatters
skip by default: black skips every folder named ``build``, ``dist``, ``venv``, ... (as ruff did before 0.3), which is
how the whole build side (then lfdn_edge/build/, now lfdn_edge/builder/) went unchecked; ruff 0.17 still skips
``dist``, ``venv``, ``_build``, ... and anything .gitignore names.

Skipped when ruff is not installed, unless $LFDN_EDGE_REQUIRE_TOOLCHAINS (set by .ci/run) names ``ruff``: then
it fails.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("lfdn_edge", "tools")
REQUIRED = {t.strip() for t in os.environ.get("LFDN_EDGE_REQUIRE_TOOLCHAINS", "").split(",") if t.strip()}


def ruff(*args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("ruff") is None:
        why = "ruff is not installed (it comes with the [test] extra: pip install -e '.[test]')"
        if "ruff" in REQUIRED:
            pytest.fail(why + " -- required by LFDN_EDGE_REQUIRE_TOOLCHAINS")
        pytest.skip(why)
    # --no-cache: nothing written into the checkout; the configuration is ROOT/pyproject.toml
    return subprocess.run([sys.executable, "-m", "ruff", *args, "--no-cache", *PATHS], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing():
    r = ruff("check")
    assert r.returncode == 0, (f"`ruff check {' '.join(PATHS)}` found problems (rules: pyproject.toml "
                               f"[tool.ruff]; fix them, `ruff check --fix` does the safe ones):\n{r.stdout}{r.stderr}")


def test_ruff_reads_every_python_file():
    r = ruff("check", "--show-files")
    assert r.returncode == 0, r.stderr
    seen = {Path(line.strip()).resolve() for line in r.stdout.splitlines() if line.strip()}
    want = {p.resolve() for d in PATHS for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts}
    skipped = sorted(str(p.relative_to(ROOT)) for p in want - seen)
    assert not skipped, (f"ruff does not read {skipped}: a folder on their path is in ruff's default exclude list "
                         "(dist, venv, _build, ...) or in .gitignore; rename the folder")
    assert len(seen & want) > 60


# black's default exclude (black/const.py DEFAULT_EXCLUDES), a superset of ruff's folder names that could be ours
SKIPPED_BY_DEFAULT = {"build", "dist", "_build", "buck-out", "venv", ".venv", "__pypackages__", "node_modules",
                      "site-packages", ".eggs", ".tox", ".nox"}


def test_no_folder_is_named_like_one_that_linters_skip():
    bad = sorted(str(p.relative_to(ROOT)) for d in PATHS for p in (ROOT / d).rglob("*")
                 if p.is_dir() and p.name in SKIPPED_BY_DEFAULT)
    assert not bad, f"{bad}: black (and ruff for most of these names) skips such folders by default; rename them"
