"""Export a checkpoint as a Triton Inference Server model repository (for sites that run their own Triton).

    DIR/                      the model repository (other models in it are left alone)
      NAME/                   one model (default name: lfdn_edge)
        config.pbtxt          platform, max_batch_size, input/output names/types/dims, dynamic batching,
                              instance groups, and the calibrated threshold as a parameter
        1/model.onnx          the scoring graph (onnx, run by Triton's onnxruntime backend), or
        1/model.plan          a full TensorRT plan (run by Triton's tensorrt backend; needs TensorRT and the GPU)

The model is the same scoring graph as the engines of :mod:`lfdn_edge.builder.dispatch` (same bytes as the
payload of an onnx engine built with the same options): input ``features`` (-1, C) float32, or ``images``
(-1, H, W, 3) uint8 with ``include_backbone``; outputs ``score``, ``mse``, ``mfsim`` (-1,) and ``stage_cos``
(-1, M), float32. Triton sees the batch axis through ``max_batch_size``; the (N,) outputs are declared as
``dims: [1]`` with ``reshape { shape: [] }`` (Triton's way of saying "one value per item").

Writing is atomic per model: the model folder is assembled next to its final place and renamed into it;
an existing model folder of the same name is first renamed aside and removed after the new one is in place
(between the two renames the model is briefly absent; a crash there leaves ``.NAME.old-*`` next to it).

Running the repository needs a full Triton installation with the onnxruntime or tensorrt backend (NVIDIA's
tritonserver container); PyPI has neither backend, so this project validates the repository here with
Triton's own model_config protobuf schema (shipped by tritonclient) and runs the model with onnxruntime.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..checkpoint import Checkpoint
from ..scoring_graph import SCORE_OUTPUTS, as_checkpoint
from .. import defaults
from .dispatch import build_artifact

TRITON_BACKENDS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "tensorrt": ("tensorrt_plan", "model.plan")}
INSTANCE_KINDS = ("KIND_GPU", "KIND_CPU", "KIND_AUTO")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_TYPES = {"float32": "TYPE_FP32", "uint8": "TYPE_UINT8"}


def _check(name: str, instances: int, instance_kind: str, max_queue_delay_us: int, version: int) -> None:
    if not _NAME.match(name or ""):
        raise ValueError(f"model name must be 1-128 letters, digits, '_', '.' or '-' (not starting with '.' or "
                         f"'-'), got {name!r}")
    if int(instances) < 1:
        raise ValueError(f"instance count must be >= 1, got {instances}")
    if instance_kind not in INSTANCE_KINDS:
        raise ValueError(f"instance kind must be one of {INSTANCE_KINDS}, got {instance_kind!r}")
    if int(max_queue_delay_us) < 0:
        raise ValueError(f"max queue delay must be >= 0 microseconds, got {max_queue_delay_us}")
    if int(version) < 1:
        raise ValueError(f"model version must be >= 1, got {version}")


def model_config_text(header: dict, name: str, platform: str, instances: int = 1, instance_kind: str = "KIND_GPU",
                      max_queue_delay_us: int = defaults.SERVE_MAX_QUEUE_DELAY_US) -> str:
    """config.pbtxt (protobuf text format of Triton's ModelConfig) for an engine header of this project."""
    spec = header["input"]
    lo, opt, hi = (int(header["batch"][k]) for k in ("min", "opt", "max"))
    m = len(header["layout"]["stage_dims"])
    dims = ", ".join(str(int(d)) for d in spec["shape"][1:])
    lines = [f'name: "{name}"', f'platform: "{platform}"', f"max_batch_size: {hi}",
             "input [", "  {", f'    name: "{spec["name"]}"', f"    data_type: {_TYPES[spec['dtype']]}",
             f"    dims: [ {dims} ]", "  }", "]", "output ["]
    outs = []
    for o in SCORE_OUTPUTS:
        if o == "stage_cos":
            outs.append(f'  {{\n    name: "{o}"\n    data_type: TYPE_FP32\n    dims: [ {m} ]\n  }}')
        else:  # (N,): one value per item
            outs.append(f'  {{\n    name: "{o}"\n    data_type: TYPE_FP32\n    dims: [ 1 ]\n'
                        f"    reshape: {{ shape: [ ] }}\n  }}")
    lines.append(",\n".join(outs))
    lines.append("]")
    preferred = sorted({b for b in (opt, hi) if b >= 1})
    lines += ["dynamic_batching {", f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
              f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}", "}",
              "instance_group [", "  {", f"    count: {int(instances)}", f"    kind: {instance_kind}", "  }", "]"]
    params = {"lfdn_edge.score_type": header["score_type"], "lfdn_edge.precision": header["precision"],
              "lfdn_edge.stage_dims": ",".join(str(d) for d in header["layout"]["stage_dims"]),
              "lfdn_edge.min_batch": str(lo)}
    if header.get("threshold") is not None:
        params["lfdn_edge.threshold"] = repr(float(header["threshold"]))
    for k, v in params.items():
        lines += ["parameters {", f'  key: "{k}"', f'  value: {{ string_value: "{v}" }}', "}"]
    return "\n".join(lines) + "\n"


def export_triton_repository(ckpt: Checkpoint | str | os.PathLike, repository: str | os.PathLike,
                             backend: str = "onnx", name: str = defaults.SERVE_MODEL_NAME,
                             precision: str | None = None, batch: tuple[int, int, int] = defaults.ENGINE_BATCH,
                             include_backbone: bool = False, image_size: tuple[int, int] | None = None,
                             score_type: str | None = None, instances: int = 1, instance_kind: str | None = None,
                             max_queue_delay_us: int = defaults.SERVE_MAX_QUEUE_DELAY_US, version: int = 1,
                             opset: int = defaults.ONNX_OPSET, log: Callable[[str], None] = lambda s: None) -> Path:
    """Write model ``name`` (config.pbtxt + ``version``/model.onnx or model.plan) into ``repository``; returns
    the model folder. ``backend`` onnx (default fp32, instance kind KIND_GPU unless given) or tensorrt (a full
    TensorRT plan for this machine's GPU; default fp16)."""
    if backend not in TRITON_BACKENDS:
        raise ValueError(f"Triton backend must be one of {tuple(TRITON_BACKENDS)}, got {backend!r}")
    instance_kind = instance_kind or "KIND_GPU"
    _check(name, instances, instance_kind, max_queue_delay_us, version)
    repo = Path(repository)
    if repo.exists() and not repo.is_dir():
        raise ValueError(f"model repository {repo} is a file; give a folder")
    ckpt = as_checkpoint(ckpt)
    precision = precision or ("fp16" if backend == "tensorrt" else "fp32")
    platform, filename = TRITON_BACKENDS[backend]
    kwargs = {"trt_flavor": "tensorrt"} if backend == "tensorrt" else {}  # Triton runs full TensorRT plans only
    art = build_artifact(ckpt, backend, precision, batch, include_backbone, image_size=image_size,
                         score_type=score_type, opset=opset, log=log, **kwargs)
    config = model_config_text(art.header, name, platform, instances, instance_kind, max_queue_delay_us)
    repo.mkdir(parents=True, exist_ok=True)
    final = repo / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.new-", dir=repo))
    old = None
    try:
        (tmp / str(int(version))).mkdir()
        model_file = tmp / str(int(version)) / filename
        model_file.write_bytes(art.payload)
        (tmp / "config.pbtxt").write_text(config)
        for f in (model_file, tmp / "config.pbtxt"):
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=repo))
            os.replace(final, old / name)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    log(f"wrote Triton model {final} ({platform}, {precision}, max_batch_size {art.header['batch']['max']}, "
        f"input {art.header['input']['name']} {art.header['input']['dtype']} {art.header['input']['shape'][1:]})")
    return final
