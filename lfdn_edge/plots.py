"""PNG plots of an evaluation: score histograms (ID vs each OOD set) and ROC curves, one figure per method."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import ranked_counts


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'lfdn-edge[eval]' (or pass --no-plots)") from exc
    return plt


def roc_curve(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) with OOD positive, thresholds at every distinct score."""
    tp, fp = ranked_counts(id_scores, ood_scores)
    return np.concatenate([[0.0], fp / len(id_scores)]), np.concatenate([[0.0], tp / len(ood_scores)])


def save_plots(evaluation, out_dir: str | Path) -> list[Path]:
    """Write hist_<method>.png and roc_<method>.png under ``out_dir``; returns the paths."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    sets = list(evaluation.ood_scores)
    for method, id_s in evaluation.id_scores.items():
        if method == "stage_cos":
            continue
        cols = min(4, len(sets))
        rows = int(np.ceil(len(sets) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        for ax, name in zip(axes.flat, sets):
            o = evaluation.ood_scores[name][method]
            lo, hi = np.percentile(np.concatenate([id_s, o]), [0.5, 99.5])
            bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 60)
            ax.hist(np.clip(id_s, lo, hi), bins=bins, alpha=0.6, density=True, label="ID test")
            ax.hist(np.clip(o, lo, hi), bins=bins, alpha=0.6, density=True, label=name)
            auroc = evaluation.report["ood"][name][method]["auroc"]
            ax.set_title(f"{name}: AUROC {auroc:.1f}")
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(sets):]:
            ax.axis("off")
        fig.suptitle(f"{method} score (higher = more OOD)")
        fig.tight_layout()
        paths.append(out / f"hist_{method}.png")
        fig.savefig(paths[-1], dpi=80)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(5, 5))
        for name in sets:
            fpr, tpr = roc_curve(id_s, evaluation.ood_scores[name][method])
            ax.plot(fpr, tpr, label=f"{name} ({evaluation.report['ood'][name][method]['auroc']:.1f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("FPR (ID flagged as OOD)")
        ax.set_ylabel("TPR (OOD detected)")
        ax.set_title(f"ROC, {method}")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        paths.append(out / f"roc_{method}.png")
        fig.savefig(paths[-1], dpi=80)
        plt.close(fig)
    return paths
