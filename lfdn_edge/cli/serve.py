"""Serve an engine (or a checkpoint) over HTTP and gRPC through NVIDIA Triton Inference Server (PyTriton), with
dynamic batching: requests from many cameras that arrive within --max-queue-delay-us are scored as one batch.

Needs the optional extra: pip install 'lfdn-edge[serve]' (NVIDIA PyTriton: a real tritonserver whose Python
backend hands each batch to the Scorer in this process). Model NAME (default lfdn_edge): input 'features'
float32 [-1, C] (or 'images' uint8 [-1, H, W, 3] for engines that include the backbone); outputs 'score',
'is_ood', 'mse', 'mfsim' [-1, 1], 'stage_cos' [-1, M] and 'threshold' float64 [-1, 1] (is_ood's; `lfdn-edge
stream --triton URL` reads it). Endpoints: HTTP /v2/health/ready, /v2/models/NAME/ready,
/v2/models/NAME/infer (KServe v2 protocol), the same over gRPC, Prometheus metrics at :METRICS_PORT/metrics;
Triton's statistics endpoints need the access token (header triton-access-token; --access-token or
$LFDN_EDGE_TRITON_TOKEN, else a random one). Ctrl-C (SIGINT) or SIGTERM stops the server cleanly.

Examples:
    lfdn-edge serve runs/demo/ckpt.native.fp32.engine
    lfdn-edge serve cam.onnx.fp32.image.engine --host 0.0.0.0 --max-batch 32 --max-queue-delay-us 5000
    curl -s localhost:8000/v2/models/lfdn_edge/ready -o /dev/null -w '%{http_code}\\n'   # 200 once the model is loaded
"""

from __future__ import annotations

import os
import sys

from .. import defaults
from .common import add_common_options, parser, run_cli


def build_parser(prog: str = "lfdn-edge serve"):
    p = parser(prog, __doc__)
    p.add_argument("engine", help="engine file (lfdn-edge build) or checkpoint (lfdn-edge train)")
    p.add_argument("--backend", default="auto", help="runtime backend (default: the one the engine needs)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the backend's default)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the native / onnxruntime backend")
    p.add_argument("--score-type", choices=("mfsim", "mse"), default=None, help="score to serve (default: the engine's)")
    p.add_argument("--threshold", type=float, default=None,
                   help="OOD threshold for is_ood (default: the engine's calibrated one)")
    g = p.add_argument_group("server")
    g.add_argument("--name", default=defaults.SERVE_MODEL_NAME, help="Triton model name (default: %(default)s)")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s; 0.0.0.0 for other machines)")
    g.add_argument("--http-port", type=int, default=defaults.SERVE_HTTP_PORT, help="(default: %(default)s)")
    g.add_argument("--grpc-port", type=int, default=defaults.SERVE_GRPC_PORT, help="(default: %(default)s)")
    g.add_argument("--metrics-port", type=int, default=defaults.SERVE_METRICS_PORT, help="(default: %(default)s)")
    g.add_argument("--max-batch", type=int, default=defaults.SERVE_MAX_BATCH,
                   help="largest batch the dynamic batcher forms (default: %(default)s)")
    g.add_argument("--max-queue-delay-us", type=int, default=defaults.SERVE_MAX_QUEUE_DELAY_US,
                   help="how long the batcher waits to fill a batch, in microseconds (default: %(default)s)")
    g.add_argument("--instances", type=int, default=1,
                   help="model instances (threads scoring batches at once; default: %(default)s)")
    g.add_argument("--access-token", default=None,
                   help="token of Triton's restricted endpoints (default: $LFDN_EDGE_TRITON_TOKEN, else random)")
    g.add_argument("--exit-timeout", type=int, default=defaults.SERVE_EXIT_TIMEOUT_S,
                   help="seconds Triton waits for in-flight requests at stop (default: %(default)s)")
    g.add_argument("--log-file", default=None, help="write tritonserver's log here instead of the terminal")
    g.add_argument("--log-verbose", type=int, default=0, help="tritonserver verbosity (default: %(default)s)")
    add_common_options(p, cache=False, quiet=False)
    return p


def main(argv=None, prog: str = "lfdn-edge serve") -> int:
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        from ..runtime.scorer import Scorer
        from ..runtime.triton_server import ScoreServer, pytriton_available
        from ..errors import UnavailableError

        ok, why = pytriton_available()
        if not ok:
            raise UnavailableError(why)
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        scorer = Scorer(args.engine, args.backend, args.device, score_type=args.score_type, threads=args.threads)
        token = args.access_token or os.environ.get("LFDN_EDGE_TRITON_TOKEN") or None
        server = ScoreServer(scorer, model_name=args.name, host=args.host, http_port=args.http_port,
                             grpc_port=args.grpc_port, metrics_port=args.metrics_port, max_batch=args.max_batch,
                             max_queue_delay_us=args.max_queue_delay_us, instances=args.instances,
                             threshold=args.threshold, access_token=token, log_verbose=args.log_verbose,
                             exit_timeout_s=args.exit_timeout, log_file=args.log_file)
        try:
            server.start()
        except KeyboardInterrupt:  # Ctrl-C while starting: start() has stopped what it had started
            print("interrupted while starting; stopped", file=sys.stderr)
            return 130
        kind = "images" if scorer.includes_backbone else "features"
        print(f"serving {scorer!r}\n  model {server.model_name!r} (input {kind!r} {list(scorer.input_shape)}); "
              f"HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {server.metrics_url}; "
              f"dynamic batching up to {server.max_batch} items, {server.max_queue_delay_us} us\n"
              "  ready; Ctrl-C (SIGINT) or SIGTERM stops it", flush=True)
        server.wait()
        hist = server.batch_histogram
        print(f"stopped; scored {sum(n * c for n, c in hist.items())} items in {sum(hist.values())} batches "
              f"(batch sizes {hist})", flush=True)
        return 0

    return run_cli(args, body)


if __name__ == "__main__":
    sys.exit(main())
