"""The tensorrt backend's run side on a GPU-less machine: a stand-in TensorRT module (engine, context) and
stand-ins for the thin buffer layer (torch streams, cuda-python, pycuda). Nothing here constructs a real
TensorRT runtime (that crashes without a GPU) or touches a GPU; what these tests show is the backend's own
logic: which device is current when TensorRT objects are made and run, what is allocated when, how output
sizes are read, the engine I/O check, stream ordering, the buffer-layer fallthrough and pycuda's context stack.
"""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest

import lfdn_edge.runtime.backends.tensorrt_backend as tb
from lfdn_edge.artifact.file import EngineArtifact, EngineError
from lfdn_edge.errors import DeviceError, UnavailableError
from lfdn_edge.probes import CudaDevice, cuda_major_from_dist_name, tensorrt_cuda_version

STAGES = [16, 24, 40, 112, 320]
M = len(STAGES)
C = 512
CURRENT = {"device": None}  # the device the fake buffer layer has made current


# ---------------------------------------------------------------- stand-in TensorRT (engine, context)
class FakeEngine:
    def __init__(self, trt, io):
        self.trt, self._io = trt, io  # [(name, mode, dtype, shape)]
        self.created_on = CURRENT["device"]

    @property
    def num_io_tensors(self):
        return len(self._io)

    def get_tensor_name(self, i):
        return self._io[i][0]

    def _get(self, name, k):
        return next(t[k] for t in self._io if t[0] == name)

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.INPUT if self._get(name, 1) == "input" else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return self._get(name, 2)

    def get_tensor_shape(self, name):
        return tuple(self._get(name, 3))

    def create_execution_context(self):
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine):
        self.engine, self.n = engine, None
        self.created_on = CURRENT["device"]
        self.addresses, self.runs = {}, []

    def set_input_shape(self, name, shape):
        if not 1 <= shape[0] <= 32 or tuple(shape[1:]) != (C,):
            return False
        self.n = shape[0]
        return True

    def get_tensor_shape(self, name):
        return (self.n, M) if name == "stage_cos" else (self.n,)

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream):
        mem = BUFFERS[-1].mem
        x = np.frombuffer(mem[self.addresses["features"]], np.float32)[: self.n * C].reshape(self.n, C)
        for name, value in (("score", x.sum(1)), ("mse", x.mean(1)), ("mfsim", -x.mean(1)),
                            ("stage_cos", np.repeat(x[:, :1], M, 1))):
            buf = np.frombuffer(mem[self.addresses[name]], np.float32)
            buf[: value.size] = value.ravel()
        self.runs.append({"device": CURRENT["device"], "stream": stream, "n": self.n,
                          "ordered": BUFFERS[-1].ordered_before_run})
        return True


def fake_trt(io=None):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0.30"
    trt.DataType = types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF", UINT8="UINT8")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    io = io or default_io()

    class Logger:
        WARNING = 2

        def __init__(self, *a):
            pass

    class Runtime:
        made_on = []

        def __init__(self, logger):
            Runtime.made_on.append(CURRENT["device"])

        def deserialize_cuda_engine(self, payload):
            return FakeEngine(trt, io)

    trt.Logger, trt.Runtime = Logger, Runtime
    return trt


def default_io():
    return [("features", "input", "FLOAT", [-1, C]), ("score", "output", "FLOAT", [-1]),
            ("mse", "output", "FLOAT", [-1]), ("mfsim", "output", "FLOAT", [-1]),
            ("stage_cos", "output", "FLOAT", [-1, M])]


# ---------------------------------------------------------------- stand-in buffer layer (host memory)
BUFFERS = []


class FakeBuffers:
    name = "fake"

    def __init__(self, index):
        self.index, self.mem, self.allocs = index, {}, []
        self.ordered_before_run = False
        BUFFERS.append(self)

    def activate(self):
        outer = self

        class Ctx:
            def __enter__(self):
                self.prev = CURRENT["device"]
                CURRENT["device"] = outer.index

            def __exit__(self, *exc):
                CURRENT["device"] = self.prev

        return Ctx()

    def alloc(self, nbytes):
        ptr = 1000 + len(self.allocs)
        self.mem[ptr] = bytearray(nbytes)
        self.allocs.append(nbytes)
        return ptr

    @staticmethod
    def ptr(buf):
        return buf

    def upload(self, x, buf, shape, dtype):
        arr = np.ascontiguousarray(x, dtype=dtype).ravel()
        np.frombuffer(self.mem[buf], dtype)[: arr.size] = arr
        self.ordered_before_run = False

    stream = 77  # a dedicated stream, not the default (0)

    def before_run(self):
        self.ordered_before_run = True

    def finish(self, outputs):
        return [np.frombuffer(self.mem[b], d)[: int(np.prod(s))].reshape(s).copy() for b, s, d in outputs]

    def close(self):
        self.mem.clear()


def _header(**over):
    h = {"backend": "tensorrt", "trt_flavor": "tensorrt", "tensorrt_version": "10.3.0.30", "cuda_version": None,
         "compute_capability": "8.7", "precision": "fp16", "batch": {"min": 1, "opt": 8, "max": 32},
         "input": {"name": "features", "dtype": "float32", "shape": [-1, C]}, "layout": {"stage_dims": STAGES}}
    h.update(over)
    return h


@pytest.fixture
def fake_runtime(monkeypatch):
    """Backend wiring with the stand-ins: a GPU index 0..1 "exists", tensorrt is the fake module."""
    BUFFERS.clear()
    CURRENT["device"] = None

    def install(io=None):
        trt = fake_trt(io)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    monkeypatch.setattr(tb, "cuda_device_info", lambda i=0: CudaDevice(i, "fake", "8.7", "12.6") if i < 2 else None)
    monkeypatch.setattr(tb, "_make_buffers", FakeBuffers)
    return install


def test_runtime_engine_and_runs_are_on_the_requested_device(fake_runtime):
    """device="cuda:1": the TensorRT runtime, engine, context and every run are made/run with device 1 current
    (not device 0 while the buffers live on device 1); the caller's current device is left as it was."""
    trt = fake_runtime()
    be = tb.TensorRTBackend(EngineArtifact(_header(), b"plan", None), device="cuda:1")
    assert trt.Runtime.made_on == [1] and be.engine.created_on == 1 and be.context.created_on == 1
    assert CURRENT["device"] is None
    be.run(np.ones((3, C), np.float32))
    assert be.context.runs[-1]["device"] == 1 and CURRENT["device"] is None


def test_buffers_are_allocated_once_for_the_max_batch_and_outputs_sized_from_the_context(fake_runtime):
    fake_runtime()
    be = tb.TensorRTBackend(EngineArtifact(_header(), b"plan", None), device="cuda:0")
    bufs = BUFFERS[-1]
    assert sorted(bufs.allocs) == sorted([32 * C * 4, 32 * 4, 32 * 4, 32 * 4, 32 * M * 4])
    x = np.random.default_rng(0).standard_normal((5, C)).astype(np.float32)
    for n in (5, 3, 32):
        out = be.run(np.resize(x, (n, C)))
        assert out.mse.shape == (n,) and out.stage_cos.shape == (n, M)
    assert len(bufs.allocs) == 5  # nothing allocated per call
    out = be.run(x[:3])
    np.testing.assert_allclose(out.mse, x[:3].mean(1), rtol=1e-6)
    np.testing.assert_allclose(out.stage_cos, np.repeat(x[:3, :1], M, 1))
    run = be.context.runs[-1]
    assert run["stream"] == 77 and run["ordered"] is True  # the dedicated stream, ordered after the caller's
    with pytest.raises(ValueError, match="max batch"):
        be.run(np.zeros((33, C), np.float32))


@pytest.mark.parametrize("change, message", [
    (lambda io: io[:-1], "no output 'stage_cos'"),
    (lambda io: io[:4] + [("stage_cos", "output", "FLOAT", [-1, M - 1])], "'stage_cos' shape"),
    (lambda io: io[:1] + [("score", "output", "HALF", [-1])] + io[2:], "'score' dtype float16"),
    (lambda io: [("images", "input", "UINT8", [-1, 64, 64, 3])] + io[1:], "no input 'features'"),
])
def test_engine_io_is_checked_against_the_header_at_load(fake_runtime, change, message):
    fake_runtime(change(default_io()))
    with pytest.raises(EngineError, match=message):
        tb.TensorRTBackend(EngineArtifact(_header(), b"plan", None), device="cuda:0")


@pytest.mark.parametrize("over, problem", [
    ({"tensorrt_version": "10.0.1.6"}, "TensorRT version 10.0.1.6 != 10.3.0.30"),
    ({"compute_capability": "9.0"}, "GPU compute capability 8.7 != 9.0"),
    ({"compute_capability": ["8.0", "8.6"]}, r"GPU compute capability 8.7 is not among the engine's targets"),
])
def test_a_plan_built_for_another_device_is_refused_before_tensorrt_sees_it(fake_runtime, over, problem):
    """The backend compares the header with this machine (TensorRT version of the module, compute capability
    of device N) before a TensorRT runtime exists: an EngineError saying what differs and "Rebuild on this
    device", instead of handing TensorRT a foreign plan. The stand-in would deserialise anything."""
    trt = fake_runtime()
    with pytest.raises(EngineError, match=problem) as err:
        tb.TensorRTBackend(EngineArtifact(_header(**over), b"plan", None), device="cuda:1")
    assert "Rebuild on this device" in str(err.value)
    assert trt.Runtime.made_on == [] and BUFFERS == []  # refused before any runtime or buffer was made
    tb.TensorRTBackend(EngineArtifact(_header(), b"plan", None), device="cuda:1")  # the matching header loads


# ---------------------------------------------------------------- torch buffer layer: device and streams
class _Stream:
    def __init__(self, name):
        self.name, self.waited = name, []
        self.cuda_stream = 1234 if name == "dedicated" else 0

    def wait_stream(self, other):
        self.waited.append(other.name)


def test_torch_buffers_use_device_n_and_order_the_dedicated_stream_against_the_callers(monkeypatch):
    current = _Stream("caller")
    entered = []

    class Device:
        def __init__(self, d):
            self.d = d

        def __enter__(self):
            entered.append(self.d)

        def __exit__(self, *exc):
            pass

    fake_torch = types.SimpleNamespace(
        device=lambda kind, index: f"{kind}:{index}",
        cuda=types.SimpleNamespace(device=Device, Stream=lambda device: _Stream("dedicated"),
                                   current_stream=lambda device: current))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    b = tb._TorchBuffers(1)
    assert entered == ["cuda:1"]  # the stream is made on device 1
    with b.activate():
        pass
    assert entered == ["cuda:1", "cuda:1"]
    assert b.stream == 1234
    b.before_run()
    assert b._stream.waited == ["caller"]  # the run waits for the caller's work (the input copy)
    assert b.finish([]) == []
    assert current.waited == ["dedicated"]  # and the caller waits for the run


# ---------------------------------------------------------------- cuda-python / pycuda stand-ins
class _Err(int):
    def __str__(self):
        return "cudaError_t.cudaErrorInsufficientDriver" if self else "cudaError_t.cudaSuccess"


def _cuda_python(error: int):
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.cudaStreamNonBlocking = 1
    rt.cudaGetDevice = lambda: (_Err(error), 0)
    rt.cudaSetDevice = lambda i: (_Err(error),)
    rt.cudaStreamCreateWithFlags = lambda f: (_Err(error), 5)
    rt.cudaRuntimeGetVersion = lambda: (_Err(0), 12080)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime, cuda.bindings = rt, bindings
    return {"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": rt}


def _pycuda(stack):
    drv = types.ModuleType("pycuda.driver")

    class Ctx:
        def push(self):
            stack.append(threading.get_ident())

    class Context:
        @staticmethod
        def pop():
            stack.pop()

    class Alloc(int):
        def free(self):
            pass

    drv.init = lambda: None
    drv.Device = lambda i: types.SimpleNamespace(retain_primary_context=lambda: Ctx())
    drv.Context = Context
    drv.Stream = lambda: types.SimpleNamespace(handle=9, synchronize=lambda: None)
    drv.mem_alloc = lambda n: Alloc(4096)
    drv.pushed_during_stream_creation = stack
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = drv
    return {"pycuda": pycuda, "pycuda.driver": drv}


def _no_torch_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_a_cuda_error_in_cuda_python_falls_through_to_pycuda(monkeypatch):
    """cuda-python newer than the driver fails its first call (cudaErrorInsufficientDriver = 35): that is a
    reason to try pycuda, not a crash of the backend; without pycuda the error names both reasons."""
    _no_torch_cuda(monkeypatch)
    stack = []
    for name, mod in {**_cuda_python(35), **_pycuda(stack)}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    with pytest.raises(DeviceError, match="InsufficientDriver"):
        tb._CudaPythonBuffers(0)
    assert isinstance(tb._make_buffers(0), tb._PyCudaBuffers)
    monkeypatch.setitem(sys.modules, "pycuda", None)  # import pycuda -> ImportError
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(UnavailableError) as exc:
        tb._make_buffers(0)
    msg = str(exc.value)
    assert "cuda-python failed: DeviceError: CUDA runtime error cudaError_t.cudaErrorInsufficientDriver" in msg
    assert "pycuda is not installed" in msg and "torch has no CUDA" in msg


def test_working_cuda_python_is_chosen_before_pycuda(monkeypatch):
    _no_torch_cuda(monkeypatch)
    for name, mod in {**_cuda_python(0), **_pycuda([])}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    assert isinstance(tb._make_buffers(0), tb._CudaPythonBuffers)


def test_pycuda_context_is_popped_after_every_call_and_current_on_the_calling_thread(monkeypatch):
    stack = []
    for name, mod in _pycuda(stack).items():
        monkeypatch.setitem(sys.modules, name, mod)
    b = tb._PyCudaBuffers(0)
    assert stack == []  # constructing it left nothing pushed (pycuda aborts at exit otherwise)
    seen = []

    def use():
        with b.activate():
            seen.append(list(stack))

    t = threading.Thread(target=use)
    t.start()
    t.join()
    assert seen == [[t.ident]] and stack == []  # pushed on the thread that calls, popped after
    with pytest.raises(RuntimeError):
        with b.activate():
            raise RuntimeError("a failing run")
    assert stack == []  # popped on errors too
    b.close()
    assert stack == []


# ---------------------------------------------------------------- CUDA version of the header
def test_cuda_version_comes_from_the_tensorrt_wheel_not_cuda_python_or_torch(monkeypatch):
    """An upgraded cuda-python (here reporting CUDA 12.8) or another torch build must not change the CUDA
    version recorded for, and checked against, a TensorRT plan: it is read from the TensorRT wheel's name."""
    assert cuda_major_from_dist_name("tensorrt-cu12-bindings") == "12"
    assert cuda_major_from_dist_name("tensorrt_cu13_libs") == "13"
    assert cuda_major_from_dist_name("tensorrt_rtx_cu13") == "13"
    assert cuda_major_from_dist_name("tensorrt") is None and cuda_major_from_dist_name("tensorrt-bindings") is None
    assert cuda_major_from_dist_name("nvidia-cuda-runtime-cu12") is None
    pytest.importorskip("tensorrt_rtx")
    import tensorrt_rtx

    for name, mod in _cuda_python(0).items():
        monkeypatch.setitem(sys.modules, name, mod)
    assert tensorrt_cuda_version(tensorrt_rtx) == "13"  # tensorrt_rtx_cu13, whatever cuda-python says
    # a module no wheel name describes (JetPack's apt TensorRT): unknown, not cuda-python's 12.8
    assert tensorrt_cuda_version(types.ModuleType("tensorrt")) is None


def test_the_backend_knows_the_exported_outputs_without_importing_torch():
    from lfdn_edge.scoring_graph import SCORE_OUTPUTS

    assert tb.SCORE_OUTPUTS == SCORE_OUTPUTS
    import subprocess

    code = ("import sys; import lfdn_edge.runtime.backends.tensorrt_backend; "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
