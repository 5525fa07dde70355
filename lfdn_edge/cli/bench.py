"""Benchmark scoring backends in one process: throughput and latency per batch size, plus score parity.

    lfdn-edge bench --backends torch,native --batch 1,8,64,256 --device cpu --json out.json
    lfdn-edge bench --ckpt runs/demo/ckpt.pt --backends torch,native,onnxruntime --batch 1,64
    lfdn-edge bench --backends torch,native,onnxruntime,onnxruntime-int8-dynamic --threads 2 --json out.json
    lfdn-edge bench --backends torch-fp32,torch-fp16,torch-compile-fp16,native-fp16 --device cuda --dry-run
(``python tools/bench.py ...`` is the same command; the benchmark itself is lfdn_edge.benchmark.run_benchmark.)

--dry-run checks the arguments and prints the variants that would run, without building or running any
(no GPU needed): the dry run of tools/gpu_check.sh.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import benchmark
from .._atomic import atomic_write
from ..benchmark import BenchSettings, run_benchmark
from .common import check_output_path, parse_list, parser, run_cli

# --help: the usage above, then what the benchmark measures (lfdn_edge.benchmark's own documentation)
_MEASURES = benchmark.__doc__ or ""  # (None under python -OO)
HELP = (__doc__ or "") + "\n" + _MEASURES[_MEASURES.find("Backends (variants):"):]
_D = BenchSettings()  # the defaults


def print_table(results: list[dict], base: str = "torch") -> None:
    """The results as a table, with each backend's items/s over ``base``'s (the first backend when ``base``
    did not run)."""
    if not any(r["backend"] == base for r in results) and results:
        base = results[0]["backend"]
    ref = {r["batch"]: r["items_per_s"] for r in results if r["backend"] == base}
    per_joule = any(r.get("items_per_joule") is not None for r in results)  # the column only where measured
    print(f"{'backend':<22}{'batch':>6}{'items/s':>11}{'p50 ms':>10}{'p99 ms':>10}{'reps':>6}  vs {base}"
          + (f"{'items/J':>11}{'W':>8}" if per_joule else ""))
    for r in results:
        ratio = r["items_per_s"] / ref[r["batch"]] if r["batch"] in ref else float("nan")
        ipj = "" if not per_joule else (f"{r['items_per_joule']:>11.1f}{r['watts']:>8.2f}"
                                        if r.get("items_per_joule") is not None else f"{'-':>11}{'-':>8}")
        print(f"{r['backend']:<22}{r['batch']:>6}{r['items_per_s']:>11.1f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
              f"{r['reps']:>6}{ratio:>9.2f}x{ipj}")


def build_parser(prog: str = "lfdn-edge bench"):
    p = parser(prog, HELP)
    p.add_argument("--ckpt", default=None, help="checkpoint to score with (default: the paper-size random model)")
    p.add_argument("--backends", type=parse_list, default=_D.backends,
                   help="comma-separated: torch (= torch-fp32), torch-fp16, torch-compile-fp16, "
                        "torch-compile-fp16-ro, native, native-fp32, native-fp16, native-bf16, onnxruntime, "
                        "onnxruntime-int8-dynamic (onnxruntime's quantize_dynamic of the FP32 ONNX: QInt8 weights "
                        "per channel, activations quantized per call), tensorrt (default torch,native)")
    p.add_argument("--batch", type=lambda s: parse_list(s, int), default=_D.batch,
                   help=f"batch sizes (default {','.join(map(str, _D.batch))})")
    p.add_argument("--device", default=_D.device, help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--native-precision", type=parse_list, default=None,
                   help="weight storage of the native engine(s): fp32, fp16, bf16 (CPU with AVX512_BF16 only), "
                        "int8 (CPU with an INT8 dot product: AVX512-VNNI, AVX-VNNI, AMX-INT8, NEON dotprod) "
                        "(default: fp32,fp16 on cpu, fp16 on cuda)")
    p.add_argument("--native-tactics", type=parse_list, default=_D.native_tactics,
                   help="native CPU engine variants per precision: auto (tactics selected at load), fixed (the "
                        "default blocking, as before tactics; on the same engine instance as auto when both run), "
                        "isa (auto per usable kernel table), or a table name (scalar, avx2, avx512, neon) "
                        "(default auto,fixed; cuda: auto)")
    p.add_argument("--precision", default=_D.precision, choices=("fp32", "fp16", "int8"),
                   help="precision of registry backends (int8: onnxruntime runs the Q/DQ graph of build_artifact(ckpt, "
                        "\"onnx\", \"int8\"), reported as onnxruntime-int8)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch, native and onnxruntime (intra-op threads of onnxruntime-fp32 and "
                        "onnxruntime-int8-dynamic alike) (default: torch's / onnxruntime's default, all cores for "
                        "native)")
    p.add_argument("--warmup", type=int, default=_D.warmup)
    p.add_argument("--min-reps", type=int, default=_D.min_reps)
    p.add_argument("--min-time", type=float, default=_D.min_time, help="seconds of timed calls per (backend, batch)")
    p.add_argument("--max-reps", type=int, default=_D.max_reps)
    p.add_argument("--rounds", type=int, default=_D.rounds,
                   help="interleaved rounds per batch size: every backend runs once per round, in a rotated order, "
                        "with 1/rounds of --min-time (default %(default)s)")
    p.add_argument("--parity-batch", type=int, default=_D.parity_batch,
                   help="items in the parity check, per set with --parity-data (0: skip)")
    p.add_argument("--parity-data", default=None, metavar="SPEC",
                   help="check parity on real feature vectors of this data (e.g. fmnist-ood, with --ckpt): its ID test "
                        "split and OOD sets, instead of random vectors")
    p.add_argument("--cache-dir", default=None, help="feature/data cache for --parity-data")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--seed", type=int, default=_D.seed)
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--no-probe", action="store_true",
                   help="skip the machine probe (read bandwidth, FMA peak) and the roofline fields (--device cpu)")
    p.add_argument("--power-interval-ms", type=int, default=_D.power_interval_ms,
                   help="power sampling interval during the timed calls, where a source exists (tegrastats on a "
                        "Jetson, NVML / nvidia-smi for --device cuda); 0: no sampling (default %(default)s)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the arguments and list the variants that would run; build and run nothing")
    return p


def settings_from(args) -> BenchSettings:
    return BenchSettings(
        ckpt=args.ckpt, backends=args.backends, batch=args.batch, device=args.device,
        native_precision=args.native_precision, native_tactics=args.native_tactics, precision=args.precision,
        threads=args.threads, warmup=args.warmup, min_reps=args.min_reps, min_time=args.min_time,
        max_reps=args.max_reps, rounds=args.rounds, parity_batch=args.parity_batch, parity_data=args.parity_data,
        cache_dir=args.cache_dir, progress=not args.quiet, seed=args.seed, probe=not args.no_probe,
        power_interval_ms=args.power_interval_ms)


def _log(line: str) -> None:
    print(line, flush=True)


def main(argv=None, prog: str = "lfdn-edge bench") -> int:
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        settings = settings_from(args)
        check_output_path(args.json, "--json")
        variants = settings.variants()
        if args.dry_run:
            print(f"dry run: device {args.device}, batches {args.batch}, variants {', '.join(variants)}")
            return 0
        report = run_benchmark(settings, log=_log)
        print()
        print_table(report["results"])
        if args.json:
            out = Path(args.json)
            atomic_write(out, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
            print(f"wrote {out}")
        return 0

    return run_cli(args, body)


if __name__ == "__main__":
    sys.exit(main())
