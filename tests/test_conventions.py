"""The scoring convention as checkpoint data: stored, read back, old checkpoints read as "project", and the
cross-check of the "authors" convention against the authors' own code (skips without a checkout of it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lfdn_edge.checkpoint import Checkpoint
from lfdn_edge.features import FeatureConfig, FeatureLayout
from lfdn_edge.model import LFDNConfig
from lfdn_edge.reference import ScoreConfig
from lfdn_edge.train import TrainConfig, train_lfdn

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = FeatureLayout((16, 24, 40, 112, 320))


@pytest.fixture(scope="module")
def z():
    return np.random.default_rng(3).standard_normal((160, 512)).astype(np.float32)


def _train(z, path, convention):
    return train_lfdn(z[:128], LAYOUT, FeatureConfig(backbone="efficientnet-lite0", input_size=64), path,
                      LFDNConfig(in_dim=512, width=64, depth=2, emb_dim=32),
                      TrainConfig(epochs=1, batch_size=64, early_epoch=1),
                      score_config=ScoreConfig(convention=convention), cal_features=z[128:], progress=False)


def test_convention_is_stored_and_old_checkpoints_read_as_project(z, tmp_path):
    ck = _train(z, tmp_path / "a.pt", "authors")
    back = Checkpoint.load(tmp_path / "a.pt")
    assert back.score_config.convention == "authors" and back.data["score"]["convention"] == "authors"
    s = back.reference_scorer().scores(z[:16])
    np.testing.assert_allclose(s["mfsim"], -s["stage_cos"][:, 1:].mean(axis=1), rtol=1e-6)
    # the calibration thresholds were computed with the checkpoint's own convention
    cal = back.reference_scorer().scores(z[128:])
    assert np.mean(cal["mfsim"] <= back.threshold("mfsim")) == pytest.approx(0.95, abs=0.04)
    # a checkpoint written before the convention existed has no such entry: it reads as the project's
    old = dict(ck.data)
    old["score"] = {k: v for k, v in old["score"].items() if k not in ("convention", "stage_weights")}
    Checkpoint(old, None).save(tmp_path / "old.pt")
    legacy = Checkpoint.load(tmp_path / "old.pt")
    assert legacy.score_config.convention == "project"
    p = legacy.reference_scorer().scores(z[:16])
    np.testing.assert_allclose(p["mfsim"], -p["stage_cos"].mean(axis=1), rtol=1e-6)
    assert np.abs(p["mfsim"] - s["mfsim"]).max() > 1e-3


def _dlsr_checkout():
    path = os.environ.get("LFDN_EDGE_DLSR_CHECKOUT")
    return Path(path) if path and (Path(path) / "ldm" / "models" / "diffusion" / "ddim.py").is_file() else None


@pytest.mark.skipif(_dlsr_checkout() is None,
                    reason="set LFDN_EDGE_DLSR_CHECKOUT to a checkout of github xbyym/DLSR to cross-check the "
                           "authors' convention against their code")
def test_authors_convention_matches_the_authors_code():
    """tools/authors_crosscheck.py: their DDIM chain + MFsim (their modules, our weights mapped, same noise) vs
    ReferenceScorer(convention="authors"): equal to float32 rounding; the project convention is not."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from authors_crosscheck import crosscheck
    finally:
        sys.path.remove(str(ROOT / "tools"))
    torch.manual_seed(0)
    out = crosscheck(_dlsr_checkout(), t=3, steps=3)
    assert out["recon_max_abs_diff"] < 1e-4, out
    assert out["mfsim_max_abs_diff"] < 1e-5, out
    assert out["mse_max_abs_diff"] < 1e-5, out
    assert out["project_vs_authors_mfsim_max_abs_diff"] > 1e-2, out
