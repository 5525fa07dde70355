"""Type information of the public API: the package ships ``py.typed``, mypy (pinned in the [test] extra, settings
in pyproject.toml [tool.mypy]) finds nothing in the public modules (every function there annotated), and a
user's code type-checks against ``lfdn_edge.Scorer`` / ``build_artifact`` / the errors, with mistakes caught.

torch is not analysed (its sources need Python >= 3.10 syntax and take a minute): its names are Any here.
Skipped when mypy is not installed, unless $LFDN_EDGE_REQUIRE_TOOLCHAINS (set by .ci/run) names ``mypy``: then
it fails.
"""

from __future__ import annotations

import ast
import importlib.resources
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {t.strip() for t in os.environ.get("LFDN_EDGE_REQUIRE_TOOLCHAINS", "").split(",") if t.strip()}
# the modules of the public API: lfdn_edge.Scorer, Checkpoint, build_artifact / build_engine, the engine file
# (EngineArtifact, EngineError) and the errors; pyproject.toml requires annotations on every function there
PUBLIC = ("lfdn_edge/__init__.py", "lfdn_edge/runtime/scorer.py", "lfdn_edge/checkpoint.py", "lfdn_edge/errors.py",
          "lfdn_edge/builder/dispatch.py", "lfdn_edge/artifact/file.py")


@pytest.fixture(scope="module")
def mypy(tmp_path_factory):
    if importlib.util.find_spec("mypy") is None:
        why = "mypy is not installed (it comes with the [test] extra: pip install -e '.[test]')"
        if "mypy" in REQUIRED:
            pytest.fail(why + " -- required by LFDN_EDGE_REQUIRE_TOOLCHAINS")
        pytest.skip(why)
    cache = tmp_path_factory.mktemp("mypy-cache")  # shared by the runs below, nothing written into the checkout

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=600, env=env)

    return run


def test_the_package_ships_py_typed():
    assert importlib.resources.files("lfdn_edge").joinpath("py.typed").is_file()
    # the wheel takes every file of the package folder (pyproject.toml [tool.scikit-build] wheel.packages)
    assert (ROOT / "lfdn_edge" / "py.typed").is_file()


def test_the_public_modules_type_check(mypy):
    r = mypy(*PUBLIC)
    assert r.returncode == 0, f"mypy {' '.join(PUBLIC)} (settings: pyproject.toml [tool.mypy]):\n{r.stdout}{r.stderr}"


def test_the_strict_modules_are_the_public_ones():
    """pyproject.toml's strict override names exactly the PUBLIC modules."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11: mypy depends on tomli there
        import tomli as tomllib
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]["overrides"]
    strict = [set(o["module"]) for o in cfg if o.get("disallow_untyped_defs")]
    want = {p[:-len(".py")].replace("/", ".").removesuffix(".__init__") for p in PUBLIC}
    assert strict == [want]


def test_the_facade_names_are_visible_to_type_checkers():
    """lfdn_edge/__init__.py imports each lazily exported name under TYPE_CHECKING, from the module it loads."""
    import lfdn_edge

    tree = ast.parse((ROOT / "lfdn_edge" / "__init__.py").read_text(encoding="utf-8"))
    seen = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1, ast.dump(imp)
                for a in imp.names:
                    assert a.asname == a.name, f"{a.name}: re-export it as 'import {a.name} as {a.name}'"
                    seen[a.name] = imp.module
    assert seen == lfdn_edge._EXPORTS


USER_CODE = '''
from __future__ import annotations

import numpy as np

import lfdn_edge
from lfdn_edge.errors import UnavailableError

art = lfdn_edge.build_artifact("ckpt.pt", "onnx", batch=(1, 8, 64))
scorer = lfdn_edge.Scorer(art, threads=2)
scores: np.ndarray = scorer.score(np.zeros((2, 12), np.float32))
flags: np.ndarray = scorer.is_ood([[0.0] * 12], threshold=1.5)
terms: dict = scorer.explain(np.zeros((1, 12)))
limit: float | None = scorer.threshold
ckpt = lfdn_edge.Checkpoint.load("ckpt.pt")
same = lfdn_edge.Scorer.from_checkpoint(ckpt, precision="fp16")
try:
    lfdn_edge.Scorer("e.engine")
except UnavailableError as exc:
    print(exc)
lfdn_edge.Scorer(3.5)  # E: not an engine
lfdn_edge.build_artifact("ckpt.pt", "onnx", batch="1,8,64")  # E: batch is a tuple
scorer.threshold = "high"  # E: a float
name: int = ckpt.score_config  # E: a ScoreConfig
lfdn_edge.Scorer(art, thread=2)  # E: no such option
'''


def test_user_code_type_checks_against_the_api_and_mistakes_are_caught(mypy, tmp_path):
    user = tmp_path / "user_code.py"
    user.write_text(USER_CODE)
    env = {**os.environ, "MYPYPATH": str(ROOT)}  # lfdn_edge from this checkout (as an installed py.typed package)
    r = mypy("--strict-optional", str(user), env=env)
    errors = {}
    for line in r.stdout.splitlines():
        m = re.match(rf"{re.escape(str(user))}:(\d+): error: ", line)
        if m:
            errors.setdefault(int(m.group(1)), []).append(line)
    lines = USER_CODE.splitlines()
    expected = {i + 1 for i, text in enumerate(lines) if "# E:" in text}
    assert set(errors) == expected, f"errors on lines {sorted(errors)}, expected on {sorted(expected)}:\n{r.stdout}"
