"""ONNX export of the scoring graph (:mod:`lfdn_edge.scoring_graph`), with a dynamic batch axis.

The exported model takes ``features`` (N, C) float32, or ``images`` (N, H, W, 3) uint8 for graphs that include
the backbone, and returns score, mse, mfsim (N,) and stage_cos (N, M) in float32. It records what it is in its
metadata_props (lfdn-edge version, precision, score type, stage sizes, score settings) and passes
onnx.checker. This is the build side: the onnx engine payload and the input of the TensorRT builder.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import tempfile
import warnings
from pathlib import Path

import torch

from .._atomic import atomic_write
from .._version import __version__
from ..checkpoint import Checkpoint
from ..scoring_graph import FEATURES_INPUT, IMAGES_INPUT, SCORE_OUTPUTS, as_checkpoint, build_graph, example_input
from .. import defaults

DEFAULT_OPSET = defaults.ONNX_OPSET


def onnx_bytes(ckpt: Checkpoint | str | os.PathLike, include_backbone: bool = False, precision: str = "fp32",
               opset: int = DEFAULT_OPSET, score_type: str = defaults.SCORE_TYPE, image_size=None) -> bytes:
    """Export the scoring graph to an in-memory ONNX model with a dynamic batch axis."""
    if int(opset) < 17:
        raise ValueError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    if importlib.util.find_spec("onnx") is None:
        raise ImportError("ONNX export needs the onnx package: pip install onnx (or pip install 'lfdn-edge[onnx]')")
    ckpt = as_checkpoint(ckpt)
    graph = build_graph(ckpt, include_backbone, precision, score_type, image_size)
    name = IMAGES_INPUT if include_backbone else FEATURES_INPUT
    dynamic = {name: {0: "batch"}, **{o: {0: "batch"} for o in SCORE_OUTPUTS}}
    with tempfile.TemporaryDirectory(prefix="lfdn-onnx-") as tmp:
        path = Path(tmp) / "graph.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants: intended
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
            warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
            torch.onnx.export(graph, (example_input(graph),), str(path), input_names=[name],
                              output_names=list(SCORE_OUTPUTS), dynamic_axes=dynamic, opset_version=int(opset),
                              do_constant_folding=True, **_legacy_exporter_kwargs())
        data = path.read_bytes()
    return _add_metadata(data, ckpt, include_backbone, precision, score_type)


def _legacy_exporter_kwargs() -> dict:
    """``dynamo=False`` (the TorchScript-based exporter this graph is written for) where torch.onnx.export has
    the keyword (torch >= 2.5; later versions default to the dynamo exporter); nothing for older torch (the
    torch builds NVIDIA ships for JetPack 6 can be older), where the TorchScript exporter is the only one."""
    try:
        params = inspect.signature(torch.onnx.export).parameters
    except (TypeError, ValueError):  # no introspectable signature: assume a current torch
        return {"dynamo": False}
    return {"dynamo": False} if "dynamo" in params else {}


def _add_metadata(data: bytes, ckpt: Checkpoint, include_backbone: bool, precision: str, score_type: str) -> bytes:
    """Record what the model is in its metadata_props and check the model with onnx.checker."""
    import onnx

    model = onnx.load_from_string(data)
    sc = ckpt.score_config
    meta = {"lfdn_edge_version": __version__, "precision": precision, "score_type": score_type,
            "includes_backbone": str(bool(include_backbone)).lower(),
            "stage_dims": ",".join(str(d) for d in ckpt.layout.stage_dims),
            "score": f"t={sc.t},steps={sc.steps},eta={sc.eta},seed={sc.seed},convention={sc.convention}"}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name = "lfdn-edge"
    model.producer_version = __version__
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_onnx(ckpt: Checkpoint | str | os.PathLike, path: str | os.PathLike, include_backbone: bool = False,
                precision: str = "fp32", opset: int = DEFAULT_OPSET, score_type: str = defaults.SCORE_TYPE,
                image_size=None) -> Path:
    """Write the scoring graph as ONNX to ``path`` (atomically). Input ``features`` (N, C) float32, or ``images``
    (N, H, W, 3) uint8 with ``include_backbone``; outputs score, mse, mfsim (N,) and stage_cos (N, M), float32."""
    data = onnx_bytes(ckpt, include_backbone, precision, opset, score_type, image_size)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))
