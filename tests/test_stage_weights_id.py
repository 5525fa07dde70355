"""MFsim stage weights learned from the ID calibration split (``--stage-weights id-spread``, issue 27): learned at
calibration from ID data only, stored in the checkpoint, used by the reference and the native engine alike;
synthetic features, a tiny LFDN (seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from lfdn_edge.checkpoint import Checkpoint, CheckpointError
from lfdn_edge.features import FeatureConfig, FeatureLayout
from lfdn_edge.metrics import threshold_at_tpr
from lfdn_edge.model import LFDNConfig
from lfdn_edge.reference import ScoreConfig, id_spread_weights, stage_weights
from lfdn_edge.train import TrainConfig, train_lfdn

LAYOUT = FeatureLayout((4, 8, 12))


def _features(n, seed):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 1)).astype(np.float32)
    z = base + 0.3 * rng.standard_normal((n, LAYOUT.dim)).astype(np.float32)
    z[:, 4:12] *= 0.2  # stages of different scales, so their cosine spreads differ
    return z


def _train(path, weights, cal=True):
    return train_lfdn(_features(512, 0), LAYOUT, FeatureConfig(), path, LFDNConfig(in_dim=LAYOUT.dim, width=32, depth=1,
                      emb_dim=16), TrainConfig(epochs=3, batch_size=128), score_config=ScoreConfig(stage_weights=weights),
                      cal_features=_features(300, 1) if cal else None, progress=False)


def test_weights_are_learned_from_calibration_data_and_stored(tmp_path):
    ckpt = _train(tmp_path / "id.pt", "id-spread")
    learned = ckpt.calibration["stage_weights"]
    assert len(learned) == 3 and sum(learned) == pytest.approx(1.0) and min(learned) > 0
    cal = _features(300, 1)
    uniform = Checkpoint.load(tmp_path / "id.pt").reference_scorer(ScoreConfig(stage_weights="uniform")).scores(cal)
    np.testing.assert_allclose(learned, id_spread_weights(uniform["stage_cos"]), rtol=1e-6)
    assert len(set(np.round(learned, 3))) == 3  # not uniform: the stages' ID spreads differ
    # the checkpoint keeps the setting's name; its score_config resolves it to the learned weights
    loaded = Checkpoint.load(tmp_path / "id.pt")
    assert loaded.data["score"]["stage_weights"] == "id-spread"
    assert loaded.score_config.stage_weights == pytest.approx(tuple(learned))
    s = loaded.reference_scorer().scores(cal)
    np.testing.assert_allclose(s["mfsim"], -(s["stage_cos"] @ np.asarray(learned)), rtol=1e-5, atol=1e-6)
    # the threshold is calibrated with the learned weights: about 95 % of the calibration split accepted
    assert loaded.threshold("mfsim") == pytest.approx(threshold_at_tpr(s["mfsim"], 0.95), rel=1e-6)
    assert np.mean(s["mfsim"] <= loaded.threshold("mfsim")) == pytest.approx(0.95, abs=0.01)
    # resuming a finished run re-calibrates, reaching the same weights
    again = _train(tmp_path / "id.pt", "id-spread")
    assert again.calibration["stage_weights"] == pytest.approx(learned)


def test_native_engine_scores_with_the_learned_weights(tmp_path):
    _C = pytest.importorskip("lfdn_edge._C", reason="the native extension is not built")
    from lfdn_edge.builder.native_payload import native_spec
    from lfdn_edge.diffusion import Schedule

    ckpt = _train(tmp_path / "id.pt", "id-spread")
    spec = native_spec(ckpt.build_model("ema"), Schedule(ckpt.diffusion_config), ckpt.score_config, ckpt.layout, "fp32")
    np.testing.assert_allclose(spec["stage_weights"], ckpt.calibration["stage_weights"], rtol=1e-6)
    z = _features(64, 2)
    got = _C.CpuEngine(spec, 64, 0).score(z)["mfsim"]
    np.testing.assert_allclose(got, ckpt.reference_scorer().scores(z)["mfsim"], atol=1e-5)


def test_id_spread_needs_calibration_data(tmp_path):
    with pytest.raises(ValueError, match="learned from calibration features"):
        _train(tmp_path / "x.pt", "id-spread", cal=False)
    with pytest.raises(ValueError, match="learned from the ID calibration split"):
        stage_weights(ScoreConfig(stage_weights="id-spread"), 3)
    ckpt = _train(tmp_path / "u.pt", "uniform")
    ckpt.data["score"]["stage_weights"] = "id-spread"
    ckpt.data["calibration"] = None
    with pytest.raises(CheckpointError, match="not calibrated"):
        ckpt.score_config


def test_cli_offers_id_spread():
    from lfdn_edge.cli.train import build_parser

    args = build_parser().parse_args(["--out", "x.pt", "--stage-weights", "id-spread"])
    assert args.stage_weights == "id-spread"
    assert "id-spread" in build_parser().format_help()
