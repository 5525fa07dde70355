"""The bench timing (lfdn_edge.benchmark, behind lfdn-edge bench and tools/bench.py): variants run interleaved in
rotated rounds, each with its warm-up once."""

from __future__ import annotations

import numpy as np
import pytest

from lfdn_edge import benchmark as bench


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


# ------------------------------------------------------------------------------------------- the library call
def test_the_command_s_defaults_are_the_settings_defaults():
    """lfdn-edge bench with no options runs BenchSettings() (one place for the defaults)."""
    from lfdn_edge.cli import bench as bench_cli

    args = bench_cli.build_parser().parse_args([])
    assert bench_cli.settings_from(args) == bench.BenchSettings()


def test_run_benchmark_is_a_library_call_that_returns_the_report(tmp_path, capsys):
    """run_benchmark without the command: the report comes back, progress goes to ``log`` (nothing printed),
    and the commit is the checkout's (git_commit finds the repository from lfdn_edge/benchmark.py)."""
    from pathlib import Path

    path = tmp_path / "tiny.pt"
    bench.paper_checkpoint(stage_dims=(4, 8), width=16, depth=2, emb_dim=16).save(path)
    lines = []
    settings = bench.BenchSettings(ckpt=str(path), backends=["torch", "torch-fp16"], batch=[2], warmup=0,
                                   min_reps=1, min_time=0.0, rounds=1, parity_batch=4, probe=False,
                                   power_interval_ms=0)
    rep = bench.run_benchmark(settings, log=lines.append)
    assert capsys.readouterr().out == ""
    assert [(r["backend"], r["batch"]) for r in rep["results"]] == [("torch", 2), ("torch-fp16", 2)]
    assert set(rep["parity_vs_torch"]) == {"torch-fp16"} and rep["parity_inputs"] == "4 standardised random vectors"
    assert rep["settings"]["batch"] == [2] and rep["settings"]["native_precision"] == ["fp32", "fp16"]
    assert any(s.startswith("model: C=12 W=16") for s in lines) and any("torch-fp16" in s for s in lines)
    if (Path(bench.__file__).resolve().parents[1] / ".git").exists():
        assert rep["commit"] and len(rep["commit"]) == 40
    with pytest.raises(ValueError, match="--rounds must be >= 1"):
        bench.run_benchmark(bench.BenchSettings(rounds=0))
