"""Write a Triton Inference Server model repository from a checkpoint, for sites that run their own Triton.

DIR/NAME/config.pbtxt (platform, max_batch_size, input/output names, types and dims, dynamic batching,
instance group, the calibrated threshold as a parameter) and DIR/NAME/1/model.onnx (Triton's onnxruntime
backend) or DIR/NAME/1/model.plan (a full TensorRT plan for the GPU of this machine; Triton's tensorrt
backend). Other models in DIR are left alone; the model folder is replaced atomically.

Serving it needs a full Triton installation (NVIDIA's tritonserver container) with the onnxruntime or
tensorrt backend: neither is on PyPI. To serve from Python without them, use `lfdn-edge serve ENGINE`
(PyTriton: the Scorer runs in Triton's Python backend).

Examples:
    lfdn-edge export-triton runs/demo/ckpt.pt triton-repo
    lfdn-edge export-triton ckpt.pt triton-repo --backend tensorrt --batch 1,32,128 --instances 2
    lfdn-edge export-triton ckpt.pt triton-repo --include-backbone --image-size 480x640 --name cam
    docker run --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 -v $PWD/triton-repo:/models \\
        nvcr.io/nvidia/tritonserver:24.10-py3 tritonserver --model-repository=/models
"""

from __future__ import annotations

import sys

from .. import defaults
from .common import add_common_options, parse_batch, parse_size, parser, run_cli


def build_parser(prog: str = "lfdn-edge export-triton"):
    p = parser(prog, __doc__)
    p.add_argument("ckpt", help="checkpoint written by lfdn-edge train")
    p.add_argument("repository", help="model repository folder (created if missing)")
    p.add_argument("--backend", choices=("onnx", "tensorrt"), default="onnx",
                   help="model.onnx for Triton's onnxruntime backend, or model.plan (full TensorRT, built on "
                        "this machine's GPU) for its tensorrt backend (default: %(default)s)")
    p.add_argument("--name", default=defaults.SERVE_MODEL_NAME, help="model name (default: %(default)s)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default=None,
                   help="default: fp32 for onnx, fp16 for tensorrt")
    p.add_argument("--batch", type=parse_batch, default=defaults.ENGINE_BATCH, metavar="MIN,OPT,MAX",
                   help="max_batch_size = MAX, preferred batch sizes OPT and MAX (TensorRT: the optimisation "
                        f"profile) (default: {','.join(map(str, defaults.ENGINE_BATCH))})")
    p.add_argument("--score-type", choices=("mfsim", "mse"), default=defaults.SCORE_TYPE,
                   help="the score the model reports as 'score' (default: %(default)s)")
    p.add_argument("--include-backbone", action="store_true",
                   help="the model takes uint8 NHWC RGB frames ('images') instead of features")
    p.add_argument("--image-size", type=parse_size, default=None, metavar="HxW",
                   help="frame size of an --include-backbone model (default: the backbone input size)")
    p.add_argument("--instances", type=int, default=1, help="model instances (instance_group count; default: 1)")
    p.add_argument("--instance-kind", choices=("KIND_GPU", "KIND_CPU", "KIND_AUTO"), default="KIND_GPU",
                   help="where the instances run (default: %(default)s)")
    p.add_argument("--max-queue-delay-us", type=int, default=defaults.SERVE_MAX_QUEUE_DELAY_US,
                   help="dynamic batching: how long Triton waits to fill a batch (default: %(default)s)")
    p.add_argument("--opset", type=int, default=defaults.ONNX_OPSET, help="ONNX opset (default: %(default)s)")
    add_common_options(p, cache=False, quiet=False)
    return p


def main(argv=None, prog: str = "lfdn-edge export-triton") -> int:
    args = build_parser(prog).parse_args(argv)

    def body() -> int:
        from ..builder.triton_repo import export_triton_repository

        export_triton_repository(args.ckpt, args.repository, backend=args.backend, name=args.name,
                                 precision=args.precision, batch=args.batch, include_backbone=args.include_backbone,
                                 image_size=args.image_size, score_type=args.score_type, instances=args.instances,
                                 instance_kind=args.instance_kind, max_queue_delay_us=args.max_queue_delay_us,
                                 opset=args.opset, log=print)
        return 0

    return run_cli(args, body)


if __name__ == "__main__":
    sys.exit(main())
