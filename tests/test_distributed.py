"""Multi-process training under torchrun (CPU, gloo, 2 processes) against one process with the same global batch
and seed: the sharded features are bit-identical, the checkpoint matches within a stated tolerance (the only
difference is the float rounding of DDP's gradient all-reduce), the scores and thresholds agree; a crash of
rank 0 after epoch 2 and a rerun resume to exactly the uninterrupted 2-process checkpoint.

Measured (2026-12-01, this configuration: 300 training images, 4 epochs, global batch 23 so that every batch
splits unevenly and the last batch of 1 item leaves rank 0 an empty slice): EMA weights differ by at most
about 4e-7 (abs), scores by about 2e-7; the tolerances below are 25x wider.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--data", "fmnist-ood", "--n-train", "300", "--n-cal", "100", "--n-test", "50", "--epochs", "4",
        "--early-epoch", "2", "--width", "64", "--depth", "2", "--emb-dim", "64", "--batch-size", "23", "--quiet"]
WEIGHT_TOL = 1e-5   # max |EMA weight difference|, single process vs 2 processes
SCORE_TOL = 5e-6    # max |score difference|

CRASH_AFTER_EPOCH_2 = r"""
import os, sys
import lfdn_edge.train as train
real, saves = train.save_checkpoint, []
def crashing_save(data, path):
    real(data, path)
    saves.append(path)
    if len(saves) == 2:
        os._exit(3)  # rank 0 dies hard right after writing epoch 2 (rank 1 is then stopped by torchrun)
train.save_checkpoint = crashing_save
from lfdn_edge.cli import run
sys.exit(run("train", sys.argv[1:]))
"""


def torchrun(script, args, nproc=2, check=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(script),
           *args]
    proc = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace", timeout=600, cwd=ROOT)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from lfdn_edge.checkpoint import Checkpoint

    d = tmp_path_factory.mktemp("ddp")
    single = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), *ARGS, "--out", str(d / "single.pt"),
                             "--cache-dir", str(d / "cache1")], capture_output=True, encoding="utf-8", errors="replace", timeout=600, cwd=ROOT)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = torchrun(ROOT / "tools" / "train.py", [*ARGS, "--out", str(d / "ddp.pt"), "--cache-dir", str(d / "cache2")])
    assert "(2 processes)" in ddp.stdout and ddp.stdout.count("wrote ") == 1, ddp.stdout  # rank 0 reports
    return d, Checkpoint.load(d / "single.pt"), Checkpoint.load(d / "ddp.pt")


@pytest.mark.data
def test_two_processes_match_one_process_with_the_same_global_batch_and_seed(runs):
    d, one, two = runs
    # features: each rank extracted whole extraction batches; gathered, they are the single-process features
    f1 = {p.name: np.load(p) for p in (d / "cache1" / "features").glob("*.npy")}
    f2 = {p.name: np.load(p) for p in (d / "cache2" / "features").glob("*.npy")}
    from lfdn_edge import defaults
    from lfdn_edge.backbones import get_backbone

    c = sum(get_backbone(defaults.BACKBONE).stage_dims)  # the default backbone's feature size (Lite2: 560)
    assert sorted(a.shape for a in f1.values()) == [(100, c), (300, c)]
    assert set(f1) <= set(f2)
    for name, arr in f1.items():
        assert np.array_equal(arr, f2[name]), name
    shards = sorted(a.shape[0] for n, a in f2.items() if n not in f1)
    assert shards == [128, 172], shards  # train: rank 0 one batch of 128, rank 1 the other two (cal: rank 0 all)
    assert two.data["train_state"]["world_size"] == 2 and "world_size" not in one.data["train_state"]
    # the checkpoint: the same up to the rounding of the gradient all-reduce
    worst = max((v - two.data["ema"][k]).abs().max().item() for k, v in one.data["ema"].items())
    assert 0 <= worst < WEIGHT_TOL, worst
    worst_early = max((v - two.data["early_ema"][k]).abs().max().item() for k, v in one.data["early_ema"].items())
    assert worst_early < WEIGHT_TOL, worst_early
    np.testing.assert_allclose(two.data["train_state"]["history"], one.data["train_state"]["history"], rtol=1e-5)
    assert two.data["early_epoch"] == one.data["early_epoch"] == 2
    # and so do the scores and the calibrated thresholds
    z = f1[[n for n, a in f1.items() if a.shape[0] == 100][0]]
    s1, s2 = one.reference_scorer().scores(z), two.reference_scorer().scores(z)
    for k in ("mfsim", "mse"):
        assert np.abs(s1[k] - s2[k]).max() < SCORE_TOL, k
        assert abs(one.threshold(k) - two.threshold(k)) < SCORE_TOL, k
    assert not any(p.name.endswith(".tmp") for p in d.iterdir())


@pytest.mark.data
def test_a_crashed_two_process_run_resumes_to_the_uninterrupted_checkpoint(runs, tmp_path):
    from lfdn_edge.checkpoint import Checkpoint, load_checkpoint_dict

    d, _, two = runs
    driver = tmp_path / "crash_driver.py"
    driver.write_text(CRASH_AFTER_EPOCH_2)
    out = tmp_path / "resumed.pt"
    common = [*ARGS, "--out", str(out), "--cache-dir", str(d / "cache2")]
    crashed = torchrun(driver, common, check=False)
    assert crashed.returncode != 0
    assert load_checkpoint_dict(out)["train_state"]["epoch"] == 2
    torchrun(ROOT / "tools" / "train.py", common)
    resumed = Checkpoint.load(out)
    for key in ("ema", "early_ema"):
        for k, v in two.data[key].items():
            assert torch.equal(v, resumed.data[key][k]), (key, k)
    assert resumed.data["train_state"]["history"] == two.data["train_state"]["history"]
    assert resumed.calibration["thresholds"] == two.calibration["thresholds"]


def test_world_size_without_torchrun_is_a_clear_error(monkeypatch):
    from lfdn_edge.distributed import from_env, shard_batches

    monkeypatch.setenv("WORLD_SIZE", "2")
    for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        from_env()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert from_env() is None
    # shards are contiguous runs of whole extraction batches covering every item once
    for n, w in ((300, 2), (1000, 3), (5, 4), (129, 2)):
        parts = [shard_batches(n, w, r) for r in range(w)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        assert all(lo % 128 == 0 for lo, _ in parts)
