"""ONNX Runtime backend: runs the exported scoring graph (an artifact built with backend "onnx").

Device None or "cpu": CPUExecutionProvider. "cuda" / "cuda:N": CUDAExecutionProvider (onnxruntime-gpu), an
error if this onnxruntime lacks it. Inputs go through host memory (numpy); torch tensors are copied.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from ...artifact.file import EngineError
from .base import ScoreOutputs, ScoringBackend
from ...errors import UnavailableError


def _providers(device, available: list[str]) -> list:
    if device is None or str(device) == "cpu":
        return ["CPUExecutionProvider"]
    s = str(device)
    if s == "cuda" or (s.startswith("cuda:") and s[5:].isdigit()):
        if "CUDAExecutionProvider" not in available:
            raise UnavailableError(f"device {device!r}: this onnxruntime has no CUDAExecutionProvider (available: "
                               f"{available}); install onnxruntime-gpu or use device='cpu'")
        index = int(s[5:]) if ":" in s else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise ValueError(f"onnxruntime device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


class OnnxRuntimeBackend(ScoringBackend):
    name = "onnxruntime"
    thread_safe = True  # concurrent run() calls are safe (see runtime/scorer.py, Threads)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed (pip install onnxruntime)"
        return True, ""

    def __init__(self, artifact, device=None, threads: int | None = None):
        super().__init__(artifact, device)
        import onnxruntime as ort

        if self.header.get("backend") != "onnx":
            raise EngineError(f"onnxruntime runs ONNX payloads, this engine holds a {self.header.get('backend')!r} "
                              "payload")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(artifact.payload, sess_options=opts,
                                                providers=_providers(device, ort.get_available_providers()))
        except Exception as exc:  # onnxruntime raises its own exception types for invalid models
            raise EngineError(f"{artifact.path or 'engine'}: onnxruntime cannot load the ONNX payload: {exc}") from exc
        self.device = str(device) if device is not None else "cpu"
        self.input_name = self.session.get_inputs()[0].name
        self.input_dtype = np.uint8 if self.header.get("includes_backbone") else np.float32
        self.output_names = [o.name for o in self.session.get_outputs()]
        missing = {"mse", "mfsim", "stage_cos"} - set(self.output_names)
        if missing:
            raise EngineError(f"the ONNX payload lacks outputs {sorted(missing)}; rebuild the engine")

    def run(self, inputs) -> ScoreOutputs:
        if hasattr(inputs, "detach"):  # torch tensor
            inputs = inputs.detach().cpu().numpy()
        x = np.ascontiguousarray(inputs, dtype=self.input_dtype)
        out = dict(zip(self.output_names, self.session.run(None, {self.input_name: x})))
        return ScoreOutputs(mse=out["mse"], mfsim=out["mfsim"], stage_cos=out["stage_cos"])
