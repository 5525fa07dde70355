"""Fuzzing (issue 15, part 3): mutated engine files and checkpoints, feature and frame inputs, and the native
bindings, all run in a worker subprocess (tools/reliability_report.py) so that a crash or a hang is counted:
every case must end in a clear EngineError/CheckpointError (a TypeError/ValueError for inputs and bindings)
or load and score exactly like the intact file; never a crash, a hang or a huge allocation (the worker's
address space is capped). Fast sizes in CI; LFDN_EDGE_LONG_TESTS=1 for 1,000 mutations per file kind."""

from __future__ import annotations

import pytest

from reliability_common import harness, sizes

H = harness()
NEVER = {"crash", "hang", "huge_allocation"}


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    ck = H.make_checkpoint(d / "ckpt.pt")
    return d, ck, H.make_engines(ck.path, d, backends=("onnx", "native"))


@pytest.fixture(scope="module")
def worker(fixture):
    import os

    os.environ["LFDN_FUZZ_NATIVE_ENGINE"] = str(fixture[2].get("native", ""))
    w = H.Worker()
    yield w
    w.close()


def _outcomes(report):
    return {oc for per in report["per_class"].values() for oc in per}


@pytest.mark.parametrize("backend", ["onnxruntime", "native"])
def test_mutated_engine_files(fixture, worker, backend):
    d, _, engines = fixture
    if backend not in engines:
        pytest.skip("the native core is not built")
    p = engines[backend]
    cases = H.engine_mutations(p.read_bytes(), sizes()["mutations"], seed=11)
    r = H.fuzz_files("engine", p, cases, d, worker)
    assert not NEVER & _outcomes(r), r["findings"]
    # without a forged checksum, every mutation is refused clearly or harmless
    unsealed = [f for f in r["findings"] if not f["class"].endswith("_resealed")]
    assert not unsealed, unsealed
    for cls in ("truncate_boundary", "bitflip_fixed_header", "bitflip_payload", "bitflip_checksum", "wrong_length",
                "huge_length", "json_values", "bitflip_json"):
        assert set(r["per_class"][cls]) == {"clear_error"}, (cls, r["per_class"][cls])


def test_mutated_checkpoints(fixture, worker):
    d, ck, _ = fixture
    cases = H.checkpoint_mutations(ck.path.read_bytes(), sizes()["mutations"], seed=12)
    r = H.fuzz_files("checkpoint", ck.path, cases, d, worker)
    assert not r["findings"], r["findings"]
    assert set(r["per_class"]["bitflip_tensor"]) == {"clear_error"}  # the SHA-256 catches what torch.load does not


def test_worker_counts_crashes_and_hangs_and_restarts(fixture, worker):
    """The harness itself: a case that kills the worker is a crash, one that never answers a hang."""
    import os
    import signal

    w = H.Worker(timeout_s=3.0)
    try:
        out = w.send({"op": "_selftest", "what": "ok"})
        assert out["outcome"] == "other_user_error"  # a ValueError
        pid = w.proc.pid
        os.kill(pid, signal.SIGSEGV)
        assert w.send({"op": "_selftest"})["outcome"] == "crash"
        assert w.send({"op": "_selftest"})["outcome"] == "other_user_error" and w.proc.pid != pid  # restarted
        w.proc.send_signal(signal.SIGSTOP)
        assert w.send({"op": "_selftest"})["outcome"] == "hang"
        assert w.restarts == 2
    finally:
        w.kill()


@pytest.mark.parametrize("backend", ["onnxruntime", "native", "torch"])
def test_feature_inputs(fixture, worker, backend):
    d, ck, engines = fixture
    if backend == "torch":
        path = ck.path
    elif backend in engines:
        path = engines[backend]
    else:
        pytest.skip("the native core is not built")
    r = H.fuzz_calls("input", H.input_cases(sizes()["input_rounds"], 3), worker, {"engine": str(path)})
    assert not r["findings"], r["findings"]
    ok = {"scores_correctly"}
    for name in ("float16", "float64", "fortran", "negative_stride_rows", "negative_stride_cols", "column_slice",
                 "huge_batch", "torch_noncontig", "unaligned", "readonly"):
        assert set(r["per_case"][name]) == ok, (name, r["per_case"][name])


def test_frame_inputs(fixture, worker):
    """Frames through the torch graph with the backbone inside (regression: negative strides were refused)."""
    _, ck, _ = fixture
    r = H.fuzz_calls("input", [{"input": n} for n in H.FRAME_CASES], worker, {"engine": str(ck.path), "frames": True})
    assert not r["findings"], r["findings"]
    assert r["per_case"]["frames_negative_stride"] == {"scores_correctly": 1}


def test_native_bindings(fixture, worker):
    if "native" not in fixture[2]:
        pytest.skip("the native core is not built")
    r = H.fuzz_calls("binding", H.binding_cases(sizes()["binding_cases"], 4), worker, {})
    outcomes = {oc for per in r["per_case"].values() for oc in per}
    assert not NEVER & outcomes - {"huge_allocation"}, r["findings"][:5]
    # the one allowed MemoryError: a 2**28-row broadcast view that the binding must copy (1 GiB) under the cap
    huge = [f for f in r["findings"] if f["outcome"] == "huge_allocation"]
    assert all(f["case"]["replace"].get("z0") == "arr_huge_rows_view" or
               "arr_huge_rows_view" in f["case"]["replace"].values() for f in huge), huge


_HUGE_OFFSETS = r"""
import json, os, sys, time
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
from reliability_common import harness
from lfdn_edge.native_core import load_native

H = harness()
_C = load_native()
x = np.ones((4, 16), np.float32)
values = {  # no memory behind any of them
    "numpy_rows_view": np.broadcast_to(np.ones(1, np.float32), (2 ** 28, 1)),  # rows are ints under numpy 1.x
    "torch_rows_view": torch.ones(1).expand(2 ** 28, 1),  # not a sequence for pybind11: refused at once
    "range": range(2 ** 31),  # its entries are ints under any numpy
}
calls = {
    "ddim_score": lambda v: _C.ddim_score(x, z0=x, stage_offsets=v),
    "spec": lambda v: _C.CpuEngine({**H._native_spec(), "stage_offsets": v}, 8, 1),
}
for vn, v in values.items():
    for cn, call in calls.items():
        t0 = time.perf_counter()
        try:
            call(v)
            out = {"error": None}
        except Exception as exc:
            out = {"error": type(exc).__name__, "message": str(exc)[:300]}
        print(json.dumps({"value": vn, "call": cn, "seconds": time.perf_counter() - t0, **out}), flush=True)
"""


def test_stage_offsets_are_refused_before_their_entries_are_converted(fixture):
    """Regression (issue 29): with numpy 1.26 test_native_bindings hung on stage_offsets = a (2**28, 1) broadcast
    view: pybind11 converted it row by row through Python (a 1-element row is an int under numpy 1.x), 2**28
    conversions (its worker timed out); a range(2**31) did the same under any numpy. The bindings now refuse an
    array that is not 1-D integer and any sequence longer than 65 entries (64 stages) before converting an entry.
    Run in a subprocess so that a regression fails instead of hanging."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    if "native" not in fixture[2]:
        pytest.skip("the native core is not built")
    env = dict(os.environ, LFDN_FUZZ_NATIVE_ENGINE=str(fixture[2]["native"]))
    try:
        p = subprocess.run([sys.executable, "-c", _HUGE_OFFSETS, str(Path(__file__).parent)], env=env,
                           capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"a huge stage_offsets hangs the binding; finished before it: {exc.stdout!r}")
    rows = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    assert p.returncode == 0 and len(rows) == 6, (p.returncode, p.stdout, p.stderr[-2000:])
    for r in rows:
        assert r["error"] in ("TypeError", "ValueError") and "stage_offsets" in r["message"], r
        assert r["seconds"] < 5.0, r
    by = {(r["value"], r["call"]): r["message"] for r in rows}
    assert "must be a sequence of int, got a 2-D ndarray of dtype float32" in by["numpy_rows_view", "ddim_score"]
    assert "has 2147483648 entries, at most 65" in by["range", "spec"]


def test_cuda_wrapper_checks_stage_offsets_before_converting_them():
    """The CUDA op wrapper (lfdn_edge.native_core.cuda_ddim_score) converts stage_offsets in Python: the same
    bound and array rule, checked before any entry is converted (a CPU test of its helper)."""
    import re
    from pathlib import Path

    import numpy as np
    import torch

    from lfdn_edge.native_core import MAX_STAGES, _stage_offsets_list

    header = (Path(__file__).resolve().parents[1] / "csrc" / "include" / "lfdn" / "ddim_score.h").read_text()
    assert int(re.search(r"kMaxStages = (\d+);", header).group(1)) == MAX_STAGES

    assert _stage_offsets_list([0, 2, np.int64(5)]) == [0, 2, 5]
    assert _stage_offsets_list(np.array([0, 3, 7], np.int32)) == [0, 3, 7]
    for bad, exc, msg in ((np.broadcast_to(np.ones(1, np.float32), (2 ** 28, 1)), TypeError, "2-D ndarray"),
                          (np.array([0.0, 4.0]), TypeError, "dtype float64"),
                          (torch.ones(1).expand(2 ** 28, 1), ValueError, "268435456 entries, at most 65"),
                          (range(2 ** 31), ValueError, "at most 65"), ("0,4", TypeError, "got str")):
        with pytest.raises(exc, match=msg):
            _stage_offsets_list(bad)
