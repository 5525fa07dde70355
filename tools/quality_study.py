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
from lfdn_edge.reference import ScoreConfig, stage_weights
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
    mu, sd = float(np.mean(cal)), float(np.std(cal))
    return lambda s: (np.asarray(s) - mu) / (sd if sd > 0 else 1.0)


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
    sd = raw["cal"]["stage_cos"].std(axis=0)
    w_invsd = (1.0 / np.maximum(sd, 1e-12)) / np.sum(1.0 / np.maximum(sd, 1e-12))
    out: dict[str, dict] = {}

    def put(key, fn):
        out[key] = {s: fn(r, s) for s, r in raw.items()}

    put("mfsim", lambda r, s: -(r["stage_cos"] @ w_conv))
    put("mse", lambda r, s: r["mse"])
    put("mfsim uniform", lambda r, s: -(r["stage_cos"] @ w_uniform))
    put("mfsim skip stage 1", lambda r, s: -(r["stage_cos"] @ w_skip1))
    put("mfsim ID-calibrated weights", lambda r, s: -(r["stage_cos"] @ w_invsd))
    for m in range(M):
        put(f"stage {m + 1} only", lambda r, s, m=m: -r["stage_cos"][:, m])
    for score in ("mfsim", "mse"):
        for other in ("maha", "knn"):
            za, zb = zfit(out[score]["cal"]), zfit(base_scores[other]["cal"])
            out[f"{score} + {other} (ID z-scored)"] = {s: za(out[score][s]) + zb(base_scores[other][s]) for s in raw}
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
    args = p.parse_args(argv)
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
            "mse + maha (ID z-scored)", "mfsim + knn (ID z-scored)"}
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
