"""Detection-quality study (issue 16): every scoring variant on the same features and checkpoints, one table.

Variants: the scoring convention (project / authors), the noise level t and number of DDIM steps, the MFsim
stage weighting, fused scores (a DLSR score plus a Mahalanobis or kNN term, each z-scored with statistics of the
held-out ID calibration split only), and, through further checkpoints, the input size and the backbone
(EfficientNet-Lite0/1/2). Each DLSR variant is scored under several noise seeds (the fixed noise vector of the
reconstruction); the table gives the mean over noise seeds and the spread (max - min). Training seeds enter as
separate checkpoints (``--seed-ckpts``), and their spread is reported too.

    python tools/quality_study.py --base runs/study/lite0-64-s0.pt --seed-ckpts runs/study/lite0-64-s1.pt ... \\
        --extra lite0-96=runs/study/lite0-96-s0.pt ... --json benchmarks/results/quality-study.json

Features come from the feature cache (the backbone runs once per image set); checkpoints are split as at
training time (:func:`lfdn_edge.workflow.checkpoint_benchmark`). Scores come from the native CPU FP32 engine
(checked against the PyTorch reference on 256 vectors per chain; the largest difference is in the JSON). Cost
per item: the measured time of that engine (batch 1024) and of the backbone (batch 256) on this machine, per
item: a relative figure (the machine is shared), not a benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lfdn_edge.baselines import KNNScorer, MahalanobisScorer
from lfdn_edge.checkpoint import Checkpoint
from lfdn_edge.feature_cache import cached_features
from lfdn_edge.features import MultiLayerFeatures, extract_features
from lfdn_edge.metrics import auroc
from lfdn_edge.reference import ScoreConfig, id_spread_weights, stage_weights
from lfdn_edge.workflow import checkpoint_benchmark

# (label, convention, t, steps): the chain grid run on the base checkpoint
CHAINS = [("project t3 k3", "project", 3, 3), ("authors t3 k3", "authors", 3, 3),
          ("project t3 k1", "project", 3, 1), ("project t1 k1", "project", 1, 1),
          ("project t5 k3", "project", 5, 3), ("authors t2 k2", "authors", 2, 2),
          ("authors t5 k5", "authors", 5, 5)]
MAIN_CHAINS = ["project t3 k3", "authors t3 k3"]


DATA = None  # --data: the benchmark to study (None: the one each checkpoint was trained on)
N_OOD = None  # --n-ood: images per OOD set, at most (None: defaults.N_OOD)


def load_features(ckpt: Checkpoint):
    spec = DATA or (ckpt.data.get("data") or {}).get("spec") or "fmnist-ood"
    bench = checkpoint_benchmark(ckpt, spec, progress=False, **({} if N_OOD is None else {"n_ood": N_OOD}))
    ex = MultiLayerFeatures(ckpt.feature_config)

    def f(s):
        return cached_features(ex, s.images, progress=False)

    feats = {"train": f(bench.train), "cal": f(bench.cal), "test": f(bench.test),
             "ood": {k: f(v) for k, v in bench.ood.items()}}
    # backbone cost per item (batch 256 of the test images), after the cache is warm
    imgs = bench.test.images[:256]
    t0 = time.perf_counter()
    extract_features(ex, imgs, progress=False)
    feats["backbone_ms"] = 1e3 * (time.perf_counter() - t0) / len(imgs)
    return feats, list(bench.far_ood)


def zfit(cal: np.ndarray):
    """Standardise a score with the mean and standard deviation of the ID calibration split (no OOD data)."""
    mu, sd = float(np.mean(cal)), float(np.std(cal))
    return lambda s: (np.asarray(s) - mu) / (sd if sd > 0 else 1.0)


def id_stage_weights(cal_stage_cos: np.ndarray) -> np.ndarray:
    """Per-stage MFsim weights learned from ID data only (issue 27; ``--stage-weights id-spread`` in training):
    :func:`lfdn_edge.reference.id_spread_weights`, the inverse of each stage's ID calibration spread."""
    return np.asarray(id_spread_weights(cal_stage_cos))


def id_stage_mahalanobis(cal_stage_cos: np.ndarray):
    """The Mahalanobis distance of an item's vector of stage cosines from their ID calibration distribution
    (mean and covariance of the calibration split only, shrunk by 1e-6 of the trace): a per-stage weighting that
    also accounts for the stages' correlation. Returns the scoring function (higher = more OOD)."""
    c = np.asarray(cal_stage_cos, dtype=np.float64)
    mu = c.mean(axis=0)
    cov = np.cov(c, rowvar=False).reshape(c.shape[1], c.shape[1])
    cov += np.eye(len(mu)) * (1e-6 * max(float(np.trace(cov)), 1e-12))
    prec = np.linalg.inv(cov)

    def score(stage_cos: np.ndarray) -> np.ndarray:
        d = np.asarray(stage_cos, dtype=np.float64) - mu
        return np.einsum("ij,jk,ik->i", d, prec, d)
    return score


class NativeScorer:
    """The native CPU FP32 engine for one chain (tests/test_native_engine.py: within 1e-5 of the reference in
    both conventions; checked again here on the first 256 calibration vectors of every chain)."""

    def __init__(self, ckpt: Checkpoint, cfg: ScoreConfig, batch: int = 1024):
        from lfdn_edge import _C
        from lfdn_edge.builder.native_payload import native_spec
        from lfdn_edge.diffusion import Schedule

        spec = native_spec(ckpt.build_model("ema"), Schedule(ckpt.diffusion_config), cfg, ckpt.layout, "fp32")
        self.engine, self.batch = _C.CpuEngine(spec, batch, 0), batch

    def scores(self, z: np.ndarray) -> dict:
        parts = [self.engine.score(np.ascontiguousarray(z[s:s + self.batch], dtype=np.float32))
                 for s in range(0, len(z), self.batch)]
        return {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in ("mse", "mfsim", "stage_cos")}


PARITY: list[float] = []


def score_sets(ckpt: Checkpoint, feats: dict, cfg: ScoreConfig, base_scores: dict) -> tuple[dict, float]:
    """Every score derived from one chain: {score name: {"cal"|"test"|set: array}}, and the chain's ms/item
    (native CPU FP32 engine)."""
    scorer = NativeScorer(ckpt, cfg)
    ref = ckpt.reference_scorer(cfg).scores(feats["cal"][:256])
    sets = {"cal": feats["cal"], "test": feats["test"], **feats["ood"]}
    raw, n, t = {}, 0, 0.0
    for name, z in sets.items():
        t0 = time.perf_counter()
        raw[name] = scorer.scores(z)
        t += time.perf_counter() - t0
        n += len(z)
    PARITY.append(float(np.abs(raw["cal"]["stage_cos"][:256] - ref["stage_cos"]).max()))
    if PARITY[-1] > 1e-4:
        raise RuntimeError(f"native engine and reference disagree by {PARITY[-1]:.2e} under {cfg}")
    M = ckpt.layout.num_stages
    w_conv = np.asarray(stage_weights(cfg, M))
    w_uniform = np.full(M, 1.0 / M)
    w_skip1 = np.asarray((0.0,) + (1.0 / (M - 1),) * (M - 1))
    # ID-calibrated weights: each stage's cosine divided by its ID (calibration split) spread
    w_invsd = id_stage_weights(raw["cal"]["stage_cos"])
    stage_maha = id_stage_mahalanobis(raw["cal"]["stage_cos"])
    out: dict[str, dict] = {}

    def put(key, fn):
        out[key] = {s: fn(r, s) for s, r in raw.items()}

    put("mfsim", lambda r, s: -(r["stage_cos"] @ w_conv))
    put("mse", lambda r, s: r["mse"])
    put("mfsim uniform", lambda r, s: -(r["stage_cos"] @ w_uniform))
    put("mfsim skip stage 1", lambda r, s: -(r["stage_cos"] @ w_skip1))
    put("mfsim ID-calibrated weights", lambda r, s: -(r["stage_cos"] @ w_invsd))
    put("stage cosines, ID Mahalanobis", lambda r, s: stage_maha(r["stage_cos"]))
    for m in range(M):
        put(f"stage {m + 1} only", lambda r, s, m=m: -r["stage_cos"][:, m])
    for score in ("mfsim", "mse"):
        for other in ("maha", "knn"):
            za, zb = zfit(out[score]["cal"]), zfit(base_scores[other]["cal"])
            out[f"{score} + {other} (ID z-scored)"] = {s: za(out[score][s]) + zb(base_scores[other][s]) for s in raw}
    za, zm, zk = zfit(out["mfsim"]["cal"]), zfit(base_scores["maha"]["cal"]), zfit(base_scores["knn"]["cal"])
    out["mfsim + maha + knn (ID z-scored)"] = {s: za(out["mfsim"][s]) + zm(base_scores["maha"][s]) + zk(base_scores["knn"][s])
                                               for s in raw}
    zw = zfit(out["mfsim ID-calibrated weights"]["cal"])
    out["mfsim ID-calibrated weights + maha (ID z-scored)"] = {
        s: zw(out["mfsim ID-calibrated weights"][s]) + zm(base_scores["maha"][s]) for s in raw}
    return out, 1e3 * t / n


def metrics(scores: dict, ood_names: list[str], far: list[str]) -> dict:
    per = {k: auroc(scores["test"], scores[k]) for k in ood_names}
    near = [k for k in ood_names if k not in far]
    return {"per_set": per, "near": float(np.mean([per[k] for k in near])),
            "far_mean": float(np.mean([per[k] for k in far])), "min_set": float(min(per.values()))}


def baselines(feats: dict) -> dict:
    knn, maha = KNNScorer(feats["train"]), MahalanobisScorer(feats["train"])
    sets = {"cal": feats["cal"], "test": feats["test"], **feats["ood"]}
    return {"knn": {s: knn.score(z) for s, z in sets.items()}, "maha": {s: maha.score(z) for s, z in sets.items()}}


def summarise(runs: list[dict]) -> dict:
    """Mean and spread (max - min) over runs of each metric."""
    def agg(vals):
        v = np.asarray(vals, dtype=np.float64)
        return {"mean": float(v.mean()), "spread": float(v.max() - v.min()), "min": float(v.min()),
                "max": float(v.max()), "n": int(v.size)}
    out = {"near": agg([r["near"] for r in runs]), "far_mean": agg([r["far_mean"] for r in runs]),
           "min_set": agg([r["min_set"] for r in runs])}
    out["per_set"] = {k: agg([r["per_set"][k] for r in runs]) for k in runs[0]["per_set"]}
    return out


def study_checkpoint(label: str, path: str, chains: list, noise_seeds: list[int], score_filter=None,
                     partial: Path | None = None) -> dict:
    ckpt = Checkpoint.load(path)
    feats, far = load_features(ckpt)
    ood_names = list(feats["ood"])
    base = baselines(feats)
    res = {"checkpoint": str(path), "data": (DATA or (ckpt.data.get("data") or {}).get("spec")),
           "far_sets": far, "feature": ckpt.data["feature"], "backbone_ms_per_item": feats["backbone_ms"],
           "baselines": {k: metrics(v, ood_names, far) for k, v in base.items()}, "variants": {}}
    for chain_label, conv, t, steps in chains:
        per_score: dict[str, list] = {}
        costs = []
        for seed in noise_seeds:
            cfg = ScoreConfig(t=t, steps=steps, seed=seed, convention=conv)
            scores, ms = score_sets(ckpt, feats, cfg, base)
            costs.append(ms)
            for name, s in scores.items():
                if score_filter is None or name in score_filter:
                    per_score.setdefault(name, []).append(metrics(s, ood_names, far))
        for name, runs in per_score.items():
            res["variants"][f"{chain_label} | {name}"] = {**summarise(runs), "chain_ms_per_item": float(np.median(costs)),
                                                          "runs": runs}
        if partial is not None:
            partial.write_text(json.dumps(res, indent=1) + "\n")
        print(f"[{label}] {chain_label}: mfsim near {res['variants'][chain_label + ' | mfsim']['near']['mean']:.2f}"
              f" far {res['variants'][chain_label + ' | mfsim']['far_mean']['mean']:.2f}"
              f" ({np.median(costs):.3f} ms/item)", flush=True)
    return res


FAR_SETS = ("digits", "letters", "textures", "icons", "emoji", "flags")  # fmnist-ood's; a result file names its own
TABLE_SCORES = ("mfsim", "mse", "mfsim uniform", "mfsim skip stage 1", "mfsim ID-calibrated weights",
                "mfsim + maha (ID z-scored)", "mse + maha (ID z-scored)", "mfsim + knn (ID z-scored)")


def _row(label: str, v: dict, cost: str, far_sets=FAR_SETS) -> str:
    near = v["near"]
    spread = f" ± {near['spread'] / 2:.2f}" if near.get("n", 1) > 1 else ""
    per = v["per_set"]
    cells = [f"{per[k]['mean'] if isinstance(per[k], dict) else per[k]:.2f}" for k in far_sets]
    far = v["far_mean"]["mean"] if isinstance(v["far_mean"], dict) else v["far_mean"]
    return f"| {label} | {near['mean'] if isinstance(near, dict) else near:.2f}{spread} | {far:.2f} | " + \
        " | ".join(cells) + f" | {cost} |"


def _baseline_row(label, m, cost, far_sets=FAR_SETS):
    return _row(label, {"near": {"mean": m["near"], "n": 1}, "far_mean": m["far_mean"], "per_set": m["per_set"]},
                cost, far_sets)


def printable(text: str) -> str:
    """``text`` for this stdout: "±" becomes "+/-" where the terminal's encoding (an ASCII locale) lacks it."""
    try:
        "\u00b1".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return text.replace("\u00b1", "+/-")
    return text


def table(results: list[dict]) -> str:
    """Markdown: one row per variant, near AUROC as mean ± half the max-min spread over noise seeds (training
    seeds in the rows marked so), far-OOD mean and each far set (noise-seed means), cost per item."""
    merged = {"base": None, "train_seeds": {}, "extra": {}}
    for res in results:  # several result files (separate runs) form one study
        merged["base"] = merged["base"] or res.get("base")
        merged["train_seeds"].update(res.get("train_seeds") or {})
        merged["extra"].update(res.get("extra") or {})
    results = [merged]
    first = merged["base"] or next(iter(merged["extra"].values()), None) or {}
    far_sets = tuple(first.get("far_sets") or FAR_SETS)
    base_tag = merged["base"]["label"] if merged["base"] and merged["base"].get("label") else "Lite0-64"
    head = ("| variant | near AUROC | far mean | " + " | ".join(far_sets) + " | cost ms/item (LFDN chain + backbone) |\n"
            "|---|---|---|" + "---|" * len(far_sets) + "---|")
    lines = [head]

    def ckpt_rows(tag, r, scores):
        bb = r["backbone_ms_per_item"]
        for name in ("knn", "maha"):
            lines.append(_baseline_row(f"{tag} {name} (baseline)", r["baselines"][name], f"0 + {bb:.2f}", far_sets))
        for key, v in r["variants"].items():
            chain, _, score = key.partition(" | ")
            if score in scores:
                lines.append(_row(f"{tag} {chain}, {score}", v, f"{v['chain_ms_per_item']:.2f} + {bb:.2f}", far_sets))

    for res in results:
        if res.get("base"):
            ckpt_rows(base_tag, res["base"], TABLE_SCORES)
        seeds = res.get("train_seeds") or {}
        if seeds and res.get("base"):
            for key in res["base"]["variants"]:
                chain, _, score = key.partition(" | ")
                runs = [res["base"]["variants"][key]] + [r["variants"][key] for r in seeds.values() if key in r["variants"]]
                if len(runs) < 2 or score not in ("mfsim", "mse", "mfsim + maha (ID z-scored)", "mse + maha (ID z-scored)"):
                    continue
                agg = {"near": {"mean": float(np.mean([r["near"]["mean"] for r in runs])),
                                "spread": float(np.ptp([r["near"]["mean"] for r in runs])), "n": len(runs)},
                       "far_mean": {"mean": float(np.mean([r["far_mean"]["mean"] for r in runs]))},
                       "per_set": {k: {"mean": float(np.mean([r["per_set"][k]["mean"] for r in runs]))} for k in far_sets}}
                lines.append(_row(f"{base_tag} {chain}, {score}: {len(runs)} training seeds", agg, "as above", far_sets))
            for name in ("knn", "maha"):
                ms = [res["base"]["baselines"][name]] + [r["baselines"][name] for r in seeds.values()]
                agg = {"near": {"mean": float(np.mean([m["near"] for m in ms])), "spread": float(np.ptp([m["near"] for m in ms])),
                                "n": len(ms)}, "far_mean": {"mean": float(np.mean([m["far_mean"] for m in ms]))},
                       "per_set": {k: {"mean": float(np.mean([m["per_set"][k] for m in ms]))} for k in far_sets}}
                lines.append(_row(f"{base_tag} {name} (baseline): {len(ms)} training seeds", agg, "as above", far_sets))
        for label, r in (res.get("extra") or {}).items():
            ckpt_rows(label, r, ("mfsim", "mse", "mfsim + maha (ID z-scored)", "mse + maha (ID z-scored)"))
    return "\n".join(lines)


BENCHMARKS = ("fmnist-ood", "digits-ood", "sprites-ood")
# the candidates of the three-benchmark decision (issue 27): chain | score, and the two baselines
DECISION_SCORES = ("project t3 k3 | mfsim", "project t3 k3 | mse", "authors t3 k3 | mfsim",
                   "project t3 k3 | mfsim ID-calibrated weights", "project t3 k3 | stage cosines, ID Mahalanobis",
                   "project t3 k3 | mfsim + maha (ID z-scored)", "project t3 k3 | mfsim + knn (ID z-scored)",
                   "project t3 k3 | mfsim + maha + knn (ID z-scored)",
                   "project t3 k3 | mfsim ID-calibrated weights + maha (ID z-scored)", "knn", "maha")
# what the engines and `lfdn-edge score` serve (a fused or stage-Mahalanobis score needs the checkpoint)
SERVABLE = ("project t3 k3 | mfsim", "project t3 k3 | mse", "authors t3 k3 | mfsim")


SCORE_NAMES = {"mfsim": "MFsim", "mse": "MSE", "mfsim ID-calibrated weights": "MFsim, ID stage weights",
               "stage cosines, ID Mahalanobis": "stage-cosine Mahalanobis (ID)",
               "mfsim + maha (ID z-scored)": "MFsim + Maha", "mfsim + knn (ID z-scored)": "MFsim + kNN",
               "mfsim + maha + knn (ID z-scored)": "MFsim + Maha + kNN",
               "mfsim ID-calibrated weights + maha (ID z-scored)": "MFsim ID stage weights + Maha",
               "knn": "kNN (baseline)", "maha": "Mahalanobis (baseline)"}


def setting_name(score: str) -> str:
    """A readable name of a decision score: "authors MFsim", "MFsim + Maha" (fused: z-scored on ID cal data)."""
    chain, _, sc = score.partition(" | ")
    if not sc:
        chain, sc = "", chain
    name = SCORE_NAMES.get(sc, sc)
    return f"authors {name}" if chain.startswith("authors") else name


def config_label(feature: dict) -> str:
    """"Lite2-64" for EfficientNet-Lite2 at 64 px (other backbones keep their name)."""
    bb = str(feature.get("backbone", "?")).replace("efficientnet-lite", "Lite")
    return f"{bb}-{feature.get('input_size', '?')}"


def checkpoint_results(results: list[dict]):
    """Every checkpoint's result in ``results`` (base, training seeds, extras) as (benchmark, config, result),
    each checkpoint once (the entry with the most variants where several files hold it)."""
    seen: dict[tuple, dict] = {}
    for res in results:
        parts = ([res["base"]] if res.get("base") else []) + list((res.get("train_seeds") or {}).values()) + \
            list((res.get("extra") or {}).values())
        for r in parts:
            bench = r.get("data") or res.get("data") or "fmnist-ood"
            key = (bench, r["checkpoint"])
            if key not in seen or len(r["variants"]) > len(seen[key]["variants"]):
                seen[key] = r
    return [(b, config_label(r["feature"]), r) for (b, _), r in seen.items()]


def aggregate(runs: list[dict]) -> dict:
    """One setting over training seeds: ``runs`` are the checkpoints' entries ({"near": {"mean", "spread"}, ...}
    for DLSR variants, {"near": float, ...} for baselines, which have no noise seed). Near = mean of the
    checkpoints' means; spread = the larger of the largest noise-seed spread (max - min) and the training-seed
    spread (max - min of the checkpoints' means)."""
    def m(x):
        return x["mean"] if isinstance(x, dict) else float(x)
    nears = [m(r["near"]) for r in runs]
    noise = max((r["near"]["spread"] if isinstance(r["near"], dict) else 0.0) for r in runs)
    return {"near": float(np.mean(nears)), "spread": float(max(noise, np.ptp(nears))), "n_train": len(runs),
            "far": float(np.mean([m(r["far_mean"]) for r in runs])),
            "min_set": float(min(m(r["min_set"]) for r in runs))}


ANCHORS = ("knn", "maha")  # the baselines: reported beside the candidates, not candidates for the default


def decision(results: list[dict], configs=None, scores=DECISION_SCORES, benchmarks=BENCHMARKS) -> dict:
    """The three-benchmark decision (issue 27) over settings = (config, score); the anchors (kNN, Mahalanobis
    on the same features) are reported but are not candidates.

    Rule: a setting may be the default only if on every benchmark it does not lose to the best candidate by more
    than the spread (the larger of the two settings' spreads), it wins (has the best near-OOD AUROC) on at least
    two of the three benchmarks, and it keeps far-OOD (far mean >= 99.5 on every benchmark)."""
    cells: dict[tuple, dict] = {}
    costs: dict[str, list] = {}
    chain_costs: dict[tuple, list] = {}
    by: dict[tuple, list] = {}
    for bench, cfg, r in checkpoint_results(results):
        if configs is not None and cfg not in configs:
            continue
        costs.setdefault(cfg, []).append(r["backbone_ms_per_item"])
        for sc in scores:
            entry = r["baselines"].get(sc) if sc in ("knn", "maha") else r["variants"].get(sc)
            if entry is not None:
                by.setdefault((bench, cfg, sc), []).append(entry)
                if sc not in ("knn", "maha"):
                    chain_costs.setdefault((cfg, sc.partition(" | ")[0]), []).append(entry["chain_ms_per_item"])
    for key, runs in by.items():
        cells[key] = aggregate(runs)
    settings = sorted({(c, s) for (_, c, s) in cells}, key=lambda k: (list(configs or [k[0]]).index(k[0])
                                                                       if configs else 0, k[0], scores.index(k[1])))
    best = {}
    for b in benchmarks:
        here = [(cells[(b, c, s)]["near"], (c, s)) for (c, s) in settings if (b, c, s) in cells and s not in ANCHORS]
        if here:
            best[b] = max(here)[1]
    verdicts = {}
    for c, s in settings:
        per, wins, ok = {}, 0, True
        for b in benchmarks:
            cell = cells.get((b, c, s))
            if cell is None or b not in best:
                ok = False
                per[b] = None
                continue
            top = cells[(b, *best[b])]
            gap = cell["near"] - top["near"]
            tol = max(cell["spread"], top["spread"])
            win = best[b] == (c, s)
            lose = -gap > tol or s in ANCHORS
            wins += win
            ok = ok and not lose and cell["far"] >= 99.5
            per[b] = {"gap_to_best": gap, "tolerance": tol, "win": win, "loses": lose}
        verdicts[f"{c} | {s}"] = {"per_benchmark": per, "wins": wins, "meets_rule": ok and wins >= 2}
    return {"cells": {" | ".join(k): v for k, v in cells.items()}, "settings": [f"{c} | {s}" for c, s in settings],
            "best": {b: " | ".join(v) for b, v in best.items()}, "verdicts": verdicts,
            "backbone_ms_per_item": {c: float(np.median(v)) for c, v in costs.items()},
            "chain_ms_per_item": {" | ".join(k): float(np.median(v)) for k, v in chain_costs.items()}}


def decision_table(d: dict, benchmarks=BENCHMARKS) -> str:
    """Markdown: one row per setting; per benchmark near AUROC mean (spread) [training seeds], far mean; cost."""
    head = ("| setting | " + " | ".join(f"{b} near" for b in benchmarks) + " | near mean | far mean ("
            + " / ".join(b.split("-")[0] for b in benchmarks) + ") | cost ms/item (backbone + chain) | rule |\n"
            "|---|" + "---|" * len(benchmarks) + "---|---|---|---|")
    lines = [head]
    for name in d["settings"]:
        cfg, _, score = name.partition(" | ")
        row, nears, fars = [], [], []
        for b in benchmarks:
            c = d["cells"].get(f"{b} | {name}")
            if c is None:
                row.append("-")
                fars.append("-")
                continue
            bold = "**" if d["best"].get(b) == name else ""
            row.append(f"{bold}{c['near']:.2f}{bold} ({c['spread']:.2f}) [{c['n_train']}]")
            nears.append(c["near"])
            fars.append(f"{c['far']:.2f}")
        chain = score.partition(" | ")[0]
        cms = d["chain_ms_per_item"].get(f"{cfg} | {chain}")
        cost = f"{d['backbone_ms_per_item'].get(cfg, float('nan')):.2f}" + (f" + {cms:.2f}" if cms is not None else " + 0")
        v = d["verdicts"][name]
        losses = "; ".join(f"{b.split('-')[0]} {p['gap_to_best']:+.2f}" for b, p in v["per_benchmark"].items()
                           if p is not None and p["loses"])
        if score in ANCHORS:
            rule = "anchor"
        elif v["meets_rule"]:
            rule = f"meets, wins {v['wins']}"
        else:
            rule = f"{'loses ' + losses if losses else 'no loss'}, wins {v['wins']}"
        mean = f"{np.mean(nears):.2f}" if len(nears) == len(benchmarks) else "-"
        lines.append(f"| {cfg} {setting_name(score)} | " + " | ".join(row) + f" | {mean} | {' / '.join(fars)} | {cost} | {rule} |")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def backbone_cost(configs: list[str], n: int = 256, repeats: int = 3, batch: int = 64) -> dict:
    """Backbone time per image (ms) of each config ("Lite2-64": EfficientNet-Lite2 at 64 px), the best of
    ``repeats`` passes over ``n`` images of that size in batches of ``batch``, with torch's current thread
    count; one warm-up pass first. Images are seeded random pixels (the cost does not depend on content)."""
    from lfdn_edge.features import FeatureConfig

    imgs_by_size: dict[int, np.ndarray] = {}
    out = {}
    for cfg in configs:
        name, _, size = cfg.rpartition("-")
        backbone = name.replace("Lite", "efficientnet-lite") if name.startswith("Lite") else name
        size = int(size)
        if size not in imgs_by_size:
            imgs_by_size[size] = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        ex = MultiLayerFeatures(FeatureConfig(backbone=backbone, input_size=size))
        extract_features(ex, imgs_by_size[size][:batch], batch_size=batch, progress=False)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            extract_features(ex, imgs_by_size[size], batch_size=batch, progress=False)
            times.append(1e3 * (time.perf_counter() - t0) / n)
        out[cfg] = {"ms_per_image": min(times), "all": times, "threads": torch.get_num_threads(), "batch": batch}
        print(f"{cfg}: {min(times):.2f} ms/image (best of {repeats}: {', '.join(f'{t:.2f}' for t in times)})",
              flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", help="the base checkpoint (every chain variant runs on it)")
    p.add_argument("--seed-ckpts", nargs="*", default=[], help="the base configuration trained with other seeds")
    p.add_argument("--extra", nargs="*", default=[], help="LABEL=CKPT: other backbones / input sizes")
    p.add_argument("--data", default=None,
                   help="the benchmark to study (fmnist-ood, digits-ood, ...; default: each checkpoint's own)")
    p.add_argument("--n-ood", type=int, default=None, help="images per OOD set, at most (default: as evaluate)")
    p.add_argument("--label", default="Lite0-64", help="row label of the base checkpoint (default: %(default)s)")
    p.add_argument("--chains", default=None,
                   help="comma-separated chain labels to run on the base checkpoint (default: all of CHAINS)")
    p.add_argument("--noise-seeds", default="0,1,2,3,4")
    p.add_argument("--json", required=True, help="where the results go (with --table: the results to tabulate)")
    p.add_argument("--table", nargs="*", help="only print the markdown table of these result files (and --json)")
    p.add_argument("--decide", nargs="*", metavar="RESULTS",
                   help="only the three-benchmark decision (issue 27) over these result files: table to stdout, "
                        "the decision to --json")
    p.add_argument("--configs", default=None, help="with --decide: comma-separated configs (e.g. Lite2-64,Lite0-64)")
    p.add_argument("--backbone-cost", default=None, metavar="CONFIGS",
                   help="only time the backbones: comma-separated configs (Lite0-64,Lite2-128,...), result to --json")
    args = p.parse_args(argv)
    if args.backbone_cost:
        res = {"backbone_cost": backbone_cost(args.backbone_cost.split(",")), "cpu": _cpu_name()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
        return 0
    if args.decide is not None:
        d = decision([json.loads(Path(f).read_text(encoding="utf-8")) for f in args.decide],
                     configs=args.configs.split(",") if args.configs else None)
        d["files"] = list(args.decide)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(d, indent=1) + "\n", encoding="utf-8")
        print(printable(decision_table(d)))
        return 0
    if args.table is not None:
        files = [args.json, *args.table]
        print(printable(table([json.loads(Path(f).read_text(encoding="utf-8")) for f in files])))
        return 0
    global DATA, N_OOD
    DATA, N_OOD = args.data, args.n_ood
    seeds = [int(s) for s in args.noise_seeds.split(",")]
    base_chains = CHAINS
    if args.chains:
        wanted = [c.strip() for c in args.chains.split(",")]
        unknown = [c for c in wanted if c not in {ch[0] for ch in CHAINS}]
        if unknown:
            p.error(f"unknown chain(s) {unknown}; choose from {[ch[0] for ch in CHAINS]}")
        base_chains = [c for c in CHAINS if c[0] in wanted]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    part = Path(args.json).with_suffix(".partial.json")
    out = {"noise_seeds": seeds, "data": args.data,
           "base": study_checkpoint("base", args.base, base_chains, seeds, partial=part) if args.base else None,
           "train_seeds": {}, "extra": {}}
    if out["base"] is not None:
        out["base"]["label"] = args.label
    main_chains = [c for c in CHAINS if c[0] in MAIN_CHAINS]
    keep = {"mfsim", "mse", "mfsim skip stage 1", "mfsim uniform", "mfsim + maha (ID z-scored)",
            "mse + maha (ID z-scored)", "mfsim + knn (ID z-scored)", "mse + knn (ID z-scored)",
            "mfsim ID-calibrated weights", "stage cosines, ID Mahalanobis", "mfsim + maha + knn (ID z-scored)",
            "mfsim ID-calibrated weights + maha (ID z-scored)"}
    for path in args.seed_ckpts:
        out["train_seeds"][path] = study_checkpoint(Path(path).stem, path, main_chains, seeds, keep, part)
    for item in args.extra:
        label, _, path = item.partition("=")
        out["extra"][label] = study_checkpoint(label, path, main_chains, seeds, keep, part)
    out["seconds"] = time.time() - t0
    out["native_vs_reference_stage_cos_max_abs_diff"] = max(PARITY) if PARITY else None
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    part.unlink(missing_ok=True)  # the partial results were only a safeguard against an interrupted run
    print(f"wrote {args.json} in {out['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
