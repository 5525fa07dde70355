"""The project's CUDA kernels under the PTX interpreter: PTX of csrc/cuda/*_launch.cu compiled by nvcc (or
given), launches captured from the real C++ launchers (_C._cuda_capture_*, lfdn/cuda_launch.h) and replayed
in order on an interpreted device. cuBLASLt's GEMM is the one call the interpreter cannot run (a closed
library): it is computed here in float64 (a stand-in, stated wherever it is used); its epilogue kernel runs
in the interpreter."""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import pytest

from ptxsim_common import ROOT, ptx_of, ptxsim

_C = pytest.importorskip("lfdn_edge._C", reason="native module not built")

SOURCES = {"tactics": "csrc/cuda/tactics_launch.cu", "fused_linear": "csrc/cuda/fused_linear_launch.cu",
           "ddim": "csrc/cuda/ddim_score_launch.cu", "noise": "csrc/cuda/noise_launch.cu"}
# virtual devices: an sm_90 part running the compute_80 PTX (the H100 of the GPU runs), and an sm_75 one
# running the compute_75 PTX (the fallback paths: no cp.async, no mma.sync)
SM90 = {"cc": 90, "sms": 132, "mma_ptx": 80, "mma_binary": 90}
COUNTER_BYTES = 4 * 4096  # kCounterInts ints at the start of the tactic workspace (csrc/cuda/tactics_internal.h)
SM75 = {"cc": 75, "sms": 40, "mma_ptx": 75, "mma_binary": 75}


def need_capture() -> None:
    if not hasattr(_C, "_cuda_capture_tactic"):
        from ptxsim_common import REQUIRED
        msg = "lfdn_edge._C was built without CUDA: no launch capture to replay"
        if "nvcc" in REQUIRED:
            pytest.fail(msg + " (required: LFDN_EDGE_REQUIRE_TOOLCHAINS has nvcc)")
        pytest.skip(msg)


def module_of(kernel: str) -> str:
    if kernel.startswith("lfdn::cuda::tac::"):
        return "tactics"
    for key, prefix in (("fused_linear", "lfdn::cuda::fused_linear_kernel"), ("ddim", "lfdn::cuda::ddim_score_kernel"),
                        ("noise", "lfdn::cuda::noise_kernel")):
        if kernel.startswith(prefix):
            return key
    raise KeyError(f"no source holds kernel {kernel}")


@functools.lru_cache(maxsize=None)
def parsed(name: str, arch: str, ptx_text: Optional[str] = None):
    text = ptx_text if ptx_text is not None else ptx_of(ROOT / SOURCES[name], arch)
    return ptxsim.parse(text)


_ALL: list = []  # every Gpu of this process (coverage report)


def _write_coverage() -> None:
    """With $LFDN_EDGE_PTX_COVERAGE set: per (source, arch, toolchain, kernel) the static PTX instructions and
    how many ran, merged over every Gpu of the run, as JSON (tools/ptx_coverage.py runs the tests this way)."""
    path = os.environ.get("LFDN_EDGE_PTX_COVERAGE")
    if not path:
        return
    merged: dict = {}
    for gpu in _ALL:
        for name, mod in gpu._mods.items():
            src = gpu.label
            for kernel, prog in mod.programs.items():
                c = prog.coverage()
                key = f"{gpu.arch}|{src}|{kernel}"  # one kernel, whichever module instance loaded it
                m = merged.setdefault(key, {"module": name, "arch": gpu.arch, "ptx": src, "kernel": kernel,
                                            "instructions": c["instructions"], "hit": set(),
                                            "thread_instructions": 0, "opcodes": c["opcodes"],
                                            "opcodes_executed": set()})
                m["lines_not_executed"] = (set(c["lines_not_executed"]) if "lines_not_executed" not in m else
                                           m["lines_not_executed"] & set(c["lines_not_executed"]))
                m["thread_instructions"] += c["thread_instructions"]
                m["opcodes_executed"] |= set(c["opcodes_executed"])
    out = []
    for m in merged.values():
        out.append({"module": m["module"], "arch": m["arch"], "ptx": m["ptx"], "kernel": m["kernel"],
                    "instructions": m["instructions"], "executed": m["instructions"] - len(m["lines_not_executed"]),
                    "thread_instructions": m["thread_instructions"], "opcodes": len(m["opcodes"]),
                    "opcodes_executed": sorted(m["opcodes_executed"]),
                    "opcodes_not_executed": sorted(set(m["opcodes"]) - m["opcodes_executed"]),
                    "lines_not_executed": sorted(m["lines_not_executed"])})
    with open(path, "w", encoding="utf-8") as f:
        json.dump(sorted(out, key=lambda r: (r["ptx"], r["arch"], r["module"], r["kernel"])), f, indent=1)


atexit.register(_write_coverage)


class Gpu:
    """An interpreted device with the project's kernels. ptx: {module name: PTX text} overrides the nvcc
    PTX (mutated sources, the NVRTC PTX of another CUDA version)."""

    def __init__(self, arch: str = "compute_80", ptx: Optional[Dict[str, str]] = None, label: str = "nvcc",
                 **device_options):
        _ALL.append(self)
        self.arch, self.label = arch, label
        self.dev = ptxsim.Device(**device_options)
        self._ptx = ptx or {}
        self._mods: Dict[str, object] = {}
        self.stats: list = []

    def module(self, name: str):
        if name not in self._mods:
            self._mods[name] = self.dev.load(parsed(name, self.arch, self._ptx.get(name)))
        return self._mods[name]

    def run(self, calls: Sequence[dict]) -> None:
        for c in calls:
            if c["kind"] == "kernel":
                mod = self.module(module_of(c["kernel"]))
                self.stats.append(self.dev.launch(mod, c["kernel"], c["grid"], c["block"], c["args"], smem=c["smem"]))
            elif c["kind"] == "memset":
                self.dev.memset(c["ptr"], c["value"], c["bytes"])
            elif c["kind"] == "cublaslt_gemm":
                # stand-in for cuBLASLt (closed library): D (rows, n) = A (rows, kp) FP16 x W (n, kp)^T, FP64 sums
                rows, kp, n = c["rows"], c["kp"], c["n"]
                a = self.dev.read(c["a"], np.float16, rows * kp).reshape(rows, kp).astype(np.float64)
                w = self.dev.read(c["w"], np.float16, n * kp).reshape(n, kp).astype(np.float64)
                self.dev.write(c["d"], (a @ w.T).astype(np.float32))
            else:
                raise ValueError(f"unknown captured call {c['kind']}")


def captured(result: dict) -> list:
    assert result["status"] == 0, f"the launcher returned status {result['status']}"
    return result["calls"]


# ---------------------------------------------------------------------------------------------- problems
class LinearProblem:
    """One fused linear (op 2) problem in interpreted device memory, with its CPU reference."""

    def __init__(self, gpu: Gpu, rows: int, in_dim: int, out_dim: int, prologue: str = "gn", residual: str = "none",
                 seed: int = 0, extreme: bool = False):
        rng = np.random.default_rng(seed)
        self.rows, self.K, self.N, self.prologue, self.residual = rows, in_dim, out_dim, prologue, residual
        x = rng.standard_normal((rows, in_dim)).astype(np.float32)
        if extreme:  # the last row needs the FP16 guard and the GroupNorm rescaling
            x[-1] *= np.float32(2.0 ** 40)
        w = (rng.standard_normal((out_dim, in_dim)) / np.sqrt(in_dim)).astype(np.float16)
        bias = rng.standard_normal(out_dim).astype(np.float32)
        gamma = (1 + 0.1 * rng.standard_normal(in_dim)).astype(np.float32)
        beta = (0.1 * rng.standard_normal(in_dim)).astype(np.float32)
        res = rng.standard_normal((rows, out_dim)).astype(np.float32)
        self.x, self.w, self.bias, self.gamma, self.beta, self.res = x, w, bias, gamma, beta, res
        d = gpu.dev
        packed = _C.cuda_pack_linear(w)
        self.px, self.pw, self.pbias = d.upload(x, "x"), d.upload(packed, "weight"), d.upload(bias, "bias")
        self.pgamma, self.pbeta = d.upload(gamma, "gamma"), d.upload(beta, "beta")
        self.pres = d.upload(res, "residual") if residual == "separate" else 0
        self.pout = d.upload(res, "out") if residual == "in_place" else d.alloc(4 * rows * out_dim, "out",
                                                                                   initialized=False)
        self.ws_bytes = _C.cuda_tactic_workspace_bytes(rows, in_dim, out_dim)
        # The engine zero-fills the whole tactic workspace once (cuda_tactic_workspace_init): the split-K
        # counters must start at 0. Everything after them is marked uninitialised here, so that a kernel that
        # reads activations, scales or partials that no launch of this call wrote is an initcheck finding.
        self.pws = d.alloc(self.ws_bytes, "workspace")
        d.gmem.mark_uninitialized(self.pws + COUNTER_BYTES, self.ws_bytes - COUNTER_BYTES)
        self.gpu = gpu

    def params(self) -> dict:
        return {"x": self.px, "out": self.pout, "weight": self.pw, "bias": self.pbias,
                "residual": self.pout if self.residual == "in_place" else self.pres,
                "gamma": self.pgamma if self.prologue == "gn" else 0, "beta": self.pbeta if self.prologue == "gn" else 0,
                "workspace": self.pws, "workspace_bytes": self.ws_bytes, "rows": self.rows, "in_dim": self.K,
                "out_dim": self.N, "prologue": self.prologue, "gn_eps": 1e-5}

    def output(self) -> np.ndarray:
        return self.gpu.dev.read(self.pout, np.float32, self.rows * self.N).reshape(self.rows, self.N)

    def reference(self):
        res = self.res if self.residual != "none" else None
        g, b = (self.gamma, self.beta) if self.prologue == "gn" else (None, None)
        return _C.fused_linear_reference(self.x, self.w, self.bias, res, g, b, self.prologue, 1e-5)

    def error_ratio(self) -> float:
        """The on-device verification rule (tactic_error_ratio with srel = cuda_tactic_tolerance(K)): <= 1
        passes; inf when the non-finite outputs differ from the reference's."""
        ref, scale = self.reference()
        ratio, _ = _C.tactic_error_ratio(self.output(), ref, scale, 0.0, 0.0, _C.cuda_tactic_tolerance(self.K))
        return ratio


def run_tactic(gpu: Gpu, name: str, prob: LinearProblem, device: dict = SM90) -> dict:
    """Captures the tactic's launches for prob and runs them; the capture result."""
    res = _C._cuda_capture_tactic(name, prob.params(), device)
    if res["status"] == 0:
        gpu.run(res["calls"])
    return res


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


__all__ = ["Gpu", "LinearProblem", "run_tactic", "SM90", "SM75", "need_capture", "captured", "module_of", "Path",
           "digest"]
