"""The PTX of the CUDA 11.8 and 12.2 NVRTC path (the toolchains of tests/test_cuda_toolchains.py: JetPack-era
compilers) run by the PTX interpreter: every entry loads (an instruction the interpreter lacks fails the load,
naming it), and the tactics, the fallback paths and a whole score pass give the same verified results as with
nvcc 13's PTX. Skipped without the toolchains unless CI requires them (LFDN_EDGE_REQUIRE_TOOLCHAINS)."""

from __future__ import annotations

import pytest

from ptxsim_project import SM75, SOURCES, Gpu, need_capture
from test_cuda_toolchains import KERNEL_HEADERS, KERNELS, SHIM, _includes, _Nvrtc, _toolchain
from test_ptxsim_kernels import check_tactic, small_spec, tactic_case, whole_pass_case  # noqa: F401 (fixture)
from test_cuda_int8_ptxsim import check as i8_check

_CACHE: dict = {}


def nvrtc_ptx(name: str, arch: str, tmp_path_factory) -> str:
    key = (name, arch)
    if key not in _CACHE:
        root = _toolchain(name)
        nvrtc = _Nvrtc(root / "cuda_nvrtc" / "lib")
        shim = tmp_path_factory.mktemp(f"shim-{name}")
        for fname, text in SHIM.items():
            (shim / fname).write_text(text, encoding="utf-8")
        src = "".join(f'#include "cuda/kernels/{h}"\n' for h in KERNEL_HEADERS)
        opts = ["-std=c++17", "-default-device", f"-I{shim}", *[f"-I{p}" for p in _includes(root)],
                f"--gpu-architecture={arch}"]
        _CACHE[key] = nvrtc.compile_ptx(src, opts, KERNELS)[0]
    return _CACHE[key]


@pytest.mark.parametrize("name", ["cu11", "cu12"])
def test_nvrtc_ptx_tactics_and_whole_pass(name, tmp_path_factory, small_spec):  # noqa: F811
    need_capture()
    ptx = nvrtc_ptx(name, "compute_80", tmp_path_factory)
    gpu = Gpu("compute_80", ptx={k: ptx for k in SOURCES}, label=f"nvrtc {name}")
    for tactic, rows in (("cuda.stream_r8", 5), ("cuda.stream_r32", 33), ("cuda.mma_m64", 65), ("cuda.mma_m32", 33),
                         ("cuda.mma_splitk_m32", 65), ("cuda.legacy_tile", 5), ("cuda.cublaslt", 1)):
        tactic_case(gpu, tactic, rows)
    for tactic, rows in (("cuda.i8_stream_r8", 5), ("cuda.i8_stream_r16", 16)):  # INT8 weights (the blob's codes)
        assert i8_check(gpu, tactic, rows, 100, 70, "gn", "in_place", seed=rows) <= 1.0
    whole_pass_case(gpu, *small_spec, {"inp": "cuda.stream_r8", "fc1": "cuda.mma_m32", "fc2": "cuda.mma_splitk_m32",
                                       "out": None})


@pytest.mark.parametrize("name", ["cu11", "cu12"])
def test_nvrtc_ptx_sm75_fallbacks(name, tmp_path_factory):
    need_capture()
    ptx = nvrtc_ptx(name, "compute_75", tmp_path_factory)
    gpu = Gpu("compute_75", ptx={k: ptx for k in SOURCES}, label=f"nvrtc {name}")
    for tactic in ("cuda.stream_r8", "cuda.legacy_tile"):
        assert check_tactic(gpu, tactic, 5, 100, 70, "gn", "in_place", device=SM75) <= 1.0
    assert i8_check(gpu, "cuda.i8_stream_r16", 5, 100, 70, "gn", "in_place", device=SM75) <= 1.0
