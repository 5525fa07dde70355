#!/usr/bin/env python3
"""Detection AUROC of the native CPU engine per precision, and of the onnxruntime INT8 engines, against the
PyTorch FP32 reference.

    python tools/precision_auroc.py [--ckpt runs/demo/ckpt.pt] [--precisions fp32,fp16,bf16,int8]
                                    [--rows onnxruntime-int8-dynamic,onnx-int8-qdq]
                                    [--json benchmarks/results/precision-auroc-<date>.json]

For the checkpoint's benchmark (the Quick-start one: fmnist-ood, all OOD sets) the ID test split and every OOD
set are read through the feature cache (the checkpoint's backbone, as `lfdn-edge bench --parity-data` does),
scored by the FP32 reference (lfdn_edge.reference, PyTorch) and by one native CPU engine per precision, and the
AUROC (percent) of mfsim and mse is reported per OOD set. A precision passes when every |AUROC - reference|
is within --limit points (default 0.1). A precision the CPU cannot run (bf16 without AVX512_BF16) is reported
as refused, with the engine's reason; it is never replaced by another arithmetic. A precision the native core of
this checkout does not have yet (int8 while it is being written) is reported as "not available: <reason>".

--rows adds onnxruntime engines (run on the CPU by lfdn_edge's onnxruntime backend, onnxruntime's default threads):
    onnxruntime-fp32           the FP32 ONNX graph (a check of the table: its differences should be ~0)
    onnxruntime-int8-dynamic   onnxruntime.quantization.quantize_dynamic (QInt8 per channel) of the FP32 graph, the
                               INT8 peer a CPU user reaches for (lfdn_edge.benchmark.ort_int8_dynamic_artifact)
    onnx-int8-qdq              the Q/DQ graph of build_artifact(ckpt, "onnx", "int8"): lfdn-edge's INT8 weights
                               (builder/quantize.py), static per-tensor activation scales calibrated by default
                               (vectors drawn from the checkpoint alone, max |a|) -- what TensorRT builds
    onnx-int8-qdq-pct          the same with 99.99th-percentile activation scales
    onnx-int8-qdq-idcal        the Q/DQ graph calibrated on the checkpoint's ID calibration split (real features,
                               through the feature cache), max |a|
    onnx-int8-qdq-idcal-pct    ... with 99.99th-percentile scales
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
ORT_ROWS = ("onnxruntime-fp32", "onnxruntime-int8-dynamic", "onnx-int8-qdq", "onnx-int8-qdq-pct", "onnx-int8-qdq-idcal",
            "onnx-int8-qdq-idcal-pct")


def load_sets(ckpt: Checkpoint, cache_dir, progress: bool, with_cal: bool = False) -> dict[str, np.ndarray]:
    """Features of the ID test split and every OOD set (and, ``with_cal``, of the ID calibration split as
    "id_cal")."""
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
    if with_cal:
        sets["id_cal"] = bench.cal
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


def ort_artifact(ckpt: Checkpoint, row: str, batch: int, cal_feats: np.ndarray | None):
    """The in-memory onnx engine of one --rows entry."""
    from lfdn_edge.artifact.file import EngineArtifact
    from lfdn_edge.artifact.header import engine_header, int8_entry
    from lfdn_edge.builder.dispatch import build_artifact
    from lfdn_edge.builder.onnx_export import onnx_int8_qdq

    rng = (1, batch, batch)
    if row == "onnxruntime-fp32":
        return build_artifact(ckpt, "onnx", "fp32", rng)
    if row == "onnxruntime-int8-dynamic":
        from lfdn_edge.benchmark import ort_int8_dynamic_artifact

        return ort_int8_dynamic_artifact(ckpt, rng)
    if row == "onnx-int8-qdq":
        return build_artifact(ckpt, "onnx", "int8", rng)
    method = "percentile" if row.endswith("-pct") else "max"
    if "-idcal" in row:
        n = len(cal_feats)
        data, info = onnx_int8_qdq(ckpt, cal_feats, method=method,
                                   calibration_source=f"the checkpoint's ID calibration split ({n} feature vectors)")
    else:
        data, info = onnx_int8_qdq(ckpt, None, method=method)
    header = engine_header(ckpt, "onnx", "int8", rng, False)
    header["int8"] = int8_entry(info)
    return EngineArtifact(header, data, None)


def ort_scores(art, feats: dict, batch: int) -> dict:
    from lfdn_edge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(art, "cpu")
    out = {}
    for name, x in feats.items():
        parts = [backend.run(x[i:i + batch]) for i in range(0, len(x), batch)]
        out[name] = {m: np.concatenate([np.asarray(getattr(p, m)) for p in parts]).astype(np.float64)
                     for m in METRICS}
    return out


def table(scores: dict) -> dict:
    """{ood set: {metric: AUROC}} from {set: {metric: scores}} (ID = id_test)."""
    idp = scores["id_test"]
    return {name: {m: float(auroc(idp[m], s[m])) for m in METRICS} for name, s in scores.items() if name != "id_test"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default="runs/demo/ckpt.pt")
    p.add_argument("--precisions", default="fp32,fp16,bf16,int8", help="native CPU engine precisions ('' for none)")
    p.add_argument("--rows", default="onnxruntime-int8-dynamic,onnx-int8-qdq",
                   help=f"onnxruntime rows, comma-separated, among {','.join(ORT_ROWS)} ('' for none)")
    p.add_argument("--limit", type=float, default=0.1, help="allowed |AUROC difference| in points (default 0.1)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--cache-dir", default=None, help="feature cache (default: the lfdn-edge cache)")
    p.add_argument("--json", default=None, help="default: benchmarks/results/precision-auroc-<date>.json")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    precisions = [s.strip() for s in args.precisions.split(",") if s.strip()]
    rows = [s.strip() for s in args.rows.split(",") if s.strip()]
    unknown = [r for r in rows if r not in ORT_ROWS]
    if unknown:
        p.error(f"--rows: unknown {unknown}; choose among {list(ORT_ROWS)}")

    ckpt = Checkpoint.load(args.ckpt)
    feats = load_sets(ckpt, args.cache_dir, not args.quiet, with_cal=any("-idcal" in r for r in rows))
    cal_feats = feats.pop("id_cal", None)
    ref_scorer = ckpt.reference_scorer()
    ref = {name: {m: v[m] for m in METRICS} for name, v in
           ((n, ref_scorer.scores(x)) for n, x in feats.items())}
    ref_tab = table(ref)
    try:
        from lfdn_edge import _C
    except ImportError as exc:  # the onnxruntime rows do not need the native core
        _C = None
        core_error = f"the native core is not built ({exc})"

    results, refused, not_available, score_err, engines = {}, {}, {}, {}, {}
    for prec in precisions:
        if _C is None:
            not_available[prec] = core_error
            continue
        try:
            sc = native_scores(ckpt, prec, feats, args.batch)
        except RuntimeError as exc:
            if prec == "int8" and "int8" not in str(exc).lower():  # not the engine refusing INT8: not built yet
                not_available[prec] = f"{type(exc).__name__}: {exc}"
            else:
                refused[prec] = str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a precision this checkout's native core does not have yet
            not_available[prec] = f"{type(exc).__name__}: {exc}"
            continue
        results[prec] = sc
    for row in rows:
        try:
            art = ort_artifact(ckpt, row, args.batch, cal_feats)
            results[row] = ort_scores(art, feats, args.batch)
        except ImportError as exc:
            not_available[row] = f"{type(exc).__name__}: {exc}"
            continue
        engines[row] = {k: art.header[k] for k in ("precision", "int8") if k in art.header}
    for name, sc in list(results.items()):
        # per-item score error on all vectors: mfsim absolute, mse relative
        score_err[name] = {
            "mfsim_max_abs": float(max(np.abs(sc[n]["mfsim"] - ref[n]["mfsim"]).max() for n in feats)),
            "mse_max_rel": float(max((np.abs(sc[n]["mse"] - ref[n]["mse"]) / np.abs(ref[n]["mse"])).max()
                                     for n in feats)),
            "mfsim_mean_abs": float(np.mean(np.concatenate([np.abs(sc[n]["mfsim"] - ref[n]["mfsim"]) for n in feats]))),
            "mse_mean_rel": float(np.mean(np.concatenate([np.abs(sc[n]["mse"] - ref[n]["mse"]) / np.abs(ref[n]["mse"])
                                                          for n in feats])))}
        results[name] = table(sc)

    sets = list(ref_tab)
    head = f"{'OOD set':<14}" + "".join(f"{'ref ' + m:>11}" for m in METRICS) + "".join(
        f"{prec + ' d' + m:>{max(13, len(prec) + 9)}}" for prec in results for m in METRICS)
    print(head)
    worst = {prec: 0.0 for prec in results}
    for name in sets:
        row = f"{name:<14}" + "".join(f"{ref_tab[name][m]:>11.3f}" for m in METRICS)
        for prec, tab in results.items():
            for m in METRICS:
                d = tab[name][m] - ref_tab[name][m]
                worst[prec] = max(worst[prec], float(abs(d)))
                row += f"{d:>+{max(13, len(prec) + 9)}.4f}"
        print(row)
    ok = True
    for prec in results:
        passed = worst[prec] <= args.limit
        ok &= passed
        print(f"{prec}: max |AUROC - FP32 reference| = {worst[prec]:.4f} points over {len(sets)} OOD sets x "
              f"{len(METRICS)} scores: {'within' if passed else 'OUTSIDE'} {args.limit}; per item: mfsim abs. "
              f"{score_err[prec]['mfsim_max_abs']:.2e}, mse rel. {score_err[prec]['mse_max_rel']:.2e} (mean "
              f"{score_err[prec]['mfsim_mean_abs']:.2e}, {score_err[prec]['mse_mean_rel']:.2e})")
    for prec, why in refused.items():
        print(f"{prec}: refused by the engine: {why}")
    for prec, why in not_available.items():
        print(f"{prec}: not available: {why}")

    date = datetime.date.today().isoformat()
    out = Path(args.json or f"benchmarks/results/precision-auroc-{date}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    info = _C.build_info() if _C is not None else {"cpu_kernels_active": None}
    report = {
        "date": date, "ckpt": str(args.ckpt), "benchmark": (ckpt.data.get("data") or {}).get("spec"),
        "n": {name: int(len(x)) for name, x in feats.items()}, "metrics": list(METRICS), "limit_points": args.limit,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_kernels_active": info["cpu_kernels_active"],
                    "cpu_has_avx512_bf16": info.get("cpu_has_avx512_bf16")},
        "reference_fp32_auroc": ref_tab,
        "rows": {"native": [p for p in precisions if p in results], "onnxruntime": [r for r in rows if r in results]},
        "native_auroc": {k: v for k, v in results.items() if k in precisions},
        "onnxruntime_auroc": {k: v for k, v in results.items() if k in rows},
        "native_minus_reference": {prec: {n: {m: tab[n][m] - ref_tab[n][m] for m in METRICS} for n in sets}
                                   for prec, tab in results.items() if prec in precisions},
        "onnxruntime_minus_reference": {r: {n: {m: tab[n][m] - ref_tab[n][m] for m in METRICS} for n in sets}
                                        for r, tab in results.items() if r in rows},
        "onnxruntime_engines": engines,
        "max_abs_diff_points": worst, "per_item_score_error": score_err, "within_limit": {prec: bool(worst[prec] <= args.limit) for prec in results},
        "refused": refused,
        "not_available": not_available,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if ok and not refused and not not_available else 1


if __name__ == "__main__":
    sys.exit(main())
