"""Native backend: runs a native engine artifact through lfdn_edge._C (C++ CPU engine or CUDA engine).

The artifact's payload holds the LFDN weights (FP32 or FP16 storage) with the timestep branch folded into
one bias per block per DDIM step (lfdn_edge.builder.native_payload). Devices:
    "cpu" (default)   _C.CpuEngine: AVX2/FMA kernels when the CPU has them, a std::thread work-claiming team
                      (LFDN_EDGE_NUM_THREADS or all cores). FP16 artifacts keep FP16 weights in memory (half
                      the memory traffic) and compute in FP32. BF16 artifacts (CPUs with AVX512_BF16 only;
                      refused with a RuntimeError elsewhere, no fallback) round the activations to BF16 too
                      and accumulate in FP32 (vdpbf16ps). INT8 artifacts (per-channel INT8 weights) quantize
                      the activations per row at run time and accumulate exactly in INT32 (AVX512-VNNI,
                      AMX-INT8 tiles, AVX-VNNI, NEON dot product; refused where the CPU has none).
    "cuda[:N]"        _C.CudaEngine, when the module was compiled with CUDA: FP16 weights (an FP32 artifact
                      is converted at load; an INT8 artifact keeps its INT8 codes for the INT8 weight-streaming
                      tactics up to 16 rows and an FP16 copy of q x scale elsewhere, activations not
                      quantized), FP32 accumulation, a CUDA tactic per layer key and batch bucket
                      and one CUDA graph per bucket. Inputs may be CUDA tensors (no host copy); outputs are
                      then CUDA tensors.
CPU engines choose a tactic (kernel blocking) per batch bucket and layer at load, verified and timed, and keep
the choice in a tactic cache beside the engine file (lfdn_edge.runtime.tactic_cache; ``tactics="off"`` or
LFDN_EDGE_TACTICS=off: the fixed default blocking; LFDN_EDGE_TACTIC=<name> forces one). CUDA engines do the same
on their device (lfdn_edge.runtime.cuda_tactics, cache <engine>.cuda-tactics.json; "off": cuda.legacy_tile;
compiled and tested against a stand-in only, never run on a GPU yet). ``self.tactics`` is the TacticReport of the
load.
Native engines score feature vectors only (no backbone inside); see lfdn_edge.builder.native_payload.build_native_artifact.
"""

from __future__ import annotations

import os

import numpy as np

from ...artifact.file import EngineError
from ...artifact.native_layout import unpack_spec
from ...native_core import load_native, native_available
from ..tactic_cache import configure_cpu_engine
from .base import ScoreOutputs, ScoringBackend

THREADS_ENV = "LFDN_EDGE_NUM_THREADS"


def _threads_from_env() -> int:
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return 0
    try:
        n = int(raw)
    except ValueError as exc:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {raw!r}") from exc
    if n < 1:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {raw!r}")
    return n


class NativeBackend(ScoringBackend):
    name = "native"

    def __init__(self, artifact, device: str | None = None, threads: int | None = None,
                 tactics: str | None = None):
        super().__init__(artifact, device)
        h = self.header
        src = str(artifact.path or "engine")
        if h.get("backend") != "native":
            raise EngineError(f"{src}: the native backend runs native payloads, this engine holds a "
                              f"{h.get('backend')!r} payload")
        if h.get("includes_backbone"):
            raise EngineError(f"{src}: native engines do not include the backbone; rebuild without "
                              "--include-backbone and compute features with lfdn_edge.MultiLayerFeatures")
        spec = unpack_spec(h.get("native"), artifact.payload, src)
        max_batch = int(h["batch"]["max"])
        dev = "cpu" if device is None else str(device)
        _C = load_native()
        if dev == "cpu":
            self.device = "cpu"
            self._cuda = None
            self.engine = _C.CpuEngine(spec, max_batch, _threads_from_env() if threads is None else int(threads))
            self.tactics = configure_cpu_engine(self.engine, artifact.path, mode=tactics)
        elif dev == "cuda" or dev.startswith("cuda:"):
            from ...native_core import NativeCudaEngine

            from ..cuda_tactics import configure_cuda_engine

            self._cuda = NativeCudaEngine(spec, max_batch, dev)
            self.device = self._cuda.device
            self.engine = self._cuda
            # a verified tactic per (layer key, batch bucket), cached beside the engine (never run on a GPU yet)
            self.tactics = configure_cuda_engine(self._cuda.engine, artifact.path, mode=tactics,
                                                 scorer=self._cuda)
        else:
            raise ValueError(f"native backend device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        self.num_stages = len(spec["stage_offsets"]) - 1

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not native_available():
            return False, "the native core lfdn_edge._C is not built (pip install -e . with a C++17 compiler and CMake)"
        return True, ""

    def run(self, inputs) -> ScoreOutputs:
        if self._cuda is not None:
            mse, mfsim, cos = self._cuda.score(inputs)
            return ScoreOutputs(mse=mse, mfsim=mfsim, stage_cos=cos)
        try:
            import torch

            if isinstance(inputs, torch.Tensor):
                inputs = inputs.detach().to("cpu", torch.float32).numpy()
        except ImportError:  # pragma: no cover - torch is a dependency, but the CPU engine does not need it
            pass
        out = self.engine.score(np.ascontiguousarray(inputs, dtype=np.float32))
        return ScoreOutputs(mse=out["mse"], mfsim=out["mfsim"], stage_cos=out["stage_cos"])
