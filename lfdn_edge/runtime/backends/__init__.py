"""Scoring backends, imported lazily by name (a missing optional package only matters when it is used).

Registry: backend name -> "module:Class". Which backend can run an artifact depends on its payload
(``header["backend"]``): a TensorRT plan needs tensorrt, packed native weights need native, an ONNX model
needs onnxruntime, a torch payload (or a checkpoint given directly to the Scorer) needs torch.
"""

from __future__ import annotations

import importlib

from .base import ScoreOutputs, ScoringBackend

BACKENDS = {
    "torch": "lfdn_edge.runtime.backends.torch_backend:TorchBackend",
    "onnxruntime": "lfdn_edge.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "lfdn_edge.runtime.backends.tensorrt_backend:TensorRTBackend",
    "native": "lfdn_edge.runtime.backends.native_backend:NativeBackend",
}
# artifact payload kind (header["backend"]) -> the runtime backend that executes it
PAYLOAD_RUNTIME = {"tensorrt": "tensorrt", "native": "native", "onnx": "onnxruntime", "torch": "torch"}
ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "trt": "tensorrt"}


def canonical_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {['auto', *BACKENDS]}")
    return name


def load_backend(name: str) -> type[ScoringBackend]:
    """The backend class for ``name``; ImportError saying what is missing if its module cannot be imported."""
    name = canonical_name(name)
    module_name, cls_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ImportError(f"the {name!r} backend is not part of this installation ({module_name} is missing)"
                              ) from exc
        raise ImportError(f"the {name!r} backend cannot be imported: {exc}") from exc
    return getattr(module, cls_name)


__all__ = ["ALIASES", "BACKENDS", "PAYLOAD_RUNTIME", "ScoreOutputs", "ScoringBackend", "canonical_name",
           "load_backend"]
