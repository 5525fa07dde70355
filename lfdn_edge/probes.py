"""Probes of what this machine can run, shared by the build side and the run side (a leaf module).

Nothing here constructs a TensorRT object or initialises a CUDA context: the GPU probe talks to the CUDA
driver through ctypes (cuInit, cuDeviceGet, cuDeviceGetAttribute), which fails cleanly on a machine without
a driver or a GPU, and the package probes only look for modules (``importlib.util.find_spec``).
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
import sys
from dataclasses import dataclass

FLAVORS = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}  # header trt_flavor -> Python module
# compute capability -> TensorRT-RTX ComputeCapability name: the GPUs TensorRT-RTX (1.x) builds for
RTX_COMPUTE_CAPABILITIES = {"7.5": "SM75", "8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120",
                            "12.1": "SM121"}
_CU_ATTR_CC_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
_CU_ATTR_CC_MINOR = 76


@dataclass(frozen=True)
class CudaDevice:
    index: int
    name: str
    compute_capability: str  # "8.7"
    driver_version: str      # CUDA version the driver supports, "12.6"


def _libcuda():
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def cuda_device_info(index: int = 0) -> CudaDevice | None:
    """The CUDA device ``index`` as the driver reports it, or None where there is no driver or no device.

    Uses the driver API through ctypes (cuInit, cuDeviceGet, cuDeviceGetAttribute): safe on GPU-less
    machines, needs no Python CUDA package.
    """
    lib = _libcuda()
    if lib is None:
        return None
    try:
        if lib.cuInit(0) != 0:
            return None
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or not 0 <= index < count.value:
            return None
        dev = ctypes.c_int(0)
        if lib.cuDeviceGet(ctypes.byref(dev), ctypes.c_int(index)) != 0:
            return None
        major, minor, drv = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        lib.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, dev)
        lib.cuDriverGetVersion(ctypes.byref(drv))
        buf = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(buf, ctypes.c_int(256), dev)
    except (AttributeError, OSError):
        return None
    return CudaDevice(index, buf.value.decode(errors="replace"), f"{major.value}.{minor.value}",
                      f"{drv.value // 1000}.{(drv.value % 1000) // 10}")


def gpu_present() -> bool:
    return cuda_device_info(0) is not None


def cuda_major_from_dist_name(name: str) -> str | None:
    """The CUDA major version in a TensorRT wheel's name: "tensorrt-cu12-bindings" -> "12",
    "tensorrt_rtx_cu13" -> "13"; None for names that do not carry one ("tensorrt", "tensorrt-bindings")."""
    m = re.fullmatch(r"tensorrt(?:-rtx)?-cu(\d+)(?:-(?:libs|bindings))?", name.lower().replace("_", "-"))
    return m.group(1) if m else None


def _dists_of(top: str) -> list[str]:
    """The names of the installed distributions that provide the top-level module ``top``."""
    import importlib.metadata as md

    if hasattr(md, "packages_distributions"):  # Python >= 3.10
        return list(md.packages_distributions().get(top, []))
    names = []
    for dist in md.distributions():  # Python 3.9
        if any(str(f).split("/", 1)[0] == top for f in (dist.files or [])):
            names.append(dist.metadata["Name"] or "")
    return names


def tensorrt_cuda_version(trt_module) -> str | None:
    """The CUDA major version the given TensorRT module was built for ("12", "13"), or None where its
    installation does not say.

    Read from the name of the wheel that provides the module (tensorrt-cu12-bindings, tensorrt_rtx_cu13, ...).
    Deliberately not cuda-python's or torch's CUDA version: those are separate packages that can be upgraded
    without touching TensorRT, and a plan is only tied to the TensorRT build it came from. JetPack's TensorRT
    (apt packages) and TensorRT 8.x wheels carry no CUDA version in their names: None, and the engine check
    then relies on the exact TensorRT version, which fixes its CUDA build on those platforms.
    """
    top = getattr(trt_module, "__name__", str(trt_module)).split(".", 1)[0]
    try:
        majors = {m for m in (cuda_major_from_dist_name(n) for n in _dists_of(top)) if m}
    except Exception:  # noqa: BLE001 - broken metadata: unknown, not a failure
        return None
    return majors.pop() if len(majors) == 1 else None


def module_installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def tensorrt_usable() -> tuple[bool, str]:
    """Whether a TensorRT engine can be built and run here: a TensorRT module and a CUDA GPU it supports
    (TensorRT-RTX alone does not run on every GPU: not on Jetson Orin's sm_87 or Hopper's sm_90, say)."""
    full, rtx = module_installed(FLAVORS["tensorrt"]), module_installed(FLAVORS["tensorrt-rtx"])
    if not (full or rtx):
        return False, "TensorRT is not installed (Python module tensorrt or tensorrt_rtx)"
    dev = cuda_device_info(0)
    if dev is None:
        return False, "no CUDA GPU found"
    if not full and dev.compute_capability not in RTX_COMPUTE_CAPABILITIES:
        return False, (f"only TensorRT-RTX is installed and it does not support this GPU ({dev.name}, compute "
                       f"capability {dev.compute_capability}; it supports {', '.join(RTX_COMPUTE_CAPABILITIES)}): "
                       "install full TensorRT (JetPack on Jetson)")
    return True, ""


def onnx_usable() -> tuple[bool, str]:
    """Whether ONNX engines can be exported and run here (onnx and onnxruntime installed)."""
    missing = [m for m in ("onnx", "onnxruntime") if not module_installed(m)]
    if missing:
        return False, f"{' and '.join(missing)} not installed (pip install onnx onnxruntime)"
    return True, ""


def native_usable() -> tuple[bool, str]:
    """Whether the native core lfdn_edge._C is built (the native backend then runs on the CPU at least)."""
    from .native_core import native_available

    if not native_available():
        return False, "the native core lfdn_edge._C is not built (pip install -e . with a C++17 compiler and CMake)"
    return True, ""
