#!/usr/bin/env python3
"""The FP32 GEMM ceiling of this machine for the paper-size LFDN's layer shape, from the libraries a user has.

    python tools/gemm_ceiling.py [--rows 64,256,1024] [--threads 2] [--json benchmarks/results/gemm-ceiling-<date>.json]

Times one (rows x 1440) @ (1440 x 1440) FP32 matrix product (the paper-size LFDN's block Linear, W=1440) with
torch.mm, numpy (its BLAS) and onnxruntime (a one-node MatMul graph: MLAS, the GEMM under the onnxruntime
backend of `lfdn-edge bench`), each best of 5 samples of >= 0.5 s after 3 warm-up calls, on --threads threads,
and divides by the native core's measured FMA peak (lfdn_edge._C.probe_machine, probed before and after, the
higher reading kept: ``lfdn-edge bench``'s own ``best_probe``). Why: the whole scoring pass at batch 64-256 is
FMA-bound, so the best single GEMM at that shape bounds what any engine's whole pass (which adds GroupNorm,
SiLU, the DDIM updates and the scores) can reach. The goal "1.2x onnxruntime FP32 at batch 64 and 256" is
checked against this bound in docs/BENCHMARKS.md ("Roofline reading: what bounds each batch size").
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

import numpy as np


def best_gflops(fn, flops: float, samples: int = 5, sample_s: float = 0.5) -> float:
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(samples):
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < sample_s:
            fn()
            n += 1
        best = min(best, (time.perf_counter() - t0) / n)
    return flops / best / 1e9


def onnxruntime_matmul(w: np.ndarray, rows: int, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k, n = w.shape
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="64,256,1024", help="batch rows of the product (default: %(default)s)")
    p.add_argument("--width", type=int, default=1440, help="K = N of the product (default: %(default)s, paper W)")
    p.add_argument("--threads", type=int, default=2, help="threads of every library (default: %(default)s)")
    p.add_argument("--json", help="where to write the results")
    args = p.parse_args(argv)
    import torch

    from lfdn_edge.benchmark import best_probe, machine_info
    from lfdn_edge.native_core import load_native

    core = load_native()
    torch.set_num_threads(args.threads)
    first_probe = core.probe_machine(threads=args.threads)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((args.width, args.width)).astype(np.float32)
    wt = torch.from_numpy(w)
    results = {}
    for rows in (int(r) for r in args.rows.split(",")):
        x = rng.standard_normal((rows, args.width)).astype(np.float32)
        xt = torch.from_numpy(x)
        flops = 2.0 * rows * args.width * args.width
        ort_run = onnxruntime_matmul(w, rows, args.threads)
        results[str(rows)] = {"torch_mm": best_gflops(lambda: torch.mm(xt, wt), flops),
                              "numpy": best_gflops(lambda: x @ w, flops),
                              "onnxruntime_matmul": best_gflops(lambda: ort_run(x), flops)}
    probe = best_probe(first_probe, core.probe_machine(threads=args.threads))
    peak = float(probe["fma_peak_gflops"])
    for rows, r in results.items():
        r.update({f"{k}_fraction_of_peak": round(v / peak, 3) for k, v in list(r.items())})
        print(f"rows {rows:>5}: " + ", ".join(f"{k} {v:.1f} GFLOPS ({r[k + '_fraction_of_peak']:.2f} of peak)"
                                           for k, v in r.items() if not k.endswith("_peak")), flush=True)
    print(f"FMA peak {peak:.0f} GFLOPS ({probe['fma_isa']}, {args.threads} threads; probes "
          f"{[round(float(pr['fma_peak_gflops'])) for pr in probe['probes']]})")
    if args.json:
        import onnxruntime

        from lfdn_edge._atomic import atomic_write

        out = {"shape": {"k": args.width, "n": args.width}, "threads": args.threads, "fma_peak_gflops": peak,
               "probe": probe, "results_gflops": results,
               "machine": {**machine_info("cpu"), "onnxruntime": onnxruntime.__version__},
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(out, indent=1) + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
