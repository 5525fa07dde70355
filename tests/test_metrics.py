"""Metrics against brute-force definitions, and baselines on simple cases."""

import numpy as np
import pytest

from lfdn_edge.baselines import KNNScorer, MahalanobisScorer
from lfdn_edge.metrics import all_metrics, aupr, auroc, fpr_at_tpr, threshold_at_tpr


def brute_auroc(a, b):
    return 100.0 * np.mean([(y > x) + 0.5 * (y == x) for x in a for y in b])


def brute_ap(a, b):
    s = np.concatenate([a, b])
    y = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    ap = 0.0
    prev_r = 0.0
    for thr in np.unique(s)[::-1]:
        pred = s >= thr
        tp = (pred & (y == 1)).sum()
        p = tp / pred.sum()
        r = tp / len(b)
        ap += (r - prev_r) * p
        prev_r = r
    return 100 * ap


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_aupr_match_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    a = np.round(rng.normal(size=60), 1)
    b = np.round(rng.normal(0.7, 1, size=45), 1)
    assert auroc(a, b) == pytest.approx(brute_auroc(a, b))
    assert aupr(a, b) == pytest.approx(brute_ap(a, b))


def test_fpr95_and_threshold():
    a = np.arange(100, dtype=float)          # ID scores 0..99
    thr = threshold_at_tpr(a, 0.95)
    assert thr == 94.0 and np.mean(a <= thr) == 0.95
    b = np.array([10.0, 50.0, 94.0, 95.0, 200.0])
    assert fpr_at_tpr(a, b) == pytest.approx(60.0)  # 3 of 5 OOD at or below the threshold
    m = all_metrics(a, a + 1000)
    assert m == {"auroc": 100.0, "fpr95": 0.0, "aupr": 100.0}


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        auroc([1.0, np.nan], [1.0])
    with pytest.raises(ValueError, match="tpr"):
        threshold_at_tpr([1.0], 1.5)


def test_knn_and_mahalanobis_on_simple_geometry():
    rng = np.random.default_rng(0)
    # ID lives mostly in the first 4 dimensions, OOD in the last 4: separable by angle and by distance
    scale = np.array([1.0] * 4 + [0.05] * 4)
    train = rng.normal(size=(500, 8)) * scale
    near = rng.normal(size=(50, 8)) * scale
    far = rng.normal(size=(50, 8)) * scale[::-1]
    knn = KNNScorer(train, k=5)
    maha = MahalanobisScorer(train)
    assert auroc(knn.score(near), knn.score(far)) > 95
    assert auroc(maha.score(near), maha.score(far)) > 99
    # Mahalanobis distance of the mean is ~0 and grows quadratically along a direction
    e1 = np.eye(8)[0]
    d1, d2 = maha.score(np.stack([train.mean(0) + e1, train.mean(0) + 2 * e1]))
    assert d2 / d1 == pytest.approx(4.0, rel=1e-6)
    with pytest.raises(ValueError, match="k must be"):
        KNNScorer(train, k=0)
    with pytest.raises(ValueError, match="channels"):
        knn.score(np.zeros((2, 7)))
