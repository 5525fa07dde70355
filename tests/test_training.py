"""Training, checkpoints, resume, calibration and DLSR accuracy on real fmnist-ood features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfdn_edge.checkpoint import Checkpoint, CheckpointError, load_checkpoint_dict
from lfdn_edge.evaluate import evaluate_features, format_table
from lfdn_edge.model import LFDNConfig
from lfdn_edge.train import TrainConfig, train_lfdn

pytestmark = pytest.mark.data

TINY = dict(width=128, depth=2, emb_dim=64)


def _train(real_features, path, epochs, early_epoch=0, **kw):
    cfg = LFDNConfig(in_dim=real_features.layout.dim, **TINY)
    return train_lfdn(real_features.train, real_features.layout, real_features.feature_config, path, cfg,
                      TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, seed=3, early_epoch=early_epoch),
                      cal_features=real_features.cal, progress=False, **kw)


@pytest.fixture(scope="module")
def trained(real_features, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "ckpt.pt"
    return _train(real_features, path, epochs=20)


def test_checkpoint_round_trip_gives_identical_scores(trained, real_features):
    again = Checkpoint.load(trained.path)
    a = trained.reference_scorer().scores(real_features.test[:50])
    b = again.reference_scorer().scores(real_features.test[:50])
    for k in ("mfsim", "mse", "lr"):
        assert np.array_equal(a[k], b[k])
    assert again.layout.stage_dims == (16, 24, 40, 112, 320)
    assert again.feature_config.backbone == "efficientnet-lite0"
    assert again.data["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    # 800 images / batch 128 = 7 steps per epoch: the snapshot waits for 100 steps -> epoch 15
    assert again.data["early_epoch"] == 15 and again.data["early_ema"] is not None
    assert len(again.data["train_state"]["history"]) == 20
    assert "optimizer" not in again.data["train_state"]  # a finished checkpoint drops the resume state


def test_calibrated_threshold_accepts_95_percent_of_calibration_data(trained, real_features):
    cal = trained.calibration
    assert cal["tpr"] == 0.95 and cal["n"] == len(real_features.cal)
    scores = trained.reference_scorer().scores(real_features.cal)
    for name in ("mfsim", "mse", "lr"):
        accepted = np.mean(scores[name] <= cal["thresholds"][name])
        assert 0.95 <= accepted <= 0.95 + 1.5 / len(real_features.cal)


def test_resume_equals_uninterrupted_training(real_features, tmp_path, monkeypatch):
    import lfdn_edge.train as train_mod

    full = _train(real_features, tmp_path / "full.pt", epochs=4, early_epoch=2)
    # crash right after the checkpoint of epoch 2 is written
    real_save, saves = train_mod.save_checkpoint, []

    def crashing_save(data, path):
        real_save(data, path)
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", crashing_save)
    path = tmp_path / "interrupted.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(real_features, path, epochs=4, early_epoch=2)
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    assert load_checkpoint_dict(path)["train_state"]["epoch"] == 2
    resumed = _train(real_features, path, epochs=4, early_epoch=2)
    for k, v in full.data["ema"].items():
        assert torch.equal(v, resumed.data["ema"][k]), k
    for k, v in full.data["early_ema"].items():
        assert torch.equal(v, resumed.data["early_ema"][k]), k
    assert resumed.data["train_state"]["history"] == full.data["train_state"]["history"]
    # a different configuration never silently resumes
    with pytest.raises(ValueError, match="different configuration"):
        _train(real_features, path, epochs=5, early_epoch=2)


def test_bad_checkpoints_are_rejected(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        Checkpoint.load(tmp_path / "missing.pt")
    raw = trained.path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        Checkpoint.load(tmp_path / "trunc.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError):
        Checkpoint.load(tmp_path / "text.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an lfdn-edge checkpoint"):
        Checkpoint.load(tmp_path / "foreign.pt")
    d = load_checkpoint_dict(trained.path)
    d["format_version"] = 99
    torch.save(d, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        Checkpoint.load(tmp_path / "future.pt")


def test_training_rejects_bad_features(real_features, tmp_path):
    bad = real_features.train[:64].copy()
    bad[5, 7] = np.nan
    cfg = LFDNConfig(in_dim=512, **TINY)
    with pytest.raises(ValueError, match="NaN"):
        train_lfdn(bad, real_features.layout, real_features.feature_config, tmp_path / "x.pt", cfg,
                   TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match=r"shape \(N, 512\)"):
        train_lfdn(real_features.train[:, :500], real_features.layout, real_features.feature_config,
                   tmp_path / "x.pt", cfg, TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="empty batch"):
        train_lfdn(real_features.train[:0], real_features.layout, real_features.feature_config,
                   tmp_path / "x.pt", cfg, TrainConfig(epochs=1), progress=False)
    assert not (tmp_path / "x.pt").exists()


def test_dlsr_detects_far_ood_on_real_data(real_features, tmp_path):
    """A small LFDN trained briefly on 800 real Fashion-MNIST features already separates far-OOD sets."""
    cfg = LFDNConfig(in_dim=512, width=256, depth=4, emb_dim=128)
    ckpt = train_lfdn(real_features.train, real_features.layout, real_features.feature_config, tmp_path / "q.pt",
                      cfg, TrainConfig(epochs=25, lr=1e-3, seed=0), cal_features=real_features.cal, progress=False)
    ev = evaluate_features(ckpt, real_features.train, real_features.test, real_features.ood, real_features.far_ood)
    print(format_table(ev.report))
    far = ev.report["far_ood_mean"]
    assert far["mfsim"]["auroc"] >= 90.0
    assert far["mse"]["auroc"] >= 90.0
    assert far["lr"]["auroc"] > 70.0          # the sign of LR: higher = more OOD (snapshot after >= 100 steps)
    assert ev.report["ood"]["near"]["mfsim"]["auroc"] > 55.0
    # the calibrated threshold flags about 5% of unseen ID test images
    assert 1.0 <= ev.report["id_test"]["flagged_at_threshold_pct"]["mfsim"] <= 12.0


def test_train_and_evaluate_on_user_image_folders(small_benchmark, tmp_path):
    """The user-data path: an ID folder to train on and an OOD folder to evaluate, as real PNG files."""
    from PIL import Image

    from lfdn_edge.features import FeatureConfig
    from lfdn_edge.workflow import evaluate_on_data, train_from_data

    id_dir, ood_dir = tmp_path / "shirts", tmp_path / "digits"
    for folder, images in ((id_dir, small_benchmark.train.images[:300]), (ood_dir, small_benchmark.ood["digits"].images[:80])):
        folder.mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img).save(folder / f"{i:04d}.png")
    # 200 images = 2 steps per epoch: 20 epochs never reach the 100 steps of the LR snapshot, and training says so
    with pytest.warns(UserWarning, match="early snapshot for the LR score is the final epoch"):
        ckpt = train_from_data(str(id_dir), tmp_path / "user.pt", FeatureConfig(input_size=64), 64, 2, 64,
                               TrainConfig(epochs=20, lr=1e-3), n_train=200, n_cal=50, n_test=50,
                               cache_root=tmp_path / "cache", progress=False)
    assert ckpt.data["data"]["spec"] == str(id_dir) and ckpt.data["data"]["n_train"] == 200
    ev = evaluate_on_data(ckpt, ood=[str(ood_dir)], cache_root=tmp_path / "cache", progress=False)
    assert ev.report["id_test"]["n"] == 50                      # the split recorded at training time
    assert list(ev.report["ood"]) == ["digits"] and ev.report["far_ood"] == ["digits"]
    assert ev.report["ood"]["digits"]["mfsim"]["auroc"] > 90.0
