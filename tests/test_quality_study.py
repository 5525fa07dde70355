"""tools/quality_study.py's ID-only score variants (issue 27: per-stage weights and fusion learned from ID
calibration data only) and its three-benchmark decision rule, on synthetic numbers (no data, no training)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lfdn_edge.metrics import auroc

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def qs():
    spec = importlib.util.spec_from_file_location("quality_study", ROOT / "tools" / "quality_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_id_stage_weights_are_inverse_id_spread(qs):
    rng = np.random.default_rng(0)
    sd = np.array([0.5, 0.1, 0.02, 0.2])
    cal = 0.9 + rng.standard_normal((4000, 4)) * sd
    w = qs.id_stage_weights(cal)
    assert w.sum() == pytest.approx(1.0)
    expect = (1 / sd) / np.sum(1 / sd)
    np.testing.assert_allclose(w, expect, rtol=0.05)
    assert np.argmax(w) == 2 and np.argmin(w) == 0
    # a constant stage does not divide by zero: it gets (almost) all the weight
    cal[:, 1] = 0.5
    w = qs.id_stage_weights(cal)
    assert np.isfinite(w).all() and w[1] > 0.99


def test_id_stage_weights_find_the_informative_stage(qs):
    """A shift of the quiet stage is invisible to uniform MFsim (drowned by the noisy stages) but found with the
    weights learned from ID data only: the point of the variant."""
    rng = np.random.default_rng(1)
    sd = np.array([0.3, 0.3, 0.01])
    cal = 0.8 + rng.standard_normal((2000, 3)) * sd
    test = 0.8 + rng.standard_normal((1000, 3)) * sd
    ood = 0.8 + rng.standard_normal((1000, 3)) * sd
    ood[:, 2] -= 0.05  # 5 ID standard deviations lower cosine in the quiet stage only
    w = qs.id_stage_weights(cal)
    uniform = auroc(-test.mean(axis=1), -ood.mean(axis=1))
    weighted = auroc(-(test @ w), -(ood @ w))
    assert uniform < 60.0 and weighted > 95.0


def test_id_stage_mahalanobis_uses_the_calibration_distribution(qs):
    rng = np.random.default_rng(2)
    cov = np.array([[1.0, 0.9], [0.9, 1.0]]) * 1e-2
    cal = rng.multivariate_normal([0.9, 0.8], cov, size=3000)
    score = qs.id_stage_mahalanobis(cal)
    assert score(cal).mean() == pytest.approx(2.0, rel=0.05)  # chi-square with 2 degrees of freedom
    # against the correlation: far in Mahalanobis terms, close in Euclidean terms
    along, across = np.array([[1.0, 0.9]]), np.array([[0.9 + 0.05, 0.8 - 0.05]])
    assert score(across)[0] > 5 * score(np.array([[0.9 + 0.05, 0.8 + 0.05]]))[0]
    assert score(along).shape == (1,)


def test_zfit_standardises_with_calibration_statistics_only(qs):
    z = qs.zfit(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(z(np.array([2.0, 2.0 + np.sqrt(2 / 3)])), [0.0, 1.0])
    assert qs.zfit(np.array([4.0, 4.0]))(np.array([5.0]))[0] == 1.0  # zero spread: shift only


def _ckpt(path, bench, backbone, size, near, far=99.9, spread=0.1, knn=70.0):
    var = {"near": {"mean": near, "spread": spread}, "far_mean": {"mean": far}, "min_set": {"mean": near},
           "chain_ms_per_item": 0.2}
    return {"checkpoint": path, "data": bench, "feature": {"backbone": backbone, "input_size": size},
            "backbone_ms_per_item": 3.0 if size == 64 else 12.0,
            "baselines": {"knn": {"near": knn, "far_mean": 99.0, "min_set": knn},
                          "maha": {"near": knn - 1, "far_mean": 99.0, "min_set": knn - 1}},
            "variants": {"project t3 k3 | mfsim": var}}


def test_decision_rule(qs):
    """Seeds aggregate per (benchmark, config); a setting meets the rule only if it wins two benchmarks and
    loses none by more than the spread."""
    res = []
    for bench, a, b, c in (("fmnist-ood", 86.0, 85.8, 84.0), ("digits-ood", 91.0, 90.0, 89.5),
                           ("sprites-ood", 78.0, 80.0, 79.0)):
        res.append({"data": bench, "base": _ckpt(f"{bench}-a0", bench, "efficientnet-lite2", 64, a),
                    "train_seeds": {"x": _ckpt(f"{bench}-a1", bench, "efficientnet-lite2", 64, a + 0.4)},
                    "extra": {"B": _ckpt(f"{bench}-b0", bench, "efficientnet-lite0", 64, b),
                              "C": _ckpt(f"{bench}-c0", bench, "efficientnet-lite2", 128, c)}})
    d = qs.decision(res, scores=("project t3 k3 | mfsim", "knn"))
    cell = d["cells"]["fmnist-ood | Lite2-64 | project t3 k3 | mfsim"]
    assert cell["near"] == pytest.approx(86.2) and cell["spread"] == pytest.approx(0.4) and cell["n_train"] == 2
    assert d["best"] == {"fmnist-ood": "Lite2-64 | project t3 k3 | mfsim", "digits-ood": "Lite2-64 | project t3 k3 | mfsim",
                         "sprites-ood": "Lite0-64 | project t3 k3 | mfsim"}
    v = d["verdicts"]
    # Lite2-64 wins two but loses sprites-ood by 1.8 > its spread 0.4: fails
    assert v["Lite2-64 | project t3 k3 | mfsim"]["wins"] == 2
    assert v["Lite2-64 | project t3 k3 | mfsim"]["per_benchmark"]["sprites-ood"]["loses"]
    assert not v["Lite2-64 | project t3 k3 | mfsim"]["meets_rule"]
    assert not v["Lite0-64 | project t3 k3 | mfsim"]["meets_rule"]
    # with sprites-ood within the spread, Lite2-64 meets the rule
    res[2]["base"]["variants"]["project t3 k3 | mfsim"]["near"]["spread"] = 2.5
    d = qs.decision(res, scores=("project t3 k3 | mfsim", "knn"))
    assert d["verdicts"]["Lite2-64 | project t3 k3 | mfsim"]["meets_rule"]
    # far-OOD must be kept
    res[0]["base"]["variants"]["project t3 k3 | mfsim"]["far_mean"]["mean"] = 98.0
    d = qs.decision(res, scores=("project t3 k3 | mfsim", "knn"))
    assert not d["verdicts"]["Lite2-64 | project t3 k3 | mfsim"]["meets_rule"]
    table = qs.decision_table(d)
    assert "| Lite2-64 MFsim | **86.20** (0.40) [2] | **91.20** (0.40) [2] | 78.20 (2.50) [2] |" in table
    assert "| Lite0-64 kNN (baseline) |" in table and "3.00 + 0.20" in table and "12.00 + 0 |" in table


def test_anchors_are_reported_but_not_candidates(qs):
    res = [{"data": b, "base": _ckpt(f"{b}-a0", b, "efficientnet-lite2", 64, 80.0, knn=95.0)} for b in qs.BENCHMARKS]
    d = qs.decision(res, scores=("project t3 k3 | mfsim", "knn"))
    assert set(d["best"].values()) == {"Lite2-64 | project t3 k3 | mfsim"}
    assert d["verdicts"]["Lite2-64 | project t3 k3 | mfsim"]["meets_rule"]
    assert not d["verdicts"]["Lite2-64 | knn"]["meets_rule"]
    assert "| Lite2-64 kNN (baseline) | 95.00 (0.00) [1] |" in qs.decision_table(d)
    assert qs.decision_table(d).splitlines()[3].endswith("| anchor |")
