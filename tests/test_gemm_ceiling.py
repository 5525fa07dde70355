"""tools/gemm_ceiling.py (the FP32 GEMM ceiling docs/BENCHMARKS.md's large-batch bound rests on): its JSON is consistent."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("lfdn_edge._C", reason="native module not built")
pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("gemm_ceiling", ROOT / "tools" / "gemm_ceiling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gemm_ceiling_reports_each_library_as_a_fraction_of_the_higher_probe(tmp_path, monkeypatch, capsys):
    """The first probe reads low (as a disturbed one does): fractions use the second, higher reading."""
    import lfdn_edge.native_core as native_core

    real = native_core.load_native()
    readings = iter([50.0, 400.0])

    class Core:
        def build_info(self):
            return real.build_info()

        def probe_machine(self, threads=0):
            return {**real.probe_machine(threads=threads), "fma_peak_gflops": next(readings)}

    monkeypatch.setattr(native_core, "load_native", lambda: Core())
    out = tmp_path / "ceiling.json"
    assert _tool().main(["--rows", "3,8", "--width", "32", "--threads", "1", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["fma_peak_gflops"] == 400.0
    assert [p["fma_peak_gflops"] for p in rep["probe"]["probes"]] == [50.0, 400.0]
    assert set(rep["results_gflops"]) == {"3", "8"} and rep["shape"] == {"k": 32, "n": 32}
    for rows, res in rep["results_gflops"].items():
        for lib in ("torch_mm", "numpy", "onnxruntime_matmul"):
            assert res[lib] > 0, (rows, lib)
            assert res[f"{lib}_fraction_of_peak"] == pytest.approx(res[lib] / 400.0, abs=1e-3)
    assert rep["machine"]["native_build"]["cpu_kernels_active"] and rep["machine"]["onnxruntime"]
    assert "FMA peak 400 GFLOPS" in capsys.readouterr().out
