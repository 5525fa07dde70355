"""The CUDA sources compile with the older CUDA toolchains a deployment may have (JetPack 5: CUDA 11.4,
JetPack 6: CUDA 12.2-12.6), on this GPU-less machine, without a full CUDA toolkit.

The PyPI "nvcc" wheels (nvidia-cuda-nvcc-cu11 / -cu12) hold ptxas, libnvvm and the crt headers but no nvcc
driver and no front end, so each toolchain is checked the way nvcc itself splits the work:

* device code: every kernel of csrc/cuda/kernels (each template instantiation the launchers use) is
  compiled by that CUDA version's NVRTC (the same EDG front end and NVVM as its nvcc) to PTX for each
  architecture, and the PTX by that version's ptxas to SASS (-v: registers, shared memory, spills);
* host code: the runtime-API sources (cuda_engine.cu, util.cu, score_pass_cuda.cu: no kernel launches) are
  compiled by the host C++ compiler against that version's CUDA runtime headers, which is where a runtime
  API that does not exist yet (the 3-argument cudaGraphInstantiate before 12.0) fails.

The system nvcc (13.x) builds everything with CMake in tests/test_native_build.py; this file adds CUDA 11.8
and 12.2. Toolchain trees (wheels unpacked, see .ci/run) are looked up under $LFDN_EDGE_CUDA_TOOLCHAINS
(default ~/.cache/lfdn-edge/cuda-toolchains)/cu11 and /cu12. A missing one is a skip, unless it is named in
$LFDN_EDGE_REQUIRE_TOOLCHAINS (comma-separated, set by CI): then it is a failure.
$LFDN_EDGE_TOOLCHAIN_REPORT, when set, is a file that gets one JSON line per toolchain and architecture
(compile seconds, ptxas resource usage per kernel).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLCHAIN_DIR = Path(os.environ.get("LFDN_EDGE_CUDA_TOOLCHAINS",
                                    Path.home() / ".cache" / "lfdn-edge" / "cuda-toolchains"))
REQUIRED = {t.strip() for t in os.environ.get("LFDN_EDGE_REQUIRE_TOOLCHAINS", "").split(",") if t.strip()}

# toolchain -> (CUDART_VERSION of its headers, SASS architectures, PTX architecture); the lists are what
# csrc/cmake/cuda_archs.cmake gives for that version (checked in test_native_build.py).
TOOLCHAINS = {
    "cu11": (11080, ["72", "75", "80", "86", "87", "89", "90"], "90"),
    "cu12": (12020, ["72", "75", "80", "86", "87", "89", "90"], "90"),
}

# Every kernel instantiation the launchers launch (and cuda::load_*_kernels loads), the CUDA tactics'
# kernels (csrc/cuda/kernels/tactics.cuh) included: test_every_tactic_kernel_is_in_the_matrix checks that
# this list names every kernel csrc/cuda/tactics_launch.cu loads, so a tactic cannot drop out of the matrix.
TACTIC_KERNELS = [
    "&lfdn::cuda::tac::prologue_kernel",
    "&lfdn::cuda::tac::epilogue_kernel",
    "&lfdn::cuda::tac::stream_kernel<8, 4>",
    "&lfdn::cuda::tac::stream_kernel<32, 2>",
    "&lfdn::cuda::tac::i8_stream_kernel<8, 4>",
    "&lfdn::cuda::tac::i8_stream_kernel<16, 4>",
    "&lfdn::cuda::tac::mma_kernel<64, false>",
    "&lfdn::cuda::tac::mma_kernel<32, false>",
    "&lfdn::cuda::tac::mma_kernel<32, true>",
    "&lfdn::cuda::tac::reference_kernel",
]
KERNELS = [
    "&lfdn::cuda::noise_kernel",
    "&lfdn::cuda::fused_linear_kernel<16, 64, 16, 16>",
    "&lfdn::cuda::fused_linear_kernel<64, 64, 32, 32>",
    "&lfdn::cuda::ddim_score_kernel",
    *TACTIC_KERNELS,
]
KERNEL_HEADERS = ("noise.cuh", "fused_linear.cuh", "ddim_score.cuh", "tactics.cuh")
# the tactic table of csrc/cuda/tactics_launch.cu (stable names: tactic caches store them)
TACTICS = ["cuda.legacy_tile", "cuda.stream_r8", "cuda.stream_r32", "cuda.mma_m64", "cuda.mma_m32",
           "cuda.mma_splitk_m32", "cuda.cublaslt", "cuda.i8_stream_r8", "cuda.i8_stream_r16", "cuda.test_no_bias"]
# instructions that only exist from sm_80 (cp.async, mma.sync m16n8k16 with FP16 inputs) must appear in the
# sm_80+ PTX of the kernels that use them and never below (guarded by __CUDA_ARCH__; `applies` is false there)
SM80_ONLY = {"mma_kernel": ["mma.sync.aligned.m16n8k16", "cp.async.cg.shared.global", "ldmatrix.sync.aligned"],
             "stream_kernel": ["cp.async.cg.shared.global", "cp.async.wait_group"],
             "i8_stream_kernel": ["cp.async.cg.shared.global", "cp.async.wait_group"]}
HOST_SOURCES = ["csrc/cuda/cuda_engine.cu", "csrc/cuda/util.cu", "csrc/cuda/score_pass_cuda.cu",
                "csrc/cuda/tactic_select.cu", "csrc/cuda/cublaslt.cu"]

# NVRTC 11.x/12.x has no C++ standard library headers; the kernels need a few declarations from three.
# int64_t is `long` as in glibc on x86-64 and AArch64 (so kernel signatures mangle as nvcc's do).
SHIM = {
    "cstdint": """#pragma once
typedef signed char int8_t; typedef short int16_t; typedef int int32_t; typedef long int64_t;
typedef unsigned char uint8_t; typedef unsigned short uint16_t; typedef unsigned int uint32_t;
typedef unsigned long uint64_t; typedef unsigned long uintptr_t; typedef long intptr_t;
namespace std { using ::int8_t; using ::int16_t; using ::int32_t; using ::int64_t; using ::uint8_t;
using ::uint16_t; using ::uint32_t; using ::uint64_t; using ::uintptr_t; using ::intptr_t; }
""",
    "cstddef": """#pragma once
typedef decltype(sizeof(0)) size_t; typedef long ptrdiff_t;
namespace std { using ::size_t; using ::ptrdiff_t; }
""",
    "cmath": """#pragma once
namespace std { using ::sqrt; using ::log; using ::cos; using ::fabs; }
""",
}


def _toolchain(name: str) -> Path:
    root = TOOLCHAIN_DIR / name / "nvidia"
    need = [root / "cuda_nvcc" / "bin" / "ptxas", root / "cuda_runtime" / "include" / "cuda_runtime.h",
            root / "cuda_nvrtc" / "lib"]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        msg = f"CUDA toolchain {name} not installed under {TOOLCHAIN_DIR / name} (missing {missing[0]}); see .ci/run"
        if name in REQUIRED:
            pytest.fail(msg + f" -- required by LFDN_EDGE_REQUIRE_TOOLCHAINS={os.environ['LFDN_EDGE_REQUIRE_TOOLCHAINS']}")
        pytest.skip(msg)
    return root


def _includes(root: Path) -> list[Path]:
    inc = [ROOT / "csrc" / "include", ROOT / "csrc", root / "cuda_runtime" / "include", root / "cuda_nvcc" / "include"]
    if (root / "cuda_cccl" / "include").exists():  # CUDA 12 headers include <nv/target> from CCCL
        inc.append(root / "cuda_cccl" / "include")
    return inc


def _report(record: dict) -> None:
    path = os.environ.get("LFDN_EDGE_TOOLCHAIN_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


class _Nvrtc:
    def __init__(self, lib_dir: Path):
        libs = sorted(p for p in lib_dir.glob("libnvrtc.so*") if "alt" not in p.name)
        assert libs, f"no libnvrtc.so in {lib_dir}"
        for builtins in lib_dir.glob("libnvrtc-builtins.so*"):  # libnvrtc dlopens it by soname
            if "alt" not in builtins.name:
                ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
        self.lib = ctypes.CDLL(str(libs[0]))
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._ok(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = (major.value, minor.value)

    def _ok(self, rc: int, what: str, log: str = "") -> None:
        if rc != 0:
            raise AssertionError(f"{what}: {self.lib.nvrtcGetErrorString(rc).decode()}\n{log}")

    def compile_ptx(self, src: str, options: list[str], names: list[str]) -> tuple[str, dict[str, str]]:
        prog = ctypes.c_void_p()
        self._ok(self.lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"lfdn_kernels.cu", 0, None, None),
                 "nvrtcCreateProgram")
        try:
            for n in names:
                self._ok(self.lib.nvrtcAddNameExpression(prog, n.encode()), "nvrtcAddNameExpression " + n)
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            rc = self.lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            self.lib.nvrtcGetProgramLog(prog, buf)
            log = buf.value.decode(errors="replace")
            self._ok(rc, "nvrtcCompileProgram " + " ".join(options), log)
            self.lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
            ptx = ctypes.create_string_buffer(size.value)
            self._ok(self.lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
            lowered = {}
            for n in names:
                out = ctypes.c_char_p()
                self._ok(self.lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(out)), "nvrtcGetLoweredName")
                lowered[n] = out.value.decode()
            return ptx.value.decode(), lowered
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _ptxas_usage(text: str) -> dict[str, dict]:
    """ptxas -v output -> {mangled kernel: {registers, smem_bytes, spill_stores, spill_loads, stack}}."""
    usage, cur = {}, None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            cur = m.group(1)
            usage[cur] = {}
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            usage[cur].update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            usage[cur]["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            usage[cur]["smem_bytes"] = int(s.group(1)) if s else 0
    return usage


def _ptx_entry(ptx: str, lowered: str) -> str:
    """The PTX text of one .entry (up to the next .entry / .func or the end)."""
    i = ptx.index(f".entry {lowered}(")
    nxt = [j for j in (ptx.find(".entry ", i + 1), ptx.find(".func ", i + 1)) if j > 0]
    return ptx[i:min(nxt)] if nxt else ptx[i:]


def test_every_tactic_kernel_is_in_the_matrix():
    """The kernels tactics_launch.cu loads (cudaFuncGetAttributes in load_tactic_kernels) are exactly the
    tactic kernels compiled above, and its table lists exactly TACTICS: a kernel or tactic added, renamed or
    dropped there fails here (runs without any toolchain)."""
    src = (ROOT / "csrc" / "cuda" / "tactics_launch.cu").read_text()
    body = src[src.index("int load_tactic_kernels()"):]
    body = body[:body.index("\n}\n")]
    loaded = {"&lfdn::cuda::" + re.sub(r"\s+", " ", m).replace(" >", ">")
              for m in re.findall(r"cudaFuncGetAttributes\(&attr, ((?:tac::)?\w+(?:<[^>]*>)?)\)", body)}
    norm = {re.sub(r",\s*", ", ", k) for k in loaded}
    assert norm == set(TACTIC_KERNELS), (sorted(norm), TACTIC_KERNELS)
    table = src[src.index("const LinearTactic kTactics[]"):]
    table = table[:table.index("};")]
    assert re.findall(r'\{"(cuda\.[a-z0-9_]+)"', table) == TACTICS
    for n in TACTIC_KERNELS:  # each instantiation the launchers use is loaded before any capture
        base = n.split("::")[-1].split("<")[0]
        assert base in src


@pytest.mark.parametrize("name", sorted(TOOLCHAINS))
def test_host_sources_compile_against_the_toolchains_runtime_headers(name):
    root = _toolchain(name)
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    cudart, _, _ = TOOLCHAINS[name]
    header = (root / "cuda_runtime" / "include" / "cuda_runtime_api.h").read_text(errors="replace")
    assert re.search(rf"#define CUDART_VERSION\s+{cudart}\b", header), f"{name}: not the expected CUDA {cudart}"
    inc = [f"-I{p}" for p in _includes(root)]
    for src in HOST_SOURCES:
        t0 = time.perf_counter()
        proc = subprocess.run([cxx, "-std=c++17", "-x", "c++", "-c", "-o", os.devnull, "-DLFDN_WITH_CUDA=1",
                               "-Wall", *inc, str(ROOT / src)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{src} with CUDA {cudart} headers:\n{proc.stderr[-4000:]}"
        _report({"toolchain": name, "cudart": cudart, "host_source": src, "seconds": round(time.perf_counter() - t0, 2)})


@pytest.mark.parametrize("name", sorted(TOOLCHAINS))
def test_every_kernel_compiles_for_every_architecture(name, tmp_path):
    root = _toolchain(name)
    cudart, sass, ptx_arch = TOOLCHAINS[name]
    nvrtc = _Nvrtc(root / "cuda_nvrtc" / "lib")
    assert nvrtc.version == (cudart // 1000, cudart % 1000 // 10), f"{name}: NVRTC {nvrtc.version}"
    ptxas = root / "cuda_nvcc" / "bin" / "ptxas"
    if not os.access(ptxas, os.X_OK):
        ptxas.chmod(0o755)
    shim = tmp_path / "shim"
    shim.mkdir()
    for fname, text in SHIM.items():
        (shim / fname).write_text(text)
    src = "".join(f'#include "cuda/kernels/{h}"\n' for h in KERNEL_HEADERS)
    # -default-device: NVRTC refuses host functions; the shared headers declare a few (never called here)
    base = ["-std=c++17", "-default-device", f"-I{shim}", *[f"-I{p}" for p in _includes(root)]]
    for arch in sass:  # SASS: NVRTC -> PTX -> ptxas, as nvcc does (cicc -> ptxas)
        t0 = time.perf_counter()
        ptx, lowered = nvrtc.compile_ptx(src, [*base, f"--gpu-architecture=compute_{arch}"], KERNELS)
        t_ptx = time.perf_counter() - t0
        for n, low in lowered.items():
            assert f".entry {low}(" in ptx, f"{name} compute_{arch}: no PTX entry for {n}"
        for kernel, instrs in SM80_ONLY.items():
            for n, low in lowered.items():
                if n.split("::")[-1].split("<")[0] != kernel:  # (stream_kernel is not i8_stream_kernel)
                    continue
                body = _ptx_entry(ptx, low)
                for ins in instrs:
                    assert (ins in body) == (int(arch) >= 80), \
                        f"{name} compute_{arch} {n}: {ins} {'missing' if int(arch) >= 80 else 'present below sm_80'}"
                # below sm_80 mma_kernel is __trap() only (what lfdn/cuda_arch.h keeps from being offered, even
                # when such PTX is JIT-compiled on an sm_80+ GPU); stream_kernel has a real pre-sm_80 path
                assert ("trap;" in body) == (kernel == "mma_kernel" and int(arch) < 80), \
                    f"{name} compute_{arch} {n}: trap {'missing' if int(arch) < 80 else 'present'}"
        ptx_file = tmp_path / f"k_{arch}.ptx"
        ptx_file.write_text(ptx)
        t1 = time.perf_counter()
        proc = subprocess.run([str(ptxas), f"-arch=sm_{arch}", "-v", "-O3", "-o", str(tmp_path / f"k_{arch}.cubin"),
                               str(ptx_file)], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{name} ptxas sm_{arch}:\n{proc.stderr[-4000:]}"
        assert (tmp_path / f"k_{arch}.cubin").stat().st_size > 0
        usage = _ptxas_usage(proc.stdout + proc.stderr)
        for n, low in lowered.items():
            assert low in usage and "registers" in usage[low], f"{name} sm_{arch}: ptxas did not report {n}"
        _report({"toolchain": name, "cudart": cudart, "arch": f"sm_{arch}", "nvrtc_seconds": round(t_ptx, 2),
                 "ptxas_seconds": round(time.perf_counter() - t1, 2),
                 "kernels": {n.lstrip("&"): usage[lowered[n]] for n in KERNELS}})
    # PTX of the newest architecture (what the driver JIT-compiles on newer GPUs): NVRTC only
    t0 = time.perf_counter()
    ptx, lowered = nvrtc.compile_ptx(src, [*base, f"--gpu-architecture=compute_{ptx_arch}"], KERNELS)
    assert f".target sm_{ptx_arch}" in ptx
    for n, low in lowered.items():
        assert f".entry {low}(" in ptx, f"{name} compute_{ptx_arch}: no PTX entry for {n}"
    _report({"toolchain": name, "cudart": cudart, "arch": f"compute_{ptx_arch}",
             "nvrtc_seconds": round(time.perf_counter() - t0, 2)})
