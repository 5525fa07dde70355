"""Soak and concurrency (issue 15, parts 1 and 2), per backend (torch, onnxruntime, native CPU).

Soak: score calls with mixed batch sizes (1, 8, 32, 64, 100: the last is split at the engine's max of 64);
every call must return the same scores as the first, resident memory after warm-up may grow at most
RSS_BOUND_MIB (8 MiB) and the median latency of the last window must stay within 2x (+0.5 ms) of the
first. 500 calls per backend in CI, 10,000 with LFDN_EDGE_LONG_TESTS=1.
Concurrency: one Scorer from 8 threads gives exactly the one-thread scores; two Scorers used at the same time
do not interfere; a backend that does not declare itself thread-safe is serialised by the Scorer."""

from __future__ import annotations

import threading
import time

import pytest

import lfdn_edge
from reliability_common import harness, sizes

H = harness()
BACKENDS = ["torch", "onnxruntime", "native"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    d = tmp_path_factory.mktemp("soak")
    ck = H.make_checkpoint(d / "ckpt.pt", width=64, depth=2, emb_dim=32)
    ck2 = H.make_checkpoint(d / "other.pt", seed=3)
    return H.make_engines(ck.path, d), H.make_engines(ck2.path, d, backends=("onnx", "native"))


def _scorer(engines, backend):
    if backend not in engines[0]:
        pytest.skip(f"{backend} cannot build here")
    return lfdn_edge.Scorer(engines[0][backend])


@pytest.mark.parametrize("backend", BACKENDS)
def test_soak_memory_flat_latency_stable_scores_identical(engines, backend):
    r = H.soak(_scorer(engines, backend), sizes()["soak_calls"])
    assert r["score_mismatches"] == 0, r
    assert r["rss_growth_mib"] <= H.RSS_BOUND_MIB, r
    assert r["last"]["p50_ms"] <= 2 * r["first"]["p50_ms"] + 0.5, r


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_scorer_from_8_threads_gives_the_one_thread_scores(engines, backend):
    r = H.concurrency(_scorer(engines, backend), threads=8, batches_per_thread=6)
    assert not r["errors"], r["errors"]
    assert r["exact"] == r["batches"], r


@pytest.mark.parametrize("backend", ["onnxruntime", "native"])
def test_two_scorers_at_once_do_not_interfere(engines, backend):
    if backend not in engines[1]:
        pytest.skip(f"{backend} cannot build here")
    r = H.two_scorers(lfdn_edge.Scorer(engines[0][backend]), lfdn_edge.Scorer(engines[1][backend]), threads=4, rounds=8)
    assert r["differ_from_each_other"] and not r["errors"] and r["mismatches"] == 0, r


def test_a_backend_that_is_not_thread_safe_is_serialised(engines):
    """A backend class without ``thread_safe = True`` never runs two batches at once under one Scorer."""
    s = _scorer(engines, "onnxruntime")
    inner = s._backend
    state = {"inside": 0, "max": 0}
    guard = threading.Lock()

    class Unsafe:
        def run(self, x):
            with guard:
                state["inside"] += 1
                state["max"] = max(state["max"], state["inside"])
            time.sleep(0.002)
            try:
                return inner.run(x)
            finally:
                with guard:
                    state["inside"] -= 1

    s2 = lfdn_edge.Scorer(engines[0]["onnxruntime"])
    s2._backend = Unsafe()
    s2._lock = threading.Lock()  # what __init__ gives a backend class without thread_safe
    x = H.standardised(4, 0)
    ths = [threading.Thread(target=lambda: [s2.score(x) for _ in range(10)]) for _ in range(6)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert state["max"] == 1
    # and the flag is read from the backend class: onnxruntime declares itself thread-safe, native does not
    assert s._lock is None
    if "native" in engines[0]:
        assert lfdn_edge.Scorer(engines[0]["native"])._lock is not None
