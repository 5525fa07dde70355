"""Evaluation of a checkpoint on a benchmark: DLSR scores and the kNN / Mahalanobis baselines on the same
features, metrics per OOD set, far-OOD means, and the calibrated threshold's behaviour on ID test data.

Report format (JSON): {"ood": {SET: {SCORE: {"auroc": %, "fpr95": %, "aupr": %}}},
"far_ood_mean": {SCORE: {...}}, "near_ood": [...], "far_ood": [...], "id_test": {...}, "config": {...}}.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import defaults
from .baselines import KNNScorer, MahalanobisScorer
from .checkpoint import Checkpoint
from .metrics import all_metrics

METHODS = ("mfsim", "mse", "lr", "knn", "maha")
METRICS = ("auroc", "fpr95", "aupr")


@dataclass
class Evaluation:
    report: dict
    id_scores: dict[str, np.ndarray] = field(repr=False)
    ood_scores: dict[str, dict[str, np.ndarray]] = field(repr=False)


def score_all(scorer, feats: np.ndarray, knn: KNNScorer, maha: MahalanobisScorer) -> dict[str, np.ndarray]:
    """Every method's per-item score: DLSR's (mfsim, mse, lr) from ``scorer``, then kNN and Mahalanobis."""
    s = scorer.scores(feats)
    out = {k: v for k, v in s.items() if k in METHODS}
    out["knn"] = knn.score(feats)
    out["maha"] = maha.score(feats)
    return out


def evaluate_features(ckpt: Checkpoint, train_feats: np.ndarray, id_feats: np.ndarray,
                      ood_feats: dict[str, np.ndarray], far_ood: tuple[str, ...] = (), knn_k: int = defaults.KNN_K) -> Evaluation:
    """Metrics for every method and OOD set, given features already extracted with the checkpoint's backbone."""
    if not ood_feats:
        raise ValueError("evaluation needs at least one OOD set")
    knn = KNNScorer(train_feats, k=min(knn_k, len(train_feats)))
    maha = MahalanobisScorer(train_feats)
    scorer = ckpt.reference_scorer()
    id_scores = score_all(scorer, id_feats, knn, maha)
    methods = [m for m in METHODS if m in id_scores]
    ood_scores, table = {}, {}
    for name, f in ood_feats.items():
        ood_scores[name] = score_all(scorer, f, knn, maha)
        table[name] = {m: all_metrics(id_scores[m], ood_scores[name][m]) for m in methods}
    far = [n for n in far_ood if n in table]
    near = [n for n in table if n not in far]
    report = {"ood": table, "far_ood": far, "near_ood": near,
              "far_ood_mean": _mean_over(table, far, methods) if far else {},
              "ood_mean": _mean_over(table, list(table), methods),
              "experimental_methods": [m for m in methods if m == "lr"],
              "id_test": {"n": int(len(id_feats))}, "ood_sizes": {k: int(len(v)) for k, v in ood_feats.items()}}
    cal = ckpt.calibration
    if cal:
        report["id_test"]["flagged_at_threshold_pct"] = {
            m: 100.0 * float(np.mean(id_scores[m] > cal["thresholds"][m])) for m in cal["thresholds"]}
        report["ood_flagged_at_threshold_pct"] = {
            name: {m: 100.0 * float(np.mean(ood_scores[name][m] > cal["thresholds"][m])) for m in cal["thresholds"]}
            for name in ood_scores}
        report["calibration"] = cal
    return Evaluation(report, id_scores, ood_scores)


def _mean_over(table: dict, names: list[str], methods: list[str]) -> dict:
    return {m: {k: float(np.mean([table[n][m][k] for n in names])) for k in METRICS} for m in methods}


def format_table(report: dict) -> str:
    """Plain-text table: one row per OOD set, AUROC / FPR95 (%) per method, then the far-OOD mean (only over
    sets known to be far-OOD) and, where other sets are present, the mean over all OOD sets."""
    methods = [m for m in METHODS if any(m in row for row in report["ood"].values())]
    head = f"{'OOD set':<14}" + "".join(f"{m + ' AUROC/FPR95':>22}" for m in methods)
    lines = [head, "-" * len(head)]

    def row(name, cells):
        return f"{name:<14}" + "".join(f"{cells[m]['auroc']:>12.2f} /{cells[m]['fpr95']:>7.2f}  " for m in methods)

    for name, cells in report["ood"].items():
        tag = " (near)" if name in report.get("near_ood", []) else ""
        lines.append(row(name + tag, cells))
    if report.get("far_ood_mean"):
        lines.append("-" * len(head))
        lines.append(row("far-OOD mean", report["far_ood_mean"]))
    if report.get("ood_mean") and set(report.get("far_ood", [])) != set(report["ood"]) and len(report["ood"]) > 1:
        # the sets are not all known to be far-OOD (a user's folders): their mean is not a far-OOD mean
        lines.append(row("mean, all OOD", report["ood_mean"]))
    if "lr" in methods:
        lines.append("lr is experimental: its direction depends on the data (see lfdn_edge.reference.lr_score)")
    return "\n".join(lines)
