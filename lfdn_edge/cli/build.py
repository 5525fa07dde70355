"""Build a scoring engine artifact from a trained checkpoint (run it on the device that will score).

Backends: tensorrt (a TensorRT plan; full TensorRT needs the target GPU, TensorRT-RTX also builds without
one), native (the lfdn-edge C++/CUDA core; features only), onnx (run with onnxruntime, CPU or GPU), auto (the
first of tensorrt, native, onnx that can build what was asked here: tensorrt needs TensorRT and a GPU it
supports, native needs the built core and cannot include the backbone). The artifact is one file: a JSON
header (versions, GPU, batch range, precision, threshold, feature layout) followed by the payload. Load it
with lfdn_edge.Scorer(path), or score files with `lfdn-edge score`.

Examples:
    lfdn-edge build runs/demo/ckpt.pt                        # auto backend, next to the checkpoint
    lfdn-edge build ckpt.pt --backend tensorrt --fp16 --batch 1,16,64 --timing-cache trt.cache
    lfdn-edge build ckpt.pt --backend onnx --include-backbone --image-size 480x640 -o cam.engine
(``python tools/build_engine.py ckpt.pt ...`` is the same command.)
"""

from __future__ import annotations

import sys

from .. import defaults
from .common import add_common_options, check_output_path, parse_batch, parse_size, parser, run_cli

CLI_BACKENDS = ("auto", "tensorrt", "native", "onnx")
TRT_FLAVORS = ("auto", "tensorrt", "tensorrt-rtx")
SCORE_TYPES = ("mfsim", "mse")


def build_parser(prog: str = "lfdn-edge build"):
    p = parser(prog, __doc__)
    p.add_argument("ckpt", help="checkpoint written by lfdn-edge train")
    p.add_argument("--backend", choices=CLI_BACKENDS, default="auto", help="(default: %(default)s)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                   help="FP16 compute (the default for tensorrt); GroupNorm statistics and scores stay FP32")
    g.add_argument("--bf16", dest="precision", action="store_const", const="bf16",
                   help="native CPU engine only, on CPUs with AVX512_BF16: BF16 weights and activations, FP32 "
                        "accumulation (refused at load elsewhere)")
    g.add_argument("--int8", dest="precision", action="store_const", const="int8",
                   help="INT8 weights (per-output-channel scales). Native CPU engine: activations quantized per "
                        "row at run time, INT32 accumulation (AVX512-VNNI / AMX-INT8 / NEON dot product; refused "
                        "at load on CPUs without them); onnx/tensorrt: explicit quantization (Q/DQ nodes)")
    g.add_argument("--precision", dest="precision", choices=("fp32", "fp16", "bf16", "int8"),
                   help="the same as --fp32 / --fp16 / --bf16 / --int8")
    g.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                   help="FP32 throughout (the default for native and onnx)")
    p.add_argument("--batch", type=parse_batch, default=defaults.ENGINE_BATCH, metavar="MIN,OPT,MAX",
                   help="batch range of the engine; TensorRT optimises for OPT "
                        f"(default: {','.join(map(str, defaults.ENGINE_BATCH))})")
    p.add_argument("--score-type", choices=SCORE_TYPES, default=defaults.SCORE_TYPE,
                   help="the score the engine reports as 'score' (both are always computed; default: %(default)s)")
    p.add_argument("--include-backbone", action="store_true",
                   help="take uint8 NHWC RGB frames instead of features: preprocessing (resize, normalise) and "
                        "the backbone inside the engine (tensorrt, onnx)")
    p.add_argument("--image-size", type=parse_size, default=None, metavar="HxW",
                   help="frame size of an --include-backbone engine (default: the backbone input size, no resize)")
    g = p.add_argument_group("TensorRT")
    g.add_argument("--trt-flavor", choices=TRT_FLAVORS, default=defaults.TRT_FLAVOR,
                   help="full TensorRT or TensorRT-RTX (auto: full TensorRT with a GPU, else TensorRT-RTX)")
    g.add_argument("--timing-cache", default=None, metavar="PATH",
                   help="timing cache: read if it exists, written after the build (TensorRT-RTX ignores it)")
    g.add_argument("--workspace", type=int, default=None, metavar="MB",
                   help=f"builder workspace limit in MB (default: {defaults.WORKSPACE_MB}; keep it modest on Jetson)")
    g.add_argument("--opset", type=int, default=defaults.ONNX_OPSET,
                   help="ONNX opset of the exported graph (onnx, tensorrt; >= 17; default: %(default)s)")
    p.add_argument("-o", "--output", default=None, metavar="PATH",
                   help="engine file to write (default: next to the checkpoint, "
                        "<ckpt stem>.<backend>.<precision>[.image].engine)")
    add_common_options(p, cache=False, quiet=False)
    return p


def main(argv=None, prog: str = "lfdn-edge build") -> int:
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        from ..builder.dispatch import build_engine

        check_output_path(args.output, "-o")
        if args.workspace is not None and args.workspace < 1:
            raise ValueError(f"--workspace must be >= 1 MB, got {args.workspace}")
        build_engine(args.ckpt, backend=args.backend, precision=args.precision, batch=args.batch,
                     include_backbone=args.include_backbone, timing_cache=args.timing_cache,
                     workspace_mb=args.workspace, out=args.output, image_size=args.image_size,
                     score_type=args.score_type, opset=args.opset, trt_flavor=args.trt_flavor,
                     log=print)
        return 0

    return run_cli(args, body)


if __name__ == "__main__":
    sys.exit(main())
