#!/usr/bin/env python3
"""Throughput and latency of `lfdn-edge serve` (Triton via PyTriton) against the in-process Scorer.

Both sides get the same load: CLIENTS threads, each sending REQUESTS requests of ITEMS feature vectors one
after the other (after WARMUP untimed ones). In-process, each request is ``scorer.score(x)`` from its thread
(one Scorer shared by all, as the server uses it). Served, the server is the real command in a child process
(``python -m lfdn_edge serve ENGINE``) and each request is a tritonclient gRPC (or HTTP) call on 127.0.0.1;
Triton's dynamic batcher merges concurrent requests. Reported: items/s over the timed requests, and p50/p99
of the per-request latency; for the server also the batch sizes Triton formed (its statistics endpoint); and,
as the bound batching can reach, one thread scoring batches of MAX_BATCH items in-process.

    python tools/bench_serve.py runs/demo/ckpt.native.fp32.engine --json runs/bench_serve.json
    python tools/bench_serve.py --random-model --json bench_serve.json     # no engine needed: a native engine
        # with random weights of the default size (the default backbone's layout, W=512, N=6): the same arithmetic

The numbers depend on the machine and on what else runs on it (the JSON records the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def random_engine(folder: Path) -> Path:
    """A native (else onnx) engine with random weights at the default model size and feature layout (backbone)."""
    import torch

    from lfdn_edge import defaults
    from lfdn_edge.backbones import get_backbone
    from lfdn_edge.builder.dispatch import build_engine
    from lfdn_edge.checkpoint import save_checkpoint
    from lfdn_edge.diffusion import DiffusionConfig
    from lfdn_edge.features import FeatureConfig
    from lfdn_edge.model import LFDN, LFDNConfig
    from lfdn_edge.probes import native_usable
    from lfdn_edge.reference import ScoreConfig

    dims = list(get_backbone(defaults.BACKBONE).stage_dims)
    torch.manual_seed(0)
    cfg = LFDNConfig(in_dim=sum(dims), width=defaults.WIDTH, depth=defaults.DEPTH, emb_dim=defaults.EMB_DIM)
    data = {"feature": FeatureConfig().to_dict(), "layout": {"stage_dims": dims}, "model": cfg.to_dict(),
            "diffusion": DiffusionConfig().to_dict(), "score": ScoreConfig().to_dict(),
            "ema": LFDN(cfg).state_dict(), "calibration": {"tpr": 0.95, "n": 1, "thresholds": {"mfsim": -0.5}}}
    ckpt = save_checkpoint(data, folder / "random.pt")
    backend = "native" if native_usable()[0] else "onnx"
    return build_engine(ckpt, backend=backend, out=folder / f"random.{backend}.fp32.engine")


def summary(lat: list[float], items: int, wall: float) -> dict:
    a = np.asarray(lat) * 1e3
    return {"items_per_s": items / wall, "requests": len(lat), "items": items, "wall_s": wall,
            "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "max_ms": float(a.max())}


def drive(clients: int, requests: int, warmup: int, call, xs) -> dict:
    """CLIENTS threads; thread c sends warmup + requests calls ``call(c, x)``; returns the timing summary."""
    lat, errors = [[] for _ in range(clients)], []
    barrier = threading.Barrier(clients + 1)
    marks = {}

    def worker(c):
        try:
            for i in range(warmup):
                call(c, xs[(c + i) % len(xs)])
            barrier.wait()
            for i in range(requests):
                t = time.perf_counter()
                call(c, xs[(c * requests + i) % len(xs)])
                lat[c].append(time.perf_counter() - t)
        except Exception as exc:  # reported after the run
            errors.append(repr(exc))
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    marks["t0"] = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - marks["t0"]
    if errors:
        raise RuntimeError(f"{len(errors)} client errors, first: {errors[0]}")
    flat = [v for per in lat for v in per]
    return summary(flat, len(flat) * xs[0].shape[0], wall)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("engine", nargs="?", help="engine file (features engine) to serve")
    p.add_argument("--random-model", action="store_true", help="build a random-weight engine of the default size")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=40, help="timed requests per client (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed requests per client first (default: %(default)s)")
    p.add_argument("--items", type=int, default=1, help="feature vectors per request (default: %(default)s)")
    p.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-queue-delay-us", type=int, default=2000)
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the native / onnxruntime engine")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if (args.engine is None) == (not args.random_model):
        p.error("give an ENGINE or --random-model (one of them)")
    from lfdn_edge import Scorer

    tmp = tempfile.TemporaryDirectory(prefix="bench-serve-")
    engine = Path(args.engine) if args.engine else random_engine(Path(tmp.name))
    scorer = Scorer(engine, threads=args.threads) if args.threads else Scorer(engine)
    if scorer.includes_backbone:
        p.error("this benchmark sends feature vectors: give an engine on features")
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((args.items, scorer.input_shape[1])).astype(np.float32) for _ in range(64)]
    result = {"engine": str(engine), "scorer": repr(scorer), "config": vars(args),
              "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}}

    # ---- in-process Scorer, same concurrency; and one thread scoring batches of max-batch items (the bound
    # that batching can reach, without any transport)
    result["inprocess"] = drive(args.clients, args.requests, args.warmup, lambda c, x: scorer.score(x), xs)
    big = [np.concatenate(xs)[:args.max_batch] if args.items * len(xs) >= args.max_batch else np.concatenate(xs)]
    n_big = max(3, args.clients * args.requests * args.items // big[0].shape[0])
    result["inprocess_batched"] = drive(1, n_big, 1, lambda c, x: scorer.score(x), big)

    # ---- the served Scorer: `lfdn-edge serve` in a child process
    h, g, m = free_ports(3)
    token = secrets.token_urlsafe(16)
    cmd = [sys.executable, "-m", "lfdn_edge", "serve", str(engine), "--http-port", str(h), "--grpc-port", str(g),
           "--metrics-port", str(m), "--max-batch", str(args.max_batch), "--max-queue-delay-us",
           str(args.max_queue_delay_us), "--access-token", token, "--log-file", os.path.join(tmp.name, "triton.log")]
    if scorer.threshold is None:
        cmd += ["--threshold", "0"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    t_start = time.perf_counter()
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError("server exited: " + server.stdout.read()[-2000:])
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{h}/v2/models/lfdn_edge/ready", timeout=2).status == 200:
                    break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("server not ready in 180 s") from None
                time.sleep(0.2)
        result["server_start_s"] = time.perf_counter() - t_start
        if args.protocol == "grpc":
            import tritonclient.grpc as tc
            url = f"127.0.0.1:{g}"
        else:
            import tritonclient.http as tc
            url = f"127.0.0.1:{h}"
        conns = [tc.InferenceServerClient(url) for _ in range(args.clients)]

        def call(c, x):
            inp = tc.InferInput("features", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            return conns[c].infer("lfdn_edge", [inp]).as_numpy("score")

        got = call(0, xs[0])[:, 0]
        result["served_equals_inprocess"] = bool(np.array_equal(got, scorer.score(xs[0])))
        result["server"] = drive(args.clients, args.requests, args.warmup, call, xs)
        for cl in conns:
            cl.close()
        req = urllib.request.Request(f"http://127.0.0.1:{h}/v2/models/lfdn_edge/stats",
                                     headers={"triton-access-token": token})
        stats = json.loads(urllib.request.urlopen(req, timeout=10).read())["model_stats"][0]
        hist = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]}
        result["server"]["batch_histogram"] = dict(sorted(hist.items()))
        result["server"]["mean_batch_items"] = sum(k * v for k, v in hist.items()) / max(1, sum(hist.values()))
        t_stop = time.perf_counter()
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=60)
        result["server_stop_s"] = time.perf_counter() - t_stop
        result["server_exit_code"] = server.returncode
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    result["machine"]["loadavg_end"] = os.getloadavg()
    ip, sv = result["inprocess"], result["server"]
    print(f"{scorer!r}\n{args.clients} clients x {args.requests} requests x {args.items} items "
          f"({args.protocol}, max batch {args.max_batch}, queue delay {args.max_queue_delay_us} us); "
          f"load average {result['machine']['loadavg_start'][0]:.1f} -> {result['machine']['loadavg_end'][0]:.1f}")
    print(f"{'':<22}{'items/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    rows = (("in-process Scorer", ip), ("Triton (PyTriton)", sv),
            (f"in-process, batch {big[0].shape[0]}", result["inprocess_batched"]))
    for name, r in rows:
        print(f"{name:<22}{r['items_per_s']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}")
    print(f"server: start {result['server_start_s']:.1f} s, stop {result['server_stop_s']:.1f} s, batches "
          f"{sv['batch_histogram']} (mean {sv['mean_batch_items']:.1f} items), scores equal in-process: "
          f"{result['served_equals_inprocess']}")
    if args.json:
        from lfdn_edge._atomic import atomic_write

        text = json.dumps(result, indent=2, default=str)
        atomic_write(args.json, lambda t: Path(t).write_text(text))
        print(f"wrote {args.json}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
