#!/usr/bin/env python3
"""Detection AUROC of the native CPU engine per precision against the PyTorch FP32 reference.

    python tools/precision_auroc.py [--ckpt runs/demo/ckpt.pt] [--precisions fp32,fp16,bf16]
                                    [--json benchmarks/results/precision-auroc-<date>.json]

For the checkpoint's benchmark (the Quick-start one: fmnist-ood, all OOD sets) the ID test split and every OOD
set are read through the feature cache (the checkpoint's backbone, as `lfdn-edge bench --parity-data` does),
scored by the FP32 reference (lfdn_edge.reference, PyTorch) and by one native CPU engine per precision, and the
AUROC (percent) of mfsim and mse is reported per OOD set. A precision passes when every |AUROC - reference|
is within --limit points (default 0.1). A precision the CPU cannot run (bf16 without AVX512_BF16) is reported
as refused, with the engine's reason; it is never replaced by another arithmetic.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np

from lfdn_edge import defaults
from lfdn_edge.checkpoint import Checkpoint
from lfdn_edge.metrics import auroc

METRICS = ("mfsim", "mse")


def load_sets(ckpt: Checkpoint, cache_dir, progress: bool) -> dict[str, np.ndarray]:
    from lfdn_edge.data import load_benchmark
    from lfdn_edge.feature_cache import cached_features
    from lfdn_edge.features import MultiLayerFeatures
    from lfdn_edge.workflow import recorded_split

    info = ckpt.data.get("data") or {}
    n_train, n_cal, n_test = recorded_split(info)
    bench = load_benchmark(info.get("spec", "fmnist-ood"), size=ckpt.feature_config.input_size,
                           n_train=n_train, n_cal=n_cal, n_test=n_test,
                           seed=int(info.get("seed", defaults.DATA_SEED)), progress=progress)
    extractor = MultiLayerFeatures(ckpt.feature_config)
    sets = {"id_test": bench.test, **bench.ood}
    return {name: np.ascontiguousarray(cached_features(extractor, s.images, cache_dir, desc=f"features: {name}",
                                                       progress=progress), dtype=np.float32)
            for name, s in sets.items()}


def native_scores(ckpt: Checkpoint, precision: str, feats: dict, batch: int) -> dict:
    from lfdn_edge import _C
    from lfdn_edge.builder.native_payload import spec_from_checkpoint

    eng = _C.CpuEngine(spec_from_checkpoint(ckpt, precision), batch, 0)
    out = {}
    for name, x in feats.items():
        parts = [eng.score(x[i:i + batch]) for i in range(0, len(x), batch)]
        out[name] = {m: np.concatenate([p[m] for p in parts]).astype(np.float64) for m in METRICS}
    return out


def table(scores: dict) -> dict:
    """{ood set: {metric: AUROC}} from {set: {metric: scores}} (ID = id_test)."""
    idp = scores["id_test"]
    return {name: {m: float(auroc(idp[m], s[m])) for m in METRICS} for name, s in scores.items() if name != "id_test"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default="runs/demo/ckpt.pt")
    p.add_argument("--precisions", default="fp32,fp16,bf16")
    p.add_argument("--limit", type=float, default=0.1, help="allowed |AUROC difference| in points (default 0.1)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--cache-dir", default=None, help="feature cache (default: the lfdn-edge cache)")
    p.add_argument("--json", default=None, help="default: benchmarks/results/precision-auroc-<date>.json")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    precisions = [s.strip() for s in args.precisions.split(",") if s.strip()]

    ckpt = Checkpoint.load(args.ckpt)
    feats = load_sets(ckpt, args.cache_dir, not args.quiet)
    ref_scorer = ckpt.reference_scorer()
    ref = {name: {m: v[m] for m in METRICS} for name, v in
           ((n, ref_scorer.scores(x)) for n, x in feats.items())}
    ref_tab = table(ref)
    from lfdn_edge import _C

    results, refused, score_err = {}, {}, {}
    for prec in precisions:
        try:
            sc = native_scores(ckpt, prec, feats, args.batch)
        except RuntimeError as exc:
            refused[prec] = str(exc)
            continue
        results[prec] = table(sc)
        # per-item score error on all vectors: mfsim absolute, mse relative
        score_err[prec] = {
            "mfsim_max_abs": float(max(np.abs(sc[n]["mfsim"] - ref[n]["mfsim"]).max() for n in feats)),
            "mse_max_rel": float(max((np.abs(sc[n]["mse"] - ref[n]["mse"]) / np.abs(ref[n]["mse"])).max()
                                     for n in feats))}

    sets = list(ref_tab)
    head = f"{'OOD set':<14}" + "".join(f"{'ref ' + m:>11}" for m in METRICS) + "".join(
        f"{prec + ' d' + m:>13}" for prec in results for m in METRICS)
    print(head)
    worst = {prec: 0.0 for prec in results}
    for name in sets:
        row = f"{name:<14}" + "".join(f"{ref_tab[name][m]:>11.3f}" for m in METRICS)
        for prec, tab in results.items():
            for m in METRICS:
                d = tab[name][m] - ref_tab[name][m]
                worst[prec] = max(worst[prec], float(abs(d)))
                row += f"{d:>+13.4f}"
        print(row)
    ok = True
    for prec in results:
        passed = worst[prec] <= args.limit
        ok &= passed
        print(f"{prec}: max |AUROC - FP32 reference| = {worst[prec]:.4f} points over {len(sets)} OOD sets x "
              f"{len(METRICS)} scores: {'within' if passed else 'OUTSIDE'} {args.limit}; per item: mfsim abs. "
              f"{score_err[prec]['mfsim_max_abs']:.2e}, mse rel. {score_err[prec]['mse_max_rel']:.2e}")
    for prec, why in refused.items():
        print(f"{prec}: refused by the engine: {why}")

    date = datetime.date.today().isoformat()
    out = Path(args.json or f"benchmarks/results/precision-auroc-{date}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    info = _C.build_info()
    report = {
        "date": date, "ckpt": str(args.ckpt), "benchmark": (ckpt.data.get("data") or {}).get("spec"),
        "n": {name: int(len(x)) for name, x in feats.items()}, "metrics": list(METRICS), "limit_points": args.limit,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_kernels_active": info["cpu_kernels_active"],
                    "cpu_has_avx512_bf16": info.get("cpu_has_avx512_bf16")},
        "reference_fp32_auroc": ref_tab,
        "native_auroc": results,
        "native_minus_reference": {prec: {n: {m: tab[n][m] - ref_tab[n][m] for m in METRICS} for n in sets}
                                   for prec, tab in results.items()},
        "max_abs_diff_points": worst, "per_item_score_error": score_err, "within_limit": {prec: bool(worst[prec] <= args.limit) for prec in results},
        "refused": refused,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if ok and not refused else 1


if __name__ == "__main__":
    sys.exit(main())
