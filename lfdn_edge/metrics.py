"""OOD detection metrics with OOD as the positive class and higher score = more OOD.

AUROC (ties count one half), FPR at 95% TPR, AUPR (average precision, OOD positive), all in percent.
"""

from __future__ import annotations

import numpy as np


def _check(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(id_scores, dtype=np.float64).reshape(-1)
    b = np.asarray(ood_scores, dtype=np.float64).reshape(-1)
    if a.size == 0 or b.size == 0:
        raise ValueError("metrics need at least one ID and one OOD score")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores contain NaN or Inf")
    return a, b


def auroc(id_scores, ood_scores) -> float:
    """P(score(OOD) > score(ID)) + 0.5 P(equal), via average ranks (Mann-Whitney U), in percent."""
    a, b = _check(id_scores, ood_scores)
    allv = np.concatenate([a, b])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size, dtype=np.float64)
    sorted_v = allv[order]
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(sorted_v)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [allv.size]])
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = 0.5 * (s + e - 1) + 1.0
    u = ranks[a.size:].sum() - b.size * (b.size + 1) / 2.0
    return 100.0 * u / (a.size * b.size)


def threshold_at_tpr(id_scores, tpr: float = 0.95) -> float:
    """Smallest threshold with at least ``tpr`` of the ID scores <= threshold (ID accepted at rate tpr)."""
    a = np.sort(np.asarray(id_scores, dtype=np.float64).reshape(-1))
    if a.size == 0:
        raise ValueError("threshold calibration needs at least one ID score")
    if not np.isfinite(a).all():
        raise ValueError("calibration scores contain NaN or Inf")
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    k = int(np.ceil(tpr * a.size)) - 1
    return float(a[min(max(k, 0), a.size - 1)])


def fpr_at_tpr(id_scores, ood_scores, tpr: float = 0.95) -> float:
    """Percent of OOD items accepted as ID (score <= thr) when the threshold keeps ``tpr`` of ID data.

    Standard OOD convention: 'TPR' is the ID acceptance rate, so FPR95 = OOD acceptance at 95% ID acceptance.
    """
    a, b = _check(id_scores, ood_scores)
    thr = threshold_at_tpr(a, tpr)
    return 100.0 * float(np.mean(b <= thr))


def ranked_counts(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    """(tp, fp): OOD and ID items with score >= each distinct score, from the highest down (ties grouped)."""
    a, b = _check(id_scores, ood_scores)
    scores = np.concatenate([a, b])
    labels = np.concatenate([np.zeros(a.size), np.ones(b.size)])
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    idx = np.concatenate([np.flatnonzero(np.diff(s)), [s.size - 1]])
    tp = np.cumsum(y)[idx]
    return tp, (idx + 1) - tp


def aupr(id_scores, ood_scores) -> float:
    """Average precision with OOD as positive, in percent (step-wise, ties grouped)."""
    tp, fp = ranked_counts(id_scores, ood_scores)
    precision = tp / (tp + fp)
    recall = tp / tp[-1]  # the last (lowest) threshold counts every OOD item
    prev_recall = np.concatenate([[0.0], recall[:-1]])
    return 100.0 * float(np.sum((recall - prev_recall) * precision))


def all_metrics(id_scores, ood_scores) -> dict[str, float]:
    return {"auroc": auroc(id_scores, ood_scores), "fpr95": fpr_at_tpr(id_scores, ood_scores, 0.95),
            "aupr": aupr(id_scores, ood_scores)}
