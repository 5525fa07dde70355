"""tools/bench.py timing: variants run interleaved in rotated rounds, each with its warm-up once."""

from __future__ import annotations

import numpy as np
import pytest

from lfdn_edge.cli import bench


class _Recorder:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def prepare(self, x):
        return x

    def __call__(self, x):
        self.log.append(self.name)


def _runs(log):
    """The log compressed into (name, count) runs."""
    out = []
    for n in log:
        if out and out[-1][0] == n:
            out[-1][1] += 1
        else:
            out.append([n, 1])
    return [tuple(r) for r in out]


def test_rounds_rotate_the_order_and_split_the_repetitions():
    log = []
    runners = [_Recorder(n, log) for n in ("a", "b", "c")]
    res = bench.time_interleaved(runners, np.zeros((4, 2), np.float32), "cpu", warmup=2, min_reps=6, min_time=0.0,
                                 max_reps=1000, rounds=3)
    # warm-up: 2 calls each, then 3 rounds of 2 calls each, the start rotating a, b, c
    assert _runs(log) == [("a", 2), ("b", 2), ("c", 2),
                          ("a", 2), ("b", 2), ("c", 2),
                          ("b", 2), ("c", 2), ("a", 2),
                          ("c", 2), ("a", 2), ("b", 2)]
    assert [r["backend"] for r in res] == ["a", "b", "c"]
    for r in res:
        assert r["reps"] == 6 and r["batch"] == 4 and len(r["round_items_per_s"]) == 3 and r["items_per_s"] > 0


def test_one_round_is_the_plain_timing_and_bad_rounds_are_refused():
    log = []
    r = bench.time_runner(_Recorder("a", log), np.zeros((1, 2), np.float32), "cpu", 1, 3, 0.0, 1000)
    assert r["reps"] == 3 and len(log) == 4 and len(r["round_items_per_s"]) == 1
    with pytest.raises(ValueError, match="rounds"):
        bench.time_interleaved([_Recorder("a", log)], np.zeros((1, 2), np.float32), "cpu", 0, 1, 0.0, 10, rounds=0)
