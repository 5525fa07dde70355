"""Training, checkpoints, resume, calibration and DLSR accuracy on real fmnist-ood features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfdn_edge.checkpoint import Checkpoint, CheckpointError, load_checkpoint_dict
from lfdn_edge.evaluate import evaluate_features, format_table
from lfdn_edge.diffusion import Schedule
from lfdn_edge.model import LFDN, LFDNConfig
from lfdn_edge.reference import ReferenceScorer
from lfdn_edge.train import TrainConfig, train_lfdn

pytestmark = pytest.mark.data

TINY = dict(width=128, depth=2, emb_dim=64)


def _train(real_features, path, epochs, early_epoch=0, **kw):
    cfg = LFDNConfig(in_dim=real_features.layout.dim, **TINY)
    return train_lfdn(real_features.train, real_features.layout, real_features.feature_config, path, cfg,
                      TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, seed=3, early_epoch=early_epoch),
                      cal_features=real_features.cal, progress=False, **kw)


def _recording_saves(monkeypatch):
    """Record a copy of every per-epoch checkpoint dict train_lfdn hands to save_checkpoint (in memory, before
    any file is involved)."""
    import lfdn_edge.train as train_mod

    real_save, saved = train_mod.save_checkpoint, []

    def recording_save(data, path):
        saved.append({k: ({n: t.detach().clone() for n, t in v.items()} if k in ("ema", "early_ema") and v else v)
                      for k, v in data.items()})
        return real_save(data, path)

    monkeypatch.setattr(train_mod, "save_checkpoint", recording_save)
    return saved


@pytest.fixture(scope="module")
def trained_and_saved(real_features, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "ckpt.pt"
    with pytest.MonkeyPatch.context() as mp:
        saved = _recording_saves(mp)
        ckpt = _train(real_features, path, epochs=20)
    return ckpt, saved[-1]


@pytest.fixture(scope="module")
def trained(trained_and_saved):
    return trained_and_saved[0]


def test_checkpoint_file_scores_with_the_weights_training_ended_with(trained_and_saved, real_features):
    """What is read back from ckpt.pt is what training held in memory at its last epoch, and the checkpoint's
    scorer uses it as DLSR says: the EMA weights for the reconstruction, the early EMA snapshot for LR."""
    trained, last = trained_and_saved
    again = Checkpoint.load(trained.path)
    for key in ("ema", "early_ema"):
        assert set(again.data[key]) == set(last[key])
        for name, t in last[key].items():
            assert torch.equal(again.data[key][name], t), (key, name)
    # scores from models built here from the in-memory weights = scores of the checkpoint's own scorer
    final, early = LFDN(again.model_config), LFDN(again.model_config)
    final.load_state_dict(last["ema"])
    early.load_state_dict(last["early_ema"])
    z = real_features.test[:50]
    want = ReferenceScorer(final, again.layout, Schedule(again.diffusion_config), again.score_config,
                           early_model=early).scores(z)
    got = again.reference_scorer().scores(z)
    for k in ("mfsim", "mse", "lr"):
        assert np.array_equal(got[k], want[k]), k
    assert np.abs(got["lr"]).max() > 0  # the early snapshot really differs from the final weights
    assert again.layout.stage_dims == (16, 24, 40, 112, 320)
    assert again.feature_config.backbone == "efficientnet-lite0"
    assert again.data["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    # 800 images / batch 128 = 7 steps per epoch: the snapshot waits for 100 steps -> epoch 15
    assert again.data["early_epoch"] == 15 and again.data["early_ema"] is not None
    assert len(again.data["train_state"]["history"]) == 20
    assert "optimizer" not in again.data["train_state"]  # a finished checkpoint drops the resume state


def test_independent_training_runs_with_one_seed_give_identical_checkpoints(real_features, tmp_path):
    """Two runs from scratch into different files with the same seed: bit-identical EMA weights, early
    snapshot, loss history and scores; another seed gives other weights (so equality is not vacuous)."""
    a = _train(real_features, tmp_path / "a.pt", epochs=3, early_epoch=1)
    b = _train(real_features, tmp_path / "b.pt", epochs=3, early_epoch=1)
    for key in ("ema", "early_ema"):
        for name, t in a.data[key].items():
            assert torch.equal(t, b.data[key][name]), (key, name)
    assert a.data["train_state"]["history"] == b.data["train_state"]["history"]
    z = real_features.test[:40]
    sa, sb = a.reference_scorer().scores(z), b.reference_scorer().scores(z)
    for k in ("mfsim", "mse", "lr"):
        assert np.array_equal(sa[k], sb[k]), k
    cfg = LFDNConfig(in_dim=real_features.layout.dim, **TINY)
    other = train_lfdn(real_features.train, real_features.layout, real_features.feature_config, tmp_path / "c.pt",
                       cfg, TrainConfig(epochs=3, batch_size=128, lr=1e-3, seed=4, early_epoch=1), progress=False)
    assert not all(torch.equal(t, other.data["ema"][n]) for n, t in a.data["ema"].items())
    assert other.data["train_state"]["history"] != a.data["train_state"]["history"]


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
    assert list(ev.report["ood"]) == ["digits"]
    assert ev.report["far_ood"] == []  # a user folder is not known to be far-OOD (only fmnist-ood's far sets are)
    assert ev.report["ood"]["digits"]["mfsim"]["auroc"] > 90.0
