"""First-time tactic selection in a child process (lfdn_edge/runtime/tactic_isolation.py).

A faulting CUDA candidate destroys its process's context; the selection therefore runs in a child that journals
each candidate, and the parent rejects the candidate that took the child down and selects again without it.
Tested here on the CPU engine with the test-only tactic cpu.test.crash, which aborts its process: the same
machinery as on a GPU (engine kind "cpu" instead of "cuda").
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lfdn_edge._C", reason="native module not built")

from lfdn_edge.artifact.file import write_engine  # noqa: E402
from lfdn_edge.artifact.header import common_header  # noqa: E402
from lfdn_edge.builder.native_payload import build_native_artifact  # noqa: E402
from lfdn_edge import benchmark as bench  # noqa: E402
from lfdn_edge.reference import ScoreConfig  # noqa: E402
from lfdn_edge.runtime import tactic_isolation as iso  # noqa: E402

CRASH = "cpu.test.crash"  # aborts its process when $LFDN_EDGE_TEST_CRASH is 1 (else it only fails)
LAYOUT = (8, 16, 24)


@pytest.fixture(autouse=True)
def _armed(monkeypatch):
    monkeypatch.setenv("LFDN_EDGE_TEST_CRASH", "1")  # the children inherit it


@pytest.fixture(scope="module")
def engine_file(tmp_path_factory):
    ck = bench.paper_checkpoint(seed=3, stage_dims=LAYOUT, width=64, depth=1, emb_dim=32)
    ck.data["score"] = ScoreConfig(t=5, steps=1, eta=1.0, seed=7).to_dict()
    batch = (1, 8, 8)
    extras, payload = build_native_artifact(ck, "fp32", batch, False)
    header = {**common_header(ck, "native", "fp32", batch, False), **extras}
    return write_engine(tmp_path_factory.mktemp("iso") / "m.native.engine", header, payload)


def test_culprit_is_the_last_start_without_done():
    ev = [{"event": "start", "name": "a"}, {"event": "done", "name": "a"}, {"event": "start", "name": "b"}]
    assert iso.culprit_from_journal(ev)["name"] == "b"
    assert iso.culprit_from_journal(ev + [{"event": "done", "name": "b"}]) is None
    # a finalist's second timing round opens the candidate again
    again = ev + [{"event": "done", "name": "b"}, {"event": "start", "name": "a"}]
    assert iso.culprit_from_journal(again)["name"] == "a"


def test_the_stand_in_really_crashes_a_selection_in_process(engine_file):
    """Without isolation the crashing candidate takes the selecting process down (SIGABRT)."""
    code = ("import sys; from lfdn_edge.runtime import tactic_worker as w; "
            "sys.exit(w.run_request(sys.argv[1]))")
    req = engine_file.parent / "req-inprocess.json"
    req.write_text(json.dumps({"engine": str(engine_file), "device": "cpu", "max_batch": 8, "threads": 1,
                               "test_only": [CRASH], "exclude": [], "iters": 3,
                               "journal": str(engine_file.parent / "j.jsonl"),
                               "result": str(engine_file.parent / "r.json")}))
    p = subprocess.run([sys.executable, "-c", code, str(req)], capture_output=True, text=True, timeout=600)
    assert p.returncode == -signal.SIGABRT, (p.returncode, p.stderr[-500:])
    culprit = iso.culprit_from_journal(iso.read_journal(engine_file.parent / "j.jsonl"))
    assert culprit["name"] == CRASH


def test_isolated_selection_rejects_the_crashing_candidate_and_completes(engine_file):
    sel = iso.select_isolated(engine_file, device="cpu", max_batch=8, threads=1, test_only=[CRASH], timeout_s=600)
    assert sel.attempts == 2
    assert [r["name"] for r in sel.rejected] == [CRASH]
    assert "SIGABRT" in sel.rejected[0]["why"]
    assert sel.choices and CRASH not in sel.choices.values()
    assert set(sel.choices) == {f"b{b}.{k}" for b in (0, 1) for k in ("inp", "block", "out")}
    assert sel.rejected[0]["slot"] == "b0.kind0"  # the first slot it was offered for
    for recs in sel.records.values():  # the second child never offered it
        assert all(r["name"] != CRASH or r["note"] == "excluded" for r in recs)


def test_a_child_that_dies_before_any_candidate_is_an_error_not_a_rejection(tmp_path):
    bad = tmp_path / "broken.engine"
    bad.write_bytes(b"not an engine")
    with pytest.raises(iso.TacticIsolationError, match="no candidate running"):
        iso.select_isolated(bad, device="cpu", max_batch=8, threads=1, timeout_s=120)


def test_a_candidates_cuda_error_reported_by_the_child_is_excluded_next_time(monkeypatch, tmp_path):
    """The CUDA protocol without a GPU: the first child reports a fatal CUDA error of one candidate (as the
    binding's RuntimeError names it), the parent excludes that candidate in the second child."""
    seen = []

    def fake_run(cmd, **kw):
        req = json.loads(Path(cmd[-1]).read_text())
        seen.append(list(req["exclude"]))
        out = Path(req["result"])
        if not req["exclude"]:
            out.write_text(json.dumps({"fatal": {"name": "cuda.mma_m64", "slot": None,
                                                 "error": "candidate cuda.mma_m64 failed: cudaErrorIllegalAddress"}}))
            return subprocess.CompletedProcess(cmd, iso.STATUS_CUDA_ERROR_EXIT, "", "")
        out.write_text(json.dumps({"choices": {"b1.k8.n8.gn": "cuda.stream_r8"}, "records": {}}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(iso.subprocess, "run", fake_run)
    sel = iso.select_isolated(tmp_path / "x.engine", device="cuda:0", max_batch=8, workdir=tmp_path)
    assert seen == [[], ["cuda.mma_m64"]]
    assert sel.rejected[0]["name"] == "cuda.mma_m64" and "IllegalAddress" in sel.rejected[0]["why"]
    assert sel.choices == {"b1.k8.n8.gn": "cuda.stream_r8"}


def test_the_crash_stand_in_is_harmless_unless_armed(monkeypatch):
    """Named by mistake (LFDN_EDGE_TACTIC, a cache), it fails like an unsupported tactic instead of aborting."""
    import numpy as np

    from lfdn_edge.native_core import load_native

    monkeypatch.delenv("LFDN_EDGE_TEST_CRASH", raising=False)
    x = np.ones((2, 8), np.float32)
    w = np.ones((4, 8), np.float32)
    with pytest.raises(RuntimeError):
        load_native().fused_linear(x, w, tactic=CRASH)
