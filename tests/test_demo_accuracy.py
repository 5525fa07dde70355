"""The Quick-start configuration on the real fmnist-ood benchmark meets the accuracy the project promises.

This is the README's main job at its default sizes (about 4 minutes on 2 cores): EfficientNet-Lite2 features at
64 px (the default backbone since 2026-12-02), 6000 ID training images, LFDN width 512 / depth 6, 30 epochs.
Thresholds (issue "Core"): MFsim far-OOD mean AUROC >= 95 and not below the better of kNN and Mahalanobis minus 1
point; (issue 16) far-OOD mean >= 99.5, near-OOD MFsim above what the earlier Lite0 default reached, and no score
worse than chance on any OOD set.
"""

from __future__ import annotations

import json

import pytest

from lfdn_edge.evaluate import format_table
from lfdn_edge.workflow import evaluate_on_data, train_from_data

pytestmark = pytest.mark.data


def test_quick_start_configuration_accuracy(tmp_path):
    ckpt = train_from_data("fmnist-ood", tmp_path / "ckpt.pt", progress=False)
    ev = evaluate_on_data(ckpt, progress=False)
    report = ev.report
    print(format_table(report))
    print(json.dumps(report["far_ood_mean"], indent=1))
    far = report["far_ood_mean"]
    assert report["far_ood"] == ["digits", "letters", "textures", "icons", "emoji", "flags"]
    assert far["mfsim"]["auroc"] >= 95.0
    assert far["mfsim"]["auroc"] >= max(far["knn"]["auroc"], far["maha"]["auroc"]) - 1.0
    assert far["mse"]["auroc"] >= 95.0
    # LR's sign was fixed on this configuration (lfdn_edge.reference.lr_score): higher must mean more OOD here
    assert far["lr"]["auroc"] > 80.0
    # issue 16: the default keeps far-OOD (measured 99.78) and no score is worse than chance on any OOD set
    assert far["mfsim"]["auroc"] >= 99.5
    for name, per_score in report["ood"].items():
        for score, m in per_score.items():
            assert m["auroc"] > 50.0, (name, score, m)
    # near-OOD (Fashion-MNIST classes 6-9): the Lite2 default measured 86.81 (86.72 +- 0.19 over training seeds
    # and noise seeds); the Lite0 default before it 84.04. Above 85.5 means the backbone's gain is there.
    assert report["ood"]["near"]["mfsim"]["auroc"] > 85.5
    # the calibrated threshold keeps about 95% of unseen ID test images
    assert 2.0 <= report["id_test"]["flagged_at_threshold_pct"]["mfsim"] <= 9.0
