#!/usr/bin/env python3
"""Build a scoring engine artifact from a trained checkpoint (run it on the device that will score).

Backends: tensorrt (a TensorRT plan; full TensorRT needs the target GPU, TensorRT-RTX also builds without
one), native (the lfdn-edge C++/CUDA core), onnx (run with onnxruntime, CPU or GPU), auto (tensorrt when
TensorRT is importable and a GPU is present, else native when the native core is built, else onnx).
The artifact is one file: a JSON header (versions, GPU, batch range, precision, threshold, feature layout)
followed by the payload. Load it with lfdn_edge.Scorer(path).

Examples:
    python tools/build_engine.py runs/demo/ckpt.pt                        # auto backend, next to the checkpoint
    python tools/build_engine.py ckpt.pt --backend tensorrt --fp16 --batch 1,16,64 --timing-cache trt.cache
    python tools/build_engine.py ckpt.pt --backend onnx --include-backbone --image-size 480x640 -o cam.engine
"""

from __future__ import annotations

import argparse
import sys

import lfdn_edge
from _cli import check_output_path, run_cli


def parse_batch(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX integers, got {text!r}") from None
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {text!r}")
    return parts


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH (e.g. 480x640), got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"frame size must be positive, got {text!r}")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    from lfdn_edge.build.dispatch import CLI_BACKENDS, DEFAULT_BATCH, DEFAULT_WORKSPACE_MB

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="checkpoint written by tools/train.py")
    p.add_argument("--backend", choices=CLI_BACKENDS, default="auto", help="(default: %(default)s)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                   help="FP16 compute (the default for tensorrt); GroupNorm statistics and scores stay FP32")
    g.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                   help="FP32 throughout (the default for native and onnx)")
    p.add_argument("--batch", type=parse_batch, default=DEFAULT_BATCH, metavar="MIN,OPT,MAX",
                   help="batch range of the engine; TensorRT optimises for OPT "
                        f"(default: {','.join(map(str, DEFAULT_BATCH))})")
    p.add_argument("--include-backbone", action="store_true",
                   help="take uint8 NHWC RGB frames instead of features: preprocessing (resize, normalise) and "
                        "the backbone inside the engine")
    p.add_argument("--image-size", type=parse_size, default=None, metavar="HxW",
                   help="frame size of an --include-backbone engine (default: the backbone input size, no resize)")
    p.add_argument("--timing-cache", default=None, metavar="PATH",
                   help="TensorRT timing cache: read if it exists, written after the build (TensorRT-RTX ignores it)")
    p.add_argument("--workspace", type=int, default=DEFAULT_WORKSPACE_MB, metavar="MB",
                   help="TensorRT builder workspace limit in MB (default: %(default)s; keep it modest on Jetson)")
    p.add_argument("-o", "--output", default=None, metavar="PATH",
                   help="engine file to write (default: next to the checkpoint, "
                        "<ckpt stem>.<backend>.<precision>[.image].engine)")
    p.add_argument("--version", action="version", version=f"lfdn-edge {lfdn_edge.__version__}")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from lfdn_edge.build.dispatch import build_engine

    def body() -> int:
        check_output_path(args.output, "-o")
        build_engine(args.ckpt, backend=args.backend, precision=args.precision, batch=args.batch,
                     include_backbone=args.include_backbone, timing_cache=args.timing_cache,
                     workspace_mb=args.workspace, out=args.output, image_size=args.image_size, log=print)
        return 0

    return run_cli(args, body)


if __name__ == "__main__":
    sys.exit(main())
