"""The default configuration's accuracy on the two smaller offline benchmarks (issue 27): digits-ood (grey) and
sprites-ood (colour). fmnist-ood's guard is tests/test_demo_accuracy.py (the whole Quick start).

Each test trains the defaults (EfficientNet-Lite2 at 64 px, LFDN width 512 / depth 6, 30 epochs) on the
benchmark's own full split (digits-ood 1500 training images, sprites-ood 1200) and evaluates it as `lfdn-edge
evaluate` does: 28 s and 26 s in a fresh-clone CI run on an idle 2-core machine with the features cached
(12-16 min measured under a load of 6-7 at nice 19), most of it the 30 epochs of training. The thresholds are the values
measured in docs/QUALITY.md ("The default, decided on three data sets") minus a margin: training is deterministic
on one machine (a retrained checkpoint gives the same AUROC to the last digit); the margin covers what another
CPU's float rounding may do, taken as several times the spread over training seeds and noise seeds.
"""

from __future__ import annotations

import shutil

import pytest

from lfdn_edge.checkpoint import Checkpoint
from lfdn_edge.evaluate import format_table
from lfdn_edge.reference import ScoreConfig
from lfdn_edge.workflow import evaluate_on_data, train_from_data

pytestmark = pytest.mark.data


def _check_common(report, far_sets, far_min, flagged=(1.0, 12.0)):
    far = report["far_ood_mean"]
    assert report["far_ood"] == far_sets and report["near_ood"] == ["near"]
    assert far["mfsim"]["auroc"] >= far_min
    for name, per_score in report["ood"].items():  # no DLSR score worse than chance on any OOD set
        for score in ("mfsim", "mse"):
            assert per_score[score]["auroc"] > 50.0, (name, score, per_score[score])
    # the calibrated threshold (95 % of the calibration split accepted) on the unseen ID test images
    assert flagged[0] <= report["id_test"]["flagged_at_threshold_pct"]["mfsim"] <= flagged[1]


def test_digits_ood_default_accuracy(tmp_path):
    hints = []
    ckpt = train_from_data("digits-ood", tmp_path / "ckpt.pt", progress=False, advise=hints.append)
    report = evaluate_on_data(ckpt, progress=False).report
    print(format_table(report))
    _check_common(report, ["fashion", "letters", "textures", "icons", "emoji", "flags"], 99.9)  # measured 100.00
    near = report["ood"]["near"]
    # measured 91.60 (noise seed 0; 91.45-91.83 over 2 training seeds x 3 noise seeds); the spread is 0.4
    assert near["mfsim"]["auroc"] > 90.5
    # DLSR's lead over the anchors on the same features (Mahalanobis 87.23, kNN 82.96): keep at least 3 points
    assert near["mfsim"]["auroc"] > max(near["maha"]["auroc"], near["knn"]["auroc"]) + 3.0
    assert hints == []  # grey images: the defaults are the grey data's best, nothing to say


def test_sprites_ood_default_accuracy_and_the_colour_setting(tmp_path):
    hints = []
    ckpt = train_from_data("sprites-ood", tmp_path / "ckpt.pt", progress=False, advise=hints.append)
    report = evaluate_on_data(ckpt, progress=False).report
    print(format_table(report))
    # far measured 100.00; the threshold flags only 0.5 % of the ID test sprites (measured): test and calibration
    # hold different units (whole units per split), and the test units happen to reconstruct better
    _check_common(report, ["portraits", "terrain", "buildings", "wallpapers"], 99.5, flagged=(0.0, 12.0))
    near = report["ood"]["near"]
    # measured 78.04 (noise seed 0; 78.01-78.13 over 2 training seeds x 3 noise seeds: spread 0.12); above
    # the Mahalanobis anchor (77.24) and well above kNN (73.12)
    assert near["mfsim"]["auroc"] > 77.3
    assert near["mfsim"]["auroc"] > near["knn"]["auroc"] + 3.0
    # colour images: training says which setting measured best for them
    assert len(hints) == 1 and "--input-size 128 --stage-weights id-spread" in hints[0]
    # ... and that setting, on the same trained model: resuming the finished run with other scoring settings
    # only re-calibrates (the stage weights are learned from the ID calibration split)
    other = tmp_path / "id-spread.pt"
    shutil.copy(ckpt.path, other)
    copy = Checkpoint.load(other)
    copy.data["score"]["stage_weights"] = "id-spread"
    copy.save()
    tuned = train_from_data("sprites-ood", other, score_config=ScoreConfig(stage_weights="id-spread"), progress=False)
    assert len(tuned.calibration["stage_weights"]) == 5
    id_near = evaluate_on_data(tuned, ood=["near"], progress=False).report["ood"]["near"]["mfsim"]["auroc"]
    # measured 80.95 (noise seed 0; 80.95-81.52 over 2 training seeds x 3 noise seeds): the 3-point gain over
    # the default that the hint quotes; at least 2 points
    assert id_near > 80.0 and id_near > near["mfsim"]["auroc"] + 2.0
