"""The onnxruntime-int8-dynamic bench variant (issue #26): onnxruntime.quantization.quantize_dynamic (QInt8 weights
per output channel, activations quantized at run time) of the FP32 ONNX scoring graph, the INT8 peer a CPU user
reaches for, run by the onnxruntime backend.

Tolerances: measured on the tiny model below (C=64, W=64, depth 2) with 64 standardised random vectors over
checkpoint seeds 0-2: mse relative error 0.0038-0.0054, mfsim absolute error 0.0061-0.0104, stage cosine
absolute error 0.013-0.024 (onnxruntime-fp32 on the same inputs: 3e-7, 2e-7, 6e-7). The limits are about 4x the
worst of these; the lower bounds show the payload really is quantized (not the FP32 graph under another name).
"""

from __future__ import annotations

import sys

import pytest

ort = pytest.importorskip("onnxruntime", reason="the onnxruntime variants need onnxruntime (pip install onnxruntime)")
pytest.importorskip("onnx", reason="ONNX export needs the onnx package")

from lfdn_edge import benchmark  # noqa: E402
from lfdn_edge.benchmark import (ORT_INT8_DYNAMIC, BenchSettings, TorchRunner, chunked, paper_checkpoint,  # noqa: E402
                                 parity, run_benchmark, standardised_inputs, variant_names)
from lfdn_edge.errors import UnavailableError  # noqa: E402

TINY = dict(stage_dims=(8, 16, 40), width=64, depth=2, emb_dim=32)


@pytest.fixture(scope="module")
def ckpt():
    return paper_checkpoint(0, **TINY)


def test_variant_is_quantized_and_close_to_the_fp32_reference(ckpt):
    import onnx

    runner = benchmark.ort_int8_dynamic_runner(ckpt, 64, "cpu", threads=1)
    assert runner.name == ORT_INT8_DYNAMIC
    assert runner.backend.name == "onnxruntime"
    h = runner.backend.header
    assert h["precision"] == "int8" and h["int8"]["weight_type"] == "QInt8" and h["int8"]["per_channel"] is True
    # every Linear (inp, fc1/fc2 per block, out) at each of the 3 levels became an integer MatMul; no float Gemm
    ops = [n.op_type for n in onnx.load_from_string(runner.backend.artifact.payload).graph.node]
    n_linear = (2 + 2 * TINY["depth"]) * 3
    assert ops.count("MatMulInteger") == n_linear and ops.count("DynamicQuantizeLinear") == n_linear
    assert "Gemm" not in ops and "MatMul" not in ops

    x = standardised_inputs(64, ckpt.layout.stage_dims, 1)
    ref = chunked(TorchRunner(ckpt, "cpu"), x, 64)
    p = parity(runner, ref, x, 64)
    assert 1e-4 < p["mse_max_rel_err"] < 0.02, p
    assert 1e-4 < p["mfsim_max_abs_err"] < 0.04, p
    assert p["stage_cos_max_abs_err"] < 0.08, p


def test_bench_reports_parity_and_ratios_against_the_int8_peer(ckpt, monkeypatch):
    monkeypatch.setattr(benchmark, "paper_checkpoint", lambda seed=0: ckpt)
    s = BenchSettings(backends=["torch", "onnxruntime", ORT_INT8_DYNAMIC], batch=[1, 4], threads=1, warmup=1,
                      min_reps=2, min_time=0.0, rounds=1, parity_batch=16, probe=False, power_interval_ms=0)
    assert s.variants() == ["torch", "onnxruntime-fp32", ORT_INT8_DYNAMIC]
    report = run_benchmark(s, log=lambda line: None)
    assert {r["backend"] for r in report["results"]} == {"torch", "onnxruntime-fp32", ORT_INT8_DYNAMIC}
    assert report["parity_vs_torch"][ORT_INT8_DYNAMIC]["mse_max_rel_err"] < 0.02
    tp = {(r["backend"], r["batch"]): r["items_per_s"] for r in report["results"]}
    for b in (1, 4):
        want = round(tp[("onnxruntime-fp32", b)] / tp[(ORT_INT8_DYNAMIC, b)], 3)
        assert report["ratios_vs_onnxruntime_int8"]["onnxruntime-fp32"][str(b)] == want
        assert report["ratios_vs_onnxruntime_int8"]["torch"][str(b)] == round(tp[("torch", b)]
                                                                               / tp[(ORT_INT8_DYNAMIC, b)], 3)
        assert report["ratios_vs_onnxruntime"][ORT_INT8_DYNAMIC][str(b)] == round(tp[(ORT_INT8_DYNAMIC, b)]
                                                                                 / tp[("onnxruntime-fp32", b)], 3)
    assert ORT_INT8_DYNAMIC not in report["ratios_vs_onnxruntime_int8"]


def test_variant_name_is_not_mistaken_for_a_registry_backend():
    assert variant_names([ORT_INT8_DYNAMIC, "onnxruntime"], ["fp32"], "fp32") == [ORT_INT8_DYNAMIC, "onnxruntime-fp32"]
    with pytest.raises(ValueError, match="twice"):
        variant_names([ORT_INT8_DYNAMIC, ORT_INT8_DYNAMIC], ["fp32"], "fp32")


def test_weight_bytes_of_int8_variants():
    assert benchmark.weight_bytes_per_param(ORT_INT8_DYNAMIC) == 1
    assert benchmark.weight_bytes_per_param("onnxruntime-fp32") == 4


def test_missing_quantization_tools_give_a_clear_error(ckpt, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # import now raises ImportError
    with pytest.raises(UnavailableError, match=r"onnxruntime-int8-dynamic needs onnxruntime\.quantization.*pip install"):
        benchmark.ort_int8_dynamic_runner(ckpt, 8, "cpu", threads=1)
