"""Access to the compiled module lfdn_edge._C, and the torch side of its CUDA entry points.

The C++/CUDA core is torch-free: on the CPU it takes numpy arrays, on CUDA raw device pointers and stream
handles. This module is where torch tensors become pointers (``data_ptr()``, the current CUDA stream of their
device, and that device's index, which the binding makes current for the call and restores after it), after
their shapes, dtypes, devices and contiguity are checked, so a wrong tensor raises here instead of reaching a
kernel or launching on another GPU.
"""

from __future__ import annotations

import numpy as np

from .errors import UnavailableError


def load_native():
    try:
        from . import _C
    except ImportError as exc:
        raise ImportError("lfdn_edge._C (the native core) is not built: install the package with "
                          "`pip install -e .` (needs a C++17 compiler and CMake)") from exc
    return _C


def native_available() -> bool:
    try:
        load_native()
    except ImportError:
        return False
    return True


def build_info() -> dict:
    """What the native module was compiled with (CPU kernel tables, threading, CUDA version and archs)."""
    return dict(load_native().build_info())


def cuda_usable() -> tuple[bool, str]:
    """(True, "") when the CUDA kernels are compiled in, torch has CUDA and a device is visible."""
    if not native_available():
        return False, "lfdn_edge._C is not built"
    if not build_info().get("cuda"):
        return False, "lfdn_edge._C was built without CUDA (nvcc absent or LFDN_EDGE_CUDA=OFF)"
    import torch

    if not torch.cuda.is_available():
        return False, "torch has no CUDA device (a CPU build of torch, or no GPU/driver)"
    if load_native().cuda_device_count() < 1:
        # the runtime's own reason: no driver, a driver older than the runtime, or no device
        return False, f"the CUDA runtime sees no device: {load_native().cuda_device_error() or 'no reason given'}"
    return True, ""


# ------------------------------------------------------------------------------------------- CUDA (torch)
def _torch():
    import torch

    return torch


def _cuda_device(device) -> "object":
    torch = _torch()
    ok, why = cuda_usable()
    if not ok:
        raise UnavailableError(f"native CUDA kernels unavailable: {why}")
    dev = torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"expected a CUDA device, got {device!r}")
    return torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())


def _stream(dev) -> int:
    return int(_torch().cuda.current_stream(dev).cuda_stream)


def _check(t, name: str, dev, shape=None, dtype=None):
    """t must be a contiguous CUDA tensor on dev (float32 unless dtype) with the given shape (-1 = any)."""
    torch = _torch()
    dtype = dtype or torch.float32
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(t).__name__}")
    if t.device != dev:
        raise ValueError(f"{name} must be on {dev}, got {t.device}")
    if t.dtype != dtype:
        raise TypeError(f"{name} must be {dtype}, got {t.dtype}")
    if shape is not None and (t.dim() != len(shape) or any(s >= 0 and s != d for s, d in zip(shape, t.shape))):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    return t


def _opt_ptr(t, name, dev, shape=None) -> int:
    return 0 if t is None else _check(t, name, dev, shape).data_ptr()


def cuda_noise_inject(z0, seed: int, stream: int, a: float = 0.0, b: float = 1.0, dim: int | None = None,
                      device="cuda"):
    """Op 1 on the GPU: a * z0 + b * eps (z0 (rows, dim) CUDA float32, or None with dim: b * eps (1, dim))."""
    torch = _torch()
    dev = _cuda_device(z0.device if isinstance(z0, torch.Tensor) else device)
    if z0 is not None:
        _check(z0, "z0", dev)
        if z0.dim() != 2:
            raise ValueError(f"z0 must be 2-D (rows, dim), got {tuple(z0.shape)}")
        rows, dim = z0.shape
    elif dim is None or dim < 0:
        raise ValueError("give z0, or dim >= 0 for pure noise")
    else:
        rows = 1
    out = torch.empty((rows, dim), device=dev, dtype=torch.float32)
    load_native().cuda_noise_inject(out.data_ptr(), rows, dim, int(seed), int(stream), float(a), float(b),
                                    z0=0 if z0 is None else z0.data_ptr(), cuda_stream=_stream(dev),
                                    device=dev.index)
    return out


def cuda_pack_linear(weight, device="cuda"):
    """A (out, in) weight (numpy or torch, float32/float16) packed for cuda_fused_linear, on the device."""
    torch = _torch()
    w = weight.detach().cpu().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight)
    packed = load_native().cuda_pack_linear(w)
    return torch.from_numpy(packed.view(np.float16)).to(_cuda_device(device))


def cuda_fused_linear(x, packed_weight, out_dim: int, bias=None, *, prologue: str = "none", gamma=None, beta=None,
                      residual=None, gn_eps: float = 1e-5):
    """Op 2 on the GPU: [residual +] Linear(prologue(x)) + bias with a cuda_pack_linear weight."""
    torch = _torch()
    dev = _cuda_device(x.device)
    _check(x, "x", dev)
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (rows, in_dim), got {tuple(x.shape)}")
    rows, in_dim = x.shape
    kp, np_ = -(-in_dim // 32) * 32, -(-out_dim // 64) * 64
    _check(packed_weight, "packed_weight", dev, (np_, kp), torch.float16)
    out = torch.empty((rows, out_dim), device=dev, dtype=torch.float32)
    load_native().cuda_fused_linear(
        x.data_ptr(), out.data_ptr(), packed_weight.data_ptr(), rows, in_dim, out_dim,
        bias=_opt_ptr(bias, "bias", dev, (out_dim,)), residual=_opt_ptr(residual, "residual", dev, (rows, out_dim)),
        gamma=_opt_ptr(gamma, "gamma", dev, (in_dim,)), beta=_opt_ptr(beta, "beta", dev, (in_dim,)),
        prologue=prologue, gn_eps=float(gn_eps), cuda_stream=_stream(dev), device=dev.index)
    return out


MAX_STAGES = 64  # lfdn/ddim_score.h kMaxStages


def _stage_offsets_list(offsets) -> list:
    """stage_offsets as a list of int, with the binding's rule (csrc/bindings/common.cpp): a numpy array must be
    1-D integer (TypeError) and at most MAX_STAGES + 1 entries (ValueError), both checked before any entry is
    converted, so a huge view (a (2**28, 1) broadcast array, an expanded tensor) is refused at once instead of
    being converted entry by entry for minutes."""
    if isinstance(offsets, np.ndarray) and (offsets.ndim != 1 or offsets.dtype.kind not in "iu"):
        raise TypeError(f"stage_offsets must be a sequence of int, got a {offsets.ndim}-D ndarray of dtype {offsets.dtype}")
    if isinstance(offsets, (str, bytes)) or not hasattr(offsets, "__len__"):
        raise TypeError(f"stage_offsets must be a sequence of int, got {type(offsets).__name__}")
    if len(offsets) > MAX_STAGES + 1:
        raise ValueError(f"stage_offsets has {len(offsets)} entries, at most {MAX_STAGES + 1} ({MAX_STAGES} stages)")
    return [int(o) for o in offsets]


def cuda_ddim_score(x0_hat, *, x=None, coef=None, noise=None, z0=None, stage_offsets=None, cos_eps: float = 1e-8):
    """Op 3 on the GPU; returns a dict like lfdn_edge._C.ddim_score ('x' is a new tensor)."""
    torch = _torch()
    dev = _cuda_device(x0_hat.device)
    _check(x0_hat, "x0_hat", dev)
    if x0_hat.dim() != 2:
        raise ValueError(f"x0_hat must be 2-D (rows, dim), got {tuple(x0_hat.shape)}")
    rows, dim = x0_hat.shape
    res, kw = {}, {}
    if coef is not None or x is not None:
        if coef is None or x is None:
            raise ValueError("a DDIM update needs both x and coef")
        res["x"] = _check(x, "x", dev, (rows, dim)).clone()
        kw.update(x=res["x"].data_ptr(), coef=np.asarray(coef, np.float32),
                  noise=_opt_ptr(noise, "noise", dev, (dim,)))
    if z0 is not None or stage_offsets is not None:
        if z0 is None or stage_offsets is None:
            raise ValueError("scores need both z0 and stage_offsets")
        stage_offsets = _stage_offsets_list(stage_offsets)
        m = len(stage_offsets) - 1
        res.update(mse=torch.empty(rows, device=dev), mfsim=torch.empty(rows, device=dev),
                   stage_cos=torch.empty((rows, m), device=dev))
        kw.update(z0=_check(z0, "z0", dev, (rows, dim)).data_ptr(), stage_offsets=stage_offsets,
                  mse=res["mse"].data_ptr(), mfsim=res["mfsim"].data_ptr(), stage_cos=res["stage_cos"].data_ptr())
    load_native().cuda_ddim_score(x0_hat.data_ptr(), rows, dim, cos_eps=float(cos_eps), cuda_stream=_stream(dev),
                                  device=dev.index, **kw)
    return res


class NativeCudaEngine:
    """lfdn_edge._C.CudaEngine with torch tensors: inputs numpy or torch (any device), outputs CUDA tensors."""

    def __init__(self, spec: dict, max_batch: int, device="cuda"):
        self.device = _cuda_device(device)
        self.engine = load_native().CudaEngine(spec, int(max_batch), int(self.device.index))
        self.in_dim = int(spec["in_dim"])
        self.num_stages = len(spec["stage_offsets"]) - 1

    @property
    def max_batch(self) -> int:
        return self.engine.max_batch

    def score(self, z0, return_recon: bool = False):
        """(mse, mfsim, stage_cos[, recon]) as CUDA tensors, ordered on the current stream."""
        torch = _torch()
        x = torch.as_tensor(z0)
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"z0 must have shape (rows, {self.in_dim}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"z0 must be floating point, got {x.dtype}")
        rows = int(x.shape[0])
        if rows < 1:
            raise ValueError("empty batch")
        if rows > self.max_batch:
            raise ValueError(f"batch of {rows} rows is above the engine's workspace (max batch {self.max_batch})")
        x = x.to(self.device, torch.float32).contiguous()
        mse = torch.empty(rows, device=self.device)
        mfsim = torch.empty(rows, device=self.device)
        cos = torch.empty((rows, self.num_stages), device=self.device)
        recon = torch.empty((rows, self.in_dim), device=self.device) if return_recon else None
        self.engine.score(x.data_ptr(), rows, mse.data_ptr(), mfsim.data_ptr(), cos.data_ptr(),
                          0 if recon is None else recon.data_ptr(), _stream(self.device))
        return (mse, mfsim, cos, recon) if return_recon else (mse, mfsim, cos)
