"""A stand-in for full TensorRT, for the tests of the builder's branches that need it (no real TensorRT or GPU here).

``fake_full_tensorrt`` installs a module ``tensorrt`` whose Builder/Runtime record their construction and then
raise SystemError (what must never be constructed without a GPU), and makes the builder's probes report full
TensorRT (plus TensorRT-RTX if ``rtx``) and a GPU if ``gpu``.
"""

from __future__ import annotations

import sys
import types


def fake_full_tensorrt(monkeypatch, version: str = "10.3.0.30", gpu: bool = True, rtx: bool = False,
                       compute_capability: str = "8.7", driver: str = "12.6") -> list:
    import lfdn_edge.builder.tensorrt_builder as tb
    from lfdn_edge.probes import CudaDevice

    constructed = []

    class Builder:
        def __init__(self, *a, **k):
            constructed.append("Builder")
            raise SystemError("full TensorRT builder constructed")

    class ILogger:
        def __init__(self, *a, **k):
            pass

    fake = types.ModuleType("tensorrt")
    fake.__version__ = version
    fake.Builder, fake.ILogger, fake.Runtime = Builder, ILogger, Builder
    fake.BuilderFlag = types.SimpleNamespace(FP16=1)
    fake.NetworkDefinitionCreationFlag = types.SimpleNamespace()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    real_installed = tb.module_installed
    installed = {"tensorrt": True, "tensorrt_rtx": rtx}
    monkeypatch.setattr(tb, "module_installed", lambda m: installed.get(m, real_installed(m)))
    monkeypatch.setattr(tb, "gpu_present", lambda: gpu)
    monkeypatch.setattr(tb, "cuda_device_info",
                        lambda index=0: CudaDevice(0, "fake", compute_capability, driver) if gpu else None)
    return constructed
