"""The package's import structure, read from the source (every import statement, including the ones inside
functions): layers import only downwards, the build side (builder/) and the run side never import each other, and
there are no import cycles. Plus: scoring an engine file does not load the training stack, nor the serving one (PyTriton).

Layers, lowest first (README "Layout"):
    leaves    _version, _atomic, defaults, errors, noise, file_kinds, probes, progress, native_core, device_power
    method    the PyTorch method: backbones, features, model, diffusion, reference, checkpoint, train, ...,
              scoring_graph, data/
    artifact  the engine file format shared by both sides (artifact/)
    builder   checkpoint -> engine (builder/)           } siblings: neither imports the other
    runtime   engine -> scores (runtime/)               }
    bench     the benchmark behind lfdn-edge bench (benchmark.py): builds engines and runs them, so above both
    stream    live cameras (stream/): sources, readers, batcher over the Scorer; run side, never imports builder/
    cli       the lfdn-edge commands (cli/): argument parsing and printing over the layers below
    facade    lfdn_edge/__init__.py, __main__.py
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "lfdn_edge"
LEAVES = {"_version", "_atomic", "defaults", "errors", "noise", "file_kinds", "probes", "progress", "native_core",
          "device_power", "_C"}
RANK = {"leaf": 0, "method": 1, "artifact": 2, "builder": 3, "runtime": 3, "bench": 4, "stream": 4, "cli": 5,
        "facade": 6}
# must not import each other: builder and runtime (same rank); stream is the run side above runtime
SIBLINGS = {frozenset({"builder", "runtime"}), frozenset({"builder", "stream"})}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__main__",):
        return "facade"
    top = parts[1]
    if top in LEAVES:
        return "leaf"
    if top == "benchmark":
        return "bench"
    if top in ("artifact", "builder", "runtime", "stream", "cli"):
        return top
    return "method"


def imports_of(path: Path) -> set[str]:
    """Every lfdn_edge module that ``path`` imports (absolute or relative, at any depth in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "lfdn_edge")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "lfdn_edge":
                continue
            for alias in node.names:  # "from . import defaults" imports the module lfdn_edge.defaults
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_module(sub) else target)
    return {m for m in found if m != me}


def _is_module(name: str) -> bool:
    if name == "lfdn_edge._C":  # the compiled core (its .so may live in site-packages, not the source tree)
        return True
    p = ROOT.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PKG.rglob("*.py"))}


def violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in g.items():
        lm = layer(mod)
        for dep in deps:
            ld = layer(dep)
            if frozenset({lm, ld}) in SIBLINGS:
                bad.append(f"{mod} ({lm}) imports {dep} ({ld}): {' and '.join(sorted({lm, ld}))} must not import "
                           "each other")
            elif RANK[ld] > RANK[lm]:
                bad.append(f"{mod} ({lm}) imports {dep} ({ld}), a higher layer")
    return bad


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles between modules (package __init__ re-exports excluded: they are facades)."""
    edges = {m: {d for d in deps if d in g and not (PKG / Path(*d.split(".")[1:]) / "__init__.py").is_file()}
             for m, deps in g.items()}
    found, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for n in edges:
        if n not in state:
            visit(n, [])
    return found


def test_the_reader_sees_imports_inside_functions_and_relative_ones(tmp_path):
    g = graph()
    # known edges, one per import style: absolute, relative at module level, relative inside a function
    assert "lfdn_edge.artifact.file" in g["lfdn_edge.runtime.scorer"]
    assert "lfdn_edge.builder.native_payload" in g["lfdn_edge.builder.dispatch"]   # lazy, inside build_artifact
    assert "lfdn_edge.defaults" in g["lfdn_edge.model"]                        # from . import defaults
    assert len(g) > 60


def test_layers_import_only_downwards_and_build_and_runtime_never_each_other():
    assert violations(graph()) == []


def test_a_violation_is_reported():
    """The checker itself: an injected runtime -> build edge and a leaf -> method edge are both caught."""
    g = graph()
    g["lfdn_edge.runtime.scorer"] = g["lfdn_edge.runtime.scorer"] | {"lfdn_edge.builder.dispatch"}
    g["lfdn_edge.probes"] = g["lfdn_edge.probes"] | {"lfdn_edge.checkpoint"}
    bad = violations(g)
    assert any("runtime.scorer" in b and "must not import each other" in b for b in bad)
    g["lfdn_edge.stream.pipeline"] = g["lfdn_edge.stream.pipeline"] | {"lfdn_edge.builder.dispatch"}
    g["lfdn_edge.runtime.scorer"] = g["lfdn_edge.runtime.scorer"] | {"lfdn_edge.stream.pipeline"}
    bad = violations(g)
    assert any("stream.pipeline (stream)" in b and "must not import each other" in b for b in bad)
    assert any("lfdn_edge.runtime.scorer (runtime) imports lfdn_edge.stream.pipeline (stream)" in b for b in bad)
    assert any("lfdn_edge.probes (leaf) imports lfdn_edge.checkpoint (method)" in b for b in bad)


def test_no_import_cycles():
    assert cycles(graph()) == []
    g = graph()
    g["lfdn_edge.diffusion"] = g["lfdn_edge.diffusion"] | {"lfdn_edge.reference"}  # reference imports diffusion
    assert cycles(g), "the cycle check must see an injected cycle"


SCORE_ONLY = r"""
import json, sys
import numpy as np
import lfdn_edge
s = lfdn_edge.Scorer(sys.argv[1])
x = np.load(sys.argv[2])
scores = s.score(x)
print(json.dumps({"modules": sorted(m for m in sys.modules if m.startswith(("lfdn_edge", "pytriton", "tritonclient"))),
                  "n": int(scores.shape[0])}))
"""
TRAINING_STACK = ("lfdn_edge.train", "lfdn_edge.workflow", "lfdn_edge.data", "lfdn_edge.evaluate",
                  "lfdn_edge.plots", "lfdn_edge.feature_cache", "lfdn_edge.baselines", "lfdn_edge.builder",
                  "lfdn_edge.benchmark", "lfdn_edge.cli", "lfdn_edge.distributed")
SERVING_STACK = ("lfdn_edge.runtime.triton_server", "pytriton", "tritonclient")  # only loaded to serve


@pytest.mark.parametrize("backend", ["onnx", "native"])
def test_scoring_an_engine_does_not_import_the_training_stack(tmp_path, backend):
    from lfdn_edge.builder.dispatch import build_engine
    from lfdn_edge.probes import native_usable, onnx_usable

    ok, why = (onnx_usable() if backend == "onnx" else native_usable())
    if not ok:
        pytest.skip(why)
    ckpt = _tiny_checkpoint(tmp_path)
    engine = build_engine(ckpt, backend=backend, out=tmp_path / f"e.{backend}.engine")
    import numpy as np

    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((3, 12)).astype(np.float32))
    proc = subprocess.run([sys.executable, "-c", SCORE_ONLY, str(engine), str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n"] == 3
    loaded = [m for m in out["modules"] if m.startswith(TRAINING_STACK)]
    assert loaded == [], f"Scorer(engine) imported the training/build stack: {loaded}"
    serving = [m for m in out["modules"] if m.startswith(SERVING_STACK)]
    assert serving == [], f"Scorer(engine) imported the serving stack: {serving}"


def _tiny_checkpoint(tmp_path):
    """A small uncalibrated checkpoint file written from a random LFDN (no training run needed)."""
    import torch

    from lfdn_edge.checkpoint import save_checkpoint
    from lfdn_edge.diffusion import DiffusionConfig
    from lfdn_edge.features import FeatureConfig
    from lfdn_edge.model import LFDN, LFDNConfig
    from lfdn_edge.reference import ScoreConfig

    torch.manual_seed(0)
    cfg = LFDNConfig(in_dim=12, width=16, depth=2, emb_dim=16)
    model = LFDN(cfg)
    data = {"feature": FeatureConfig().to_dict(), "layout": {"stage_dims": [4, 8]}, "model": cfg.to_dict(),
            "diffusion": DiffusionConfig().to_dict(), "score": ScoreConfig().to_dict(),
            "ema": model.state_dict(), "calibration": None}
    return save_checkpoint(data, tmp_path / "tiny.pt")
