"""TensorRT backend: deserialise a TensorRT (or TensorRT-RTX) plan and run it on a GPU.

Nothing here constructs a TensorRT object unless a CUDA device is present: full and lean TensorRT Runtime
objects created on a machine without a GPU crash the process instead of raising. The device probe
(:func:`cuda_device_info`) talks to the CUDA driver through ctypes, which fails cleanly without one.

Before deserialising, :func:`check_device_compat` compares the engine header (TensorRT flavor and version,
CUDA major version, GPU compute capability) with this machine and says "rebuild on this device" when they
differ, instead of letting TensorRT fail on a foreign plan.

At load the engine's I/O tensors (names, modes, dtypes, shapes) are checked against the header, and the
input and output buffers are allocated once, for the profile's max batch, with output sizes read from the
execution context; each run sets the input shape, reads the output shapes from the context and runs on a
dedicated stream (TensorRT's default stream adds synchronisations), ordered after the caller's stream and
before it again when torch is the buffer layer.

Device buffers (the thin layer below): torch CUDA tensors when torch has CUDA (torch in/torch out on the
device), else cuda-python (``cuda.bindings.runtime`` or the older ``cuda.cudart``), else pycuda. A layer that
is missing or fails to start (a CUDA error such as cudaErrorInsufficientDriver from a cuda-python newer than
the driver) falls through to the next, and the error names every reason. Each layer makes its device current
for the duration of a call (``activate``), on whichever thread calls: the TensorRT runtime, engine and
context are created and run on device N for ``device="cuda:N"``; pycuda's context is pushed and popped per
call, never left on the stack.

Tested on a GPU-less machine only with a stand-in TensorRT engine and stand-in buffer modules
(tests/test_tensorrt_runtime.py); never run against real TensorRT or a GPU. Written against the documented
TensorRT 8.6-11 Python API (num_io_tensors, get_tensor_mode/dtype/shape, set_input_shape,
set_tensor_address, get_tensor_shape, execute_async_v3).
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading

import numpy as np

from ...artifact.file import EngineError
from ...errors import DeviceError, UnavailableError
from ...probes import FLAVORS, cuda_device_info, gpu_present, tensorrt_cuda_version
from .base import ScoreOutputs, ScoringBackend

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


# the exported graph's outputs (= lfdn_edge.scoring_graph.SCORE_OUTPUTS, which imports torch: not imported here,
# so that TensorRT engines run without torch through cuda-python or pycuda)
SCORE_OUTPUTS = ("score", "mse", "mfsim", "stage_cos")
_ITEMSIZE = {"float32": 4, "float16": 2, "uint8": 1, "int8": 1, "int32": 4, "int64": 8, "bool": 1}
_TRT_DTYPES = {"FLOAT": "float32", "HALF": "float16", "UINT8": "uint8", "INT8": "int8", "INT32": "int32",
               "INT64": "int64", "BOOL": "bool"}


def _nbytes(shape, dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE[dtype]


class _TorchBuffers:
    """Buffers as torch CUDA tensors on device N, a dedicated torch stream ordered against the caller's."""

    name = "torch"

    def __init__(self, index: int):
        import torch

        self.torch = torch
        self.device = torch.device("cuda", index)
        with torch.cuda.device(self.device):
            self._stream = torch.cuda.Stream(device=self.device)

    def activate(self):
        return self.torch.cuda.device(self.device)

    def alloc(self, nbytes: int):
        return self.torch.empty(max(int(nbytes), 1), dtype=self.torch.uint8, device=self.device)

    @staticmethod
    def ptr(buf) -> int:
        return int(buf.data_ptr())

    def _view(self, buf, shape, dtype: str):
        return buf[:_nbytes(shape, dtype)].view(getattr(self.torch, dtype)).view(tuple(shape))

    def upload(self, x, buf, shape, dtype: str) -> None:
        t = self.torch
        self._view(buf, shape, dtype).copy_(t.as_tensor(x).to(getattr(t, dtype)))  # on the caller's stream

    @property
    def stream(self) -> int:
        return int(self._stream.cuda_stream)

    def before_run(self) -> None:
        self._stream.wait_stream(self.torch.cuda.current_stream(self.device))  # the input copy, earlier work

    def finish(self, outputs):
        """Order the caller's stream after the run and hand out copies (the buffers are reused by the next run)."""
        self.torch.cuda.current_stream(self.device).wait_stream(self._stream)
        return [self._view(buf, shape, dtype).clone() for buf, shape, dtype in outputs]

    def close(self) -> None:
        pass


class _CudaPythonBuffers:
    """Device memory through cuda-python's runtime API on a dedicated non-blocking stream; numpy results."""

    name = "cuda-python"

    def __init__(self, index: int):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        self.cudart = cudart
        self.index = index
        self._allocs: list[int] = []
        with self.activate():
            self._stream = self._check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking))

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise DeviceError(f"CUDA runtime error {err}")
        return rest[0] if len(rest) == 1 else (rest or None)

    @contextlib.contextmanager
    def activate(self):
        """Device N current on this thread for the call; the thread's previous device restored after."""
        prev = self._check(self.cudart.cudaGetDevice())
        self._check(self.cudart.cudaSetDevice(self.index))
        try:
            yield
        finally:
            self.cudart.cudaSetDevice(prev)

    def alloc(self, nbytes: int) -> int:
        ptr = int(self._check(self.cudart.cudaMalloc(max(int(nbytes), 1))))
        self._allocs.append(ptr)
        return ptr

    @staticmethod
    def ptr(buf) -> int:
        return int(buf)

    def upload(self, x, buf, shape, dtype: str) -> None:
        # on the dedicated stream: a synchronous cudaMemcpy from pageable memory may return before the DMA has
        # landed, and the non-blocking stream would not wait for it
        arr = np.ascontiguousarray(np.asarray(x), dtype=dtype)
        self._check(self.cudart.cudaMemcpyAsync(buf, arr.ctypes.data, arr.nbytes,
                                                self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))

    @property
    def stream(self) -> int:
        return int(self._stream)

    def before_run(self) -> None:
        pass  # the upload is on the same stream

    def finish(self, outputs):
        host = []
        for buf, shape, dtype in outputs:
            arr = np.empty(shape, dtype=dtype)
            self._check(self.cudart.cudaMemcpyAsync(arr.ctypes.data, buf, arr.nbytes,
                                                    self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream))
            host.append(arr)
        self._check(self.cudart.cudaStreamSynchronize(self._stream))
        return host

    def close(self) -> None:
        with self.activate():
            for ptr in self._allocs:
                self.cudart.cudaFree(ptr)
            self._allocs = []
            self.cudart.cudaStreamDestroy(self._stream)


class _PyCudaBuffers:
    """Device memory through pycuda (optional; no PyPI wheels). The device's primary context is pushed for each
    call and popped after it, on the calling thread: never left on the context stack (pycuda aborts the process
    at exit when it is), and usable from any thread."""

    name = "pycuda"

    def __init__(self, index: int):
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.ctx = cuda.Device(index).retain_primary_context()
        self._keep: list = []
        with self.activate():
            self._stream = cuda.Stream()

    @contextlib.contextmanager
    def activate(self):
        self.ctx.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def alloc(self, nbytes: int):
        mem = self.cuda.mem_alloc(max(int(nbytes), 1))
        self._keep.append(mem)
        return mem

    @staticmethod
    def ptr(buf) -> int:
        return int(buf)

    def upload(self, x, buf, shape, dtype: str) -> None:
        # synchronous copy on the legacy default stream; pycuda's Stream() is a blocking stream, ordered after it
        self.cuda.memcpy_htod(buf, np.ascontiguousarray(np.asarray(x), dtype=dtype))

    @property
    def stream(self) -> int:
        return int(self._stream.handle)

    def before_run(self) -> None:
        pass

    def finish(self, outputs):
        self._stream.synchronize()
        host = []
        for buf, shape, dtype in outputs:
            arr = np.empty(shape, dtype=dtype)
            self.cuda.memcpy_dtoh(arr, buf)
            host.append(arr)
        return host

    def close(self) -> None:
        with self.activate():
            for mem in self._keep:
                mem.free()
            self._keep = []


def _make_buffers(index: int):
    """The first buffer layer that starts: torch (CUDA build), cuda-python, pycuda. A missing package or a
    CUDA error while starting one (cuda-python newer than the driver: cudaErrorInsufficientDriver) moves on."""
    reasons = []
    try:
        import torch

        if torch.cuda.is_available():
            return _TorchBuffers(index)
        reasons.append("torch has no CUDA here")
    except ImportError:
        reasons.append("torch is not installed")
    for cls in (_CudaPythonBuffers, _PyCudaBuffers):
        try:
            return cls(index)
        except ImportError as exc:
            reasons.append(f"{cls.name} is not installed ({exc})")
        except Exception as exc:  # noqa: BLE001 - a CUDA error starting this layer: try the next, report all
            reasons.append(f"{cls.name} failed: {type(exc).__name__}: {exc}")
    raise UnavailableError("the tensorrt backend has no usable device buffers (" + "; ".join(reasons) + "): use a "
                           "CUDA build of torch, or cuda-python no newer than the driver's CUDA version "
                           "(pip install 'cuda-python==12.*' for a CUDA 12 driver), or pycuda")


def runtime_info(trt, flavor: str, index: int) -> dict:
    dev = cuda_device_info(index)
    return {"trt_flavor": flavor, "tensorrt_version": trt.__version__,
            "cuda_version": tensorrt_cuda_version(trt), "compute_capability": dev.compute_capability if dev else None}


def _dtype_name(trt, dtype) -> str:
    for attr, name in _TRT_DTYPES.items():
        if hasattr(trt.DataType, attr) and dtype == getattr(trt.DataType, attr):
            return name
    return str(dtype)


def engine_io(trt, engine) -> dict:
    """The engine's I/O tensors: name -> {mode "input"/"output", dtype "float32"..., shape [-1, 512]}."""
    io = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        io[name] = {"mode": mode, "dtype": _dtype_name(trt, engine.get_tensor_dtype(name)),
                    "shape": [int(d) for d in engine.get_tensor_shape(name)]}
    return io


def expected_io(header: dict) -> dict:
    """The I/O an lfdn-edge plan must have, from its header: the input spec and score, mse, mfsim (N,),
    stage_cos (N, M), float32, batch axis dynamic."""
    spec = header.get("input") or {"name": "features", "dtype": "float32"}
    m = len(header["layout"]["stage_dims"])
    io = {spec["name"]: {"mode": "input", "dtype": spec["dtype"], "shape": list(spec.get("shape") or [])}}
    for name in SCORE_OUTPUTS:
        io[name] = {"mode": "output", "dtype": "float32", "shape": [-1, m] if name == "stage_cos" else [-1]}
    return io


def check_engine_io(header: dict, io: dict) -> None:
    """Raise EngineError when the plan's I/O tensors differ from what its header says."""
    src = header.get("_source", "this engine")
    want = expected_io(header)
    problems = []
    for name in sorted(set(want) | set(io)):
        w, g = want.get(name), io.get(name)
        if g is None:
            problems.append(f"no {w['mode']} {name!r}")
        elif w is None:
            problems.append(f"unexpected {g['mode']} {name!r}")
        else:
            for key in ("mode", "dtype", "shape"):
                if key == "shape" and not w["shape"]:
                    continue  # a header without the input shape: not checked
                if g[key] != w[key]:
                    problems.append(f"{name!r} {key} {g[key]} (header: {w[key]})")
    if problems:
        raise EngineError(f"{src}: the TensorRT plan's inputs/outputs do not match its header: {'; '.join(problems)}. "
                          "Rebuild it with lfdn-edge build CKPT --backend tensorrt")


class TensorRTBackend(ScoringBackend):
    name = "tensorrt"
    thread_safe = True  # run() takes self._lock around the one execution context

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
        self._lock = threading.Lock()  # one execution context: one run at a time
        spec = self.header.get("input") or {}
        self.input_name = spec.get("name", "features")
        self.input_dtype = spec.get("dtype", "float32")
        self.num_stages = len(self.header["layout"]["stage_dims"])
        with self.buffers.activate():  # runtime, engine, context and buffers all on device N
            self.logger = trt.Logger(trt.Logger.WARNING)
            self.runtime = trt.Runtime(self.logger)
            self.engine = self.runtime.deserialize_cuda_engine(artifact.payload)
            if self.engine is None:
                raise EngineError(f"{header['_source']}: TensorRT could not deserialise the plan (see the TensorRT "
                                  "log above); rebuild on this device with lfdn-edge build CKPT --backend tensorrt")
            self.io = engine_io(trt, self.engine)
            check_engine_io(header, self.io)
            self.context = self.engine.create_execution_context()
            self._allocate(header)

    def _allocate(self, header: dict) -> None:
        """Buffers for the profile's max batch: the input from the header's shape, outputs from the context."""
        tail = [int(d) for d in self.io[self.input_name]["shape"][1:]]
        self.max_batch = int((header.get("batch") or {}).get("max", 1))
        max_shape = (self.max_batch, *tail)
        if not self.context.set_input_shape(self.input_name, max_shape):
            raise EngineError(f"{header['_source']}: TensorRT rejects the header's max batch {max_shape}; rebuild it")
        self._bufs = {self.input_name: self.buffers.alloc(_nbytes(max_shape, self.input_dtype))}
        for name in SCORE_OUTPUTS:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EngineError(f"{header['_source']}: output {name!r} has no size at batch {self.max_batch}: {shape}")
            self._bufs[name] = self.buffers.alloc(_nbytes(shape, self.io[name]["dtype"]))
        for name, buf in self._bufs.items():  # fixed addresses: set once
            if self.context.set_tensor_address(name, self.buffers.ptr(buf)) is False:
                raise DeviceError(f"TensorRT refused the address of {name!r}")

    def run(self, inputs) -> ScoreOutputs:
        shape = tuple(int(d) for d in inputs.shape)
        if shape[0] > self.max_batch:
            raise ValueError(f"batch {shape[0]} is above the engine's max batch {self.max_batch}")
        b = self.buffers
        with self._lock, b.activate():
            if not self.context.set_input_shape(self.input_name, shape):
                raise ValueError(f"TensorRT rejected input shape {shape} (outside the engine's optimisation profile)")
            b.upload(inputs, self._bufs[self.input_name], shape, self.input_dtype)
            wanted = ("mse", "mfsim", "stage_cos")
            outs = [(self._bufs[n], tuple(int(d) for d in self.context.get_tensor_shape(n)), self.io[n]["dtype"])
                    for n in wanted]
            b.before_run()
            if not self.context.execute_async_v3(b.stream):
                raise DeviceError("TensorRT execution failed (see the TensorRT log)")
            mse, mfsim, cos = b.finish(outs)
        return ScoreOutputs(mse=mse, mfsim=mfsim, stage_cos=cos)

    def close(self) -> None:
        """Release the context, engine and buffers now (otherwise at garbage collection)."""
        with self.buffers.activate():
            self.context = self.engine = self.runtime = None
        self.buffers.close()
