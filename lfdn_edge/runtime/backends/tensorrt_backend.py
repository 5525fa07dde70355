"""TensorRT backend: deserialise a TensorRT (or TensorRT-RTX) plan and run it on a GPU.

Nothing here constructs a TensorRT object unless a CUDA device is present: full and lean TensorRT Runtime
objects created on a machine without a GPU crash the process instead of raising. The device probe
(:func:`cuda_device_info`) talks to the CUDA driver through ctypes, which fails cleanly without one.

Before deserialising, :func:`check_device_compat` compares the engine header (TensorRT flavor and version,
CUDA major version, GPU compute capability) with this machine and says "rebuild on this device" when they
differ, instead of letting TensorRT fail on a foreign plan.

Device buffers: torch CUDA tensors when torch has CUDA (zero-copy torch in/torch out), else cuda-python
(``cuda.bindings.runtime`` or the older ``cuda.cudart``), else pycuda. UNTESTED in CI (no GPU there); written
against the documented TensorRT 10/11 Python API (set_input_shape, set_tensor_address, execute_async_v3).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from ...artifact.file import EngineError
from ...probes import FLAVORS, cuda_device_info, cuda_runtime_version, gpu_present
from .base import ScoreOutputs, ScoringBackend
from ...errors import DeviceError, UnavailableError

def _major(version: str | None) -> str | None:
    return None if version in (None, "") else str(version).split(".")[0]


def check_device_compat(header: dict, runtime: dict) -> None:
    """Raise EngineError("... rebuild on this device") when a TensorRT engine was built elsewhere.

    ``runtime``: {trt_flavor, tensorrt_version, cuda_version (or None), compute_capability "8.7"}.
    TensorRT plans are tied to the exact TensorRT version and, for full TensorRT, to the GPU's compute
    capability; TensorRT-RTX plans list the compute capabilities they were compiled for (none: its
    portable default, checked by TensorRT-RTX itself).
    """
    src = header.get("_source", "this engine")
    if header.get("backend") != "tensorrt":
        raise EngineError(f"{src} is a {header.get('backend')!r} engine, not a TensorRT engine")
    missing = [k for k in ("trt_flavor", "tensorrt_version") if not header.get(k)]
    if missing:
        raise EngineError(f"{src} header lacks {missing}; rebuild it with tools/build_engine.py on this device")
    built_on = (f"{header['trt_flavor']} {header['tensorrt_version']}, CUDA {header.get('cuda_version')}, "
                f"compute capability {header.get('compute_capability')}")
    here = (f"{runtime.get('trt_flavor')} {runtime.get('tensorrt_version')}, CUDA {runtime.get('cuda_version')}, "
            f"compute capability {runtime.get('compute_capability')}")
    problems = []
    if header["trt_flavor"] != runtime.get("trt_flavor"):
        problems.append(f"built with {header['trt_flavor']}, this machine runs {runtime.get('trt_flavor')}")
    elif str(header["tensorrt_version"]) != str(runtime.get("tensorrt_version")):
        problems.append(f"TensorRT version {header['tensorrt_version']} != {runtime.get('tensorrt_version')}")
    hc, rc = _major(header.get("cuda_version")), _major(runtime.get("cuda_version"))
    if hc and rc and hc != rc:
        problems.append(f"CUDA {header.get('cuda_version')} != {runtime.get('cuda_version')}")
    cc, here_cc = header.get("compute_capability"), runtime.get("compute_capability")
    if isinstance(cc, list):
        if here_cc not in cc:
            problems.append(f"GPU compute capability {here_cc} is not among the engine's targets {cc}")
    elif cc is not None and str(cc) != str(here_cc):
        problems.append(f"GPU compute capability {here_cc} != {cc}")
    if problems:
        raise EngineError(f"{src} was built for another device ({built_on}); here: {here}. "
                          f"{'; '.join(problems)}. Rebuild on this device: python tools/build_engine.py CKPT "
                          "--backend tensorrt")


def import_trt(flavor: str):
    """Import the TensorRT Python module of ``flavor`` ("tensorrt" or "tensorrt-rtx"), with a clear error."""
    if flavor not in FLAVORS:
        raise EngineError(f"unknown TensorRT flavor {flavor!r} in the engine header (expected one of {list(FLAVORS)})")
    try:
        return __import__(FLAVORS[flavor])
    except ImportError as exc:
        hint = ("install TensorRT (JetPack on Jetson; NVIDIA's packages elsewhere)" if flavor == "tensorrt"
                else "pip install tensorrt-rtx-cu13")
        raise ImportError(f"this engine needs the Python module {FLAVORS[flavor]!r} ({flavor}): {hint}") from exc


def _parse_device(device) -> int:
    if device is None:
        return 0
    s = str(device)
    if s == "cuda":
        return 0
    if s.startswith("cuda:") and s[5:].isdigit():
        return int(s[5:])
    if isinstance(device, int):
        return device
    raise ValueError(f"the tensorrt backend runs on a CUDA device ('cuda' or 'cuda:N'), got device={device!r}")


class _TorchBuffers:
    """Inputs/outputs as torch CUDA tensors; the graph runs on torch's current stream."""

    def __init__(self, index: int):
        import torch

        self.torch = torch
        self.device = torch.device("cuda", index)

    def input(self, x, dtype):
        t = self.torch
        tdtype = t.uint8 if dtype == "uint8" else t.float32
        return t.as_tensor(x).to(self.device, tdtype).contiguous()

    def empty(self, shape):
        return self.torch.empty(shape, dtype=self.torch.float32, device=self.device)

    @staticmethod
    def ptr(buf) -> int:
        return int(buf.data_ptr())

    def stream(self) -> int:
        return int(self.torch.cuda.current_stream(self.device).cuda_stream)

    def finish(self, outputs):
        return outputs  # torch tensors on the device; the Scorer copies to host when numpy was given


class _CudaPythonBuffers:
    """Device memory through cuda-python's runtime API; results copied back to numpy."""

    def __init__(self, index: int):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        self.cudart = cudart
        self._check(cudart.cudaSetDevice(index))
        self._stream = self._check(cudart.cudaStreamCreate())
        self._allocs: list[int] = []

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise DeviceError(f"CUDA runtime error {err}")
        return rest[0] if len(rest) == 1 else (rest or None)

    def _alloc(self, nbytes: int) -> int:
        ptr = int(self._check(self.cudart.cudaMalloc(max(int(nbytes), 1))))
        self._allocs.append(ptr)
        return ptr

    def input(self, x, dtype):
        arr = np.ascontiguousarray(np.asarray(x), dtype=np.uint8 if dtype == "uint8" else np.float32)
        ptr = self._alloc(arr.nbytes)
        self._check(self.cudart.cudaMemcpy(ptr, arr.ctypes.data, arr.nbytes,
                                           self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
        return (ptr, arr.shape)

    def empty(self, shape):
        return (self._alloc(int(np.prod(shape)) * 4), tuple(shape))

    @staticmethod
    def ptr(buf) -> int:
        return buf[0]

    def stream(self) -> int:
        return int(self._stream)

    def finish(self, outputs):
        self._check(self.cudart.cudaStreamSynchronize(self._stream))
        host = []
        for ptr, shape in outputs:
            arr = np.empty(shape, dtype=np.float32)
            self._check(self.cudart.cudaMemcpy(arr.ctypes.data, ptr, arr.nbytes,
                                               self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
            host.append(arr)
        for ptr in self._allocs:
            self.cudart.cudaFree(ptr)
        self._allocs = []
        return host


class _PyCudaBuffers(_CudaPythonBuffers):
    """Device memory through pycuda (optional; no PyPI wheels)."""

    def __init__(self, index: int):
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.ctx = cuda.Device(index).retain_primary_context()
        self.ctx.push()
        self._stream_obj = cuda.Stream()
        self._keep = []

    def input(self, x, dtype):
        arr = np.ascontiguousarray(np.asarray(x), dtype=np.uint8 if dtype == "uint8" else np.float32)
        mem = self.cuda.mem_alloc(max(arr.nbytes, 1))
        self.cuda.memcpy_htod(mem, arr)
        self._keep.append(mem)
        return (int(mem), arr.shape)

    def empty(self, shape):
        mem = self.cuda.mem_alloc(max(int(np.prod(shape)) * 4, 1))
        self._keep.append(mem)
        return (int(mem), tuple(shape))

    def stream(self) -> int:
        return self._stream_obj.handle

    def finish(self, outputs):
        self._stream_obj.synchronize()
        host = []
        for ptr, shape in outputs:
            arr = np.empty(shape, dtype=np.float32)
            self.cuda.memcpy_dtoh(arr, ptr)
            host.append(arr)
        self._keep = []
        return host


def _make_buffers(index: int):
    try:
        import torch

        if torch.cuda.is_available():
            return _TorchBuffers(index)
    except ImportError:
        pass
    if importlib.util.find_spec("cuda") is not None:
        try:
            return _CudaPythonBuffers(index)
        except ImportError:
            pass
    if importlib.util.find_spec("pycuda") is not None:
        return _PyCudaBuffers(index)
    raise ImportError("the tensorrt backend needs device buffers: a CUDA build of torch, or cuda-python "
                      "(pip install cuda-python), or pycuda")


def runtime_info(trt, flavor: str, index: int) -> dict:
    dev = cuda_device_info(index)
    return {"trt_flavor": flavor, "tensorrt_version": trt.__version__,
            "cuda_version": cuda_runtime_version(trt), "compute_capability": dev.compute_capability if dev else None}


class TensorRTBackend(ScoringBackend):
    name = "tensorrt"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not any(importlib.util.find_spec(m) is not None for m in FLAVORS.values()):
            return False, "neither tensorrt nor tensorrt_rtx is installed"
        if not gpu_present():
            return False, "no CUDA GPU (driver) found; TensorRT engines run only on a GPU"
        return True, ""

    def __init__(self, artifact, device=None):
        super().__init__(artifact, device)
        index = _parse_device(device)
        if cuda_device_info(index) is None:  # never construct a TensorRT runtime without a GPU: it crashes
            raise UnavailableError(f"no CUDA device {index} here: TensorRT engines run only on a GPU")
        header = dict(self.header, _source=str(artifact.path or "this engine"))
        flavor = header.get("trt_flavor", "tensorrt")
        trt = import_trt(flavor)
        check_device_compat(header, runtime_info(trt, flavor, index))
        self.trt = trt
        self.buffers = _make_buffers(index)
        self.device = f"cuda:{index}"
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(artifact.payload)
        if self.engine is None:
            raise EngineError(f"{header['_source']}: TensorRT could not deserialise the plan (see the TensorRT log "
                              "above); rebuild on this device with tools/build_engine.py")
        self.context = self.engine.create_execution_context()
        spec = self.header.get("input") or {}
        self.input_name = spec.get("name", "features")
        self.input_dtype = spec.get("dtype", "float32")
        self.num_stages = len(self.header["layout"]["stage_dims"])

    def run(self, inputs) -> ScoreOutputs:
        b = self.buffers
        x = b.input(inputs, self.input_dtype)
        shape = tuple(x.shape) if hasattr(x, "shape") else tuple(x[1])
        n = shape[0]
        if not self.context.set_input_shape(self.input_name, shape):
            raise ValueError(f"TensorRT rejected input shape {shape} (outside the engine's optimisation profile)")
        outs = {"score": b.empty((n,)), "mse": b.empty((n,)), "mfsim": b.empty((n,)),
                "stage_cos": b.empty((n, self.num_stages))}
        self.context.set_tensor_address(self.input_name, b.ptr(x))
        for name, buf in outs.items():
            self.context.set_tensor_address(name, b.ptr(buf))
        if not self.context.execute_async_v3(b.stream()):
            raise DeviceError("TensorRT execution failed (see the TensorRT log)")
        mse, mfsim, cos = b.finish([outs["mse"], outs["mfsim"], outs["stage_cos"]])
        return ScoreOutputs(mse=mse, mfsim=mfsim, stage_cos=cos)

