"""Which CUDA tactics may be offered on a device: the pure decision of csrc/include/lfdn/cuda_arch.h, from
cudaFuncAttributes.ptxVersion (the virtual architecture the kernel's code was generated from), .binaryVersion
(the architecture of the machine code the device runs: the device's own for PTX JIT-compiled by the driver)
and the device's compute capability -- and what the tensor-core kernels really compile to, which is why
binaryVersion alone is not enough.

The bug this guards against: a build with only compute_75 PTX (CUDAARCHS=75, or 72), JIT-compiled on an
sm_80+ GPU, reports binaryVersion >= 80 while its code was compiled with __CUDA_ARCH__ == 750, where
mma_kernel is nothing but __trap() (a sticky error that kills every later CUDA call of the process).

* the decision table, through the binding (_C.cuda_tactic_arch_support, in every build, CPU-only too;
  skipped when lfdn_edge._C is not built) and through the header alone (a small program compiled with the
  host C++ compiler; skipped without one): no GPU needed;
* the kernels compiled by the system nvcc to PTX for compute_75 and compute_80 (and with the flags CMake
  passes for CUDAARCHS=75): mma_kernel is trap-only below compute_80 and uses cp.async/ldmatrix/mma.sync
  from compute_80 on, stream_kernel has its own pre-sm_80 path, and the header agrees with that for a JIT
  device. Skipped without nvcc, unless "nvcc" is named in $LFDN_EDGE_REQUIRE_TOOLCHAINS (then a failure).
A few seconds in all.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "csrc" / "include" / "lfdn" / "cuda_arch.h"
NVCC = os.environ.get("CUDACXX", "nvcc")
REQUIRED = {t.strip() for t in os.environ.get("LFDN_EDGE_REQUIRE_TOOLCHAINS", "").split(",") if t.strip()}

# (ptx_version, binary_version, compute_capability) -> (mma, stream, legacy_tile): the table of
# csrc/include/lfdn/cuda_arch.h
CASES = [
    ((80, 80, 80), (True, True, True)),     # 80-real SASS on an A100
    ((80, 86, 86), (True, True, True)),     # sm_86 SASS built from compute_80
    ((86, 86, 87), (True, True, True)),     # 86-real SASS on Orin
    ((80, 80, 90), (True, True, True)),
    ((90, 90, 90), (True, True, True)),     # 90-real SASS, or 90-virtual PTX JIT-compiled on an H100
    ((75, 80, 80), (False, True, True)),    # THE BUG: compute_75 PTX only, JIT-compiled on an A100
    ((75, 86, 86), (False, True, True)),
    ((75, 90, 90), (False, True, True)),    # ... on an H100
    ((72, 87, 87), (False, True, True)),    # compute_72 PTX only, JIT-compiled on Orin
    ((75, 75, 75), (False, True, True)),    # 75-real on a T4
    ((72, 72, 72), (False, True, True)),    # 72-real on Xavier
    ((75, 75, 80), (False, True, True)),
    ((70, 70, 70), (False, False, True)),   # sm_70: WMMA yes, not a target of the streaming kernel
    ((61, 61, 61), (False, False, False)),
    ((0, 0, 0), (False, False, False)),     # unknown
    ((0, 80, 80), (False, False, False)),
    ((80, 0, 80), (False, False, False)),
    ((80, 80, 0), (False, False, False)),
    ((0, 0, 90), (False, False, False)),
    ((80, 75, 80), (False, False, False)),  # inconsistent: binary older than the PTX it came from
    ((86, 86, 80), (False, False, False)),  # inconsistent: sm_86 code cannot run on 8.0
    ((-1, 80, 80), (False, False, False)),
]
FAMILIES = ("mma", "stream", "legacy_tile")
GRID_VALUES = (0, 61, 70, 72, 75, 80, 86, 87, 89, 90, 100, 120)


def _check_grid(decide) -> None:
    """Properties over every (ptx, binary, cc) of GRID_VALUES: decide(p, b, c) -> {family: bool}."""
    for p, b, c in itertools.product(GRID_VALUES, repeat=3):
        d = decide(p, b, c)
        where = f"ptx {p} binary {b} cc {c}: {d}"
        if 0 in (p, b, c):
            assert not any(d.values()), "unknown values must not be usable: " + where
        if p < 80:  # mma_kernel compiled with __CUDA_ARCH__ < 800 is __trap(), whatever the device runs it as
            assert not d["mma"], where
        if c < 80 or b < 80:
            assert not d["mma"], where
        if c < 72:
            assert not d["stream"], where
        if d["mma"]:  # a device that runs the tensor-core kernel runs the others too
            assert d["stream"] and d["legacy_tile"], where
        consistent = 0 < p <= b <= c
        assert d["mma"] == (consistent and p >= 80), where
        assert d["stream"] == (consistent and c >= 72), where
        assert d["legacy_tile"] == (consistent and p >= 70), where


# ------------------------------------------------------------------------------------- through the binding
def _binding():
    _C = pytest.importorskip("lfdn_edge._C", reason="native module not built")
    if not hasattr(_C, "cuda_tactic_arch_support"):
        pytest.fail(f"{_C.__file__} has no cuda_tactic_arch_support (csrc/bindings/bind_arch.cpp, in every build): "
                    "it predates it; rebuild the module (pip install -e . or the CMake build in CMakeLists.txt)")
    return _C.cuda_tactic_arch_support


@pytest.mark.parametrize("args,expected", CASES, ids=[f"ptx{p}-bin{b}-cc{c}" for (p, b, c), _ in CASES])
def test_binding_decision_table(args, expected):
    support = _binding()
    got = support(*args)
    assert got == dict(zip(FAMILIES, expected)), f"ptx {args[0]} binary {args[1]} cc {args[2]}"
    assert got == support(ptx_version=args[0], binary_version=args[1], compute_capability=args[2])


def test_binding_grid_properties():
    _check_grid(_binding())


def test_binding_in_every_build():
    """bind_arch.cpp is compiled into every module (not only the CUDA one), registered in module.cpp."""
    cmake = (ROOT / "CMakeLists.txt").read_text()
    sources = cmake[cmake.index("set(_bind_sources"):]
    sources = sources[:sources.index(")")]
    assert "csrc/bindings/bind_arch.cpp" in sources
    module = (ROOT / "csrc" / "bindings" / "module.cpp").read_text()
    body = module[module.index("PYBIND11_MODULE"):]
    assert "bind_arch(m);" in body[:body.index("#if")], "bind_arch must be registered outside any #if"


# ---------------------------------------------------------------------------------- through the header only
_PROGRAM = r"""
#include <cstdio>
#include "lfdn/cuda_arch.h"
int main() {
  int p = 0, b = 0, c = 0;
  while (std::scanf("%d %d %d", &p, &b, &c) == 3) {
    const lfdn::CudaKernelArch a{p, b, c};
    const bool mma = lfdn::tensor_core_tactics_usable(p, b, c), stream = lfdn::stream_tactics_usable(p, b, c),
               legacy = lfdn::legacy_tile_usable(p, b, c);
    if (mma != lfdn::tensor_core_tactics_usable(a) || stream != lfdn::stream_tactics_usable(a) ||
        legacy != lfdn::legacy_tile_usable(a))
      return 3;
    std::printf("%d %d %d %d %d %d\n", p, b, c, int(mma), int(stream), int(legacy));
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def header_decide(tmp_path_factory):
    """decide(p, b, c) -> {family: bool} from lfdn/cuda_arch.h compiled by the host C++ compiler (no CUDA)."""
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    d = tmp_path_factory.mktemp("cuda_arch")
    (d / "arch.cpp").write_text(_PROGRAM)
    exe = d / "arch"
    proc = subprocess.run([cxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'csrc' / 'include'}",
                           "-o", str(exe), str(d / "arch.cpp")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"lfdn/cuda_arch.h does not compile as plain C++:\n{proc.stderr[-4000:]}"

    def decide_many(triples):
        out = subprocess.run([str(exe)], input="".join(f"{p} {b} {c}\n" for p, b, c in triples),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out
        res = {}
        for line in out.stdout.split("\n"):
            if line.strip():
                p, b, c, *flags = (int(v) for v in line.split())
                res[(p, b, c)] = dict(zip(FAMILIES, (bool(f) for f in flags)))
        assert len(res) == len(set(triples))
        return res

    return decide_many


def test_header_decision_table(header_decide):
    got = header_decide([args for args, _ in CASES])
    for args, expected in CASES:
        assert got[args] == dict(zip(FAMILIES, expected)), f"ptx {args[0]} binary {args[1]} cc {args[2]}"


def test_header_grid_properties(header_decide):
    table = header_decide(list(itertools.product(GRID_VALUES, repeat=3)))
    _check_grid(lambda p, b, c: table[(p, b, c)])


def test_header_is_torch_and_cuda_free():
    text = HEADER.read_text()
    includes = re.findall(r"^\s*#\s*include\s*[<\"]([^>\"]+)", text, re.M)
    assert not [i for i in includes if "cuda" in i or "torch" in i or "pybind" in i], includes
    assert "ptxVersion" in text and "binaryVersion" in text and "JIT" in text


# ------------------------------------------------------------------- what the kernels compile to (nvcc 13.x)
# the kernel instantiations the launchers use (csrc/cuda/tactics_launch.cu) and the header above, which the
# launchers include: compiled as CUDA too
_KERNELS_CU = """#include "cuda/kernels/tactics.cuh"
#include "lfdn/cuda_arch.h"
namespace t = lfdn::cuda::tac;
template __global__ void t::mma_kernel<64, false>(t::MmaArgs);
template __global__ void t::mma_kernel<32, false>(t::MmaArgs);
template __global__ void t::mma_kernel<32, true>(t::MmaArgs);
template __global__ void t::stream_kernel<8, 4>(t::StreamArgs);
template __global__ void t::stream_kernel<32, 2>(t::StreamArgs);
"""
SM80_MMA = ("mma.sync.aligned.m16n8k16", "ldmatrix.sync.aligned", "cp.async")


def _nvcc() -> str:
    path = shutil.which(NVCC)
    if path is None:
        msg = f"{NVCC} not found"
        if "nvcc" in REQUIRED:
            pytest.fail(msg + f" -- required by LFDN_EDGE_REQUIRE_TOOLCHAINS={os.environ['LFDN_EDGE_REQUIRE_TOOLCHAINS']}")
        pytest.skip(msg)
    return path


def _entries(ptx: str) -> dict[str, str]:
    """Mangled name -> PTX text of each .entry (up to the next .entry / .func or the end)."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"\.entry\s+([\w$]+)\s*\(", ptx)]
    cuts = sorted([s for s, _ in starts] + [m.start() for m in re.finditer(r"\.func\s", ptx)] + [len(ptx)])
    out = {}
    for s, name in starts:
        out[name] = ptx[s:next(c for c in cuts if c > s)]
    return out


def _ptx_target(ptx: str) -> int:
    return int(re.search(r"^\s*\.target\s+sm_(\d+)", ptx, re.M).group(1))


def _compile(nvcc: str, tmp: Path, args: list[str], ptx_out: Path | None = None) -> str:
    src = tmp / "kernels.cu"
    src.write_text(_KERNELS_CU)
    proc = subprocess.run([nvcc, "-std=c++17", f"-I{ROOT / 'csrc' / 'include'}", f"-I{ROOT / 'csrc'}", *args,
                           str(src)], capture_output=True, text=True, timeout=300, cwd=str(tmp))
    assert proc.returncode == 0, f"nvcc {' '.join(args)}:\n{proc.stderr[-4000:]}"
    return ptx_out.read_text() if ptx_out is not None else ""


def _check_kernels(ptx: str, arch: int) -> None:
    entries = _entries(ptx)
    mma = {n: b for n, b in entries.items() if "mma_kernel" in n}
    stream = {n: b for n, b in entries.items() if "stream_kernel" in n}
    assert len(mma) == 3 and len(stream) == 2, sorted(entries)
    for name, body in mma.items():
        if arch < 80:  # the sm_80 body is compiled out: __trap() is all there is
            assert "trap;" in body, f"compute_{arch} {name}: no trap"
            for ins in SM80_MMA:
                assert ins not in body, f"compute_{arch} {name}: {ins} below sm_80"
        else:
            assert "trap;" not in body, f"compute_{arch} {name}: trap in the sm_80 kernel"
            for ins in SM80_MMA:
                assert ins in body, f"compute_{arch} {name}: {ins} missing"
    for name, body in stream.items():
        assert "trap;" not in body, f"compute_{arch} {name}"
        assert "ld.global.nc" in body, f"compute_{arch} {name}: no loads at all"  # compiled, not emptied
        if arch < 80:  # its own pre-sm_80 path: register double buffering, no cp.async
            assert "cp.async" not in body, f"compute_{arch} {name}: cp.async below sm_80"
        else:
            assert "cp.async.cg.shared.global" in body and "cp.async.wait_group" in body, f"compute_{arch} {name}"


@pytest.mark.parametrize("arch", [75, 80])
def test_tensor_core_kernels_ptx(arch, tmp_path):
    """nvcc -ptx -arch=compute_XY: the PTX a compute_XY-only build embeds (and the driver JIT-compiles)."""
    ptx = _compile(_nvcc(), tmp_path, ["-ptx", f"-arch=compute_{arch}", "-o", "kernels.ptx"], tmp_path / "kernels.ptx")
    assert _ptx_target(ptx) == arch
    _check_kernels(ptx, arch)


def test_cudaarchs_75_build_and_the_decision_agree(tmp_path, header_decide):
    """Compiled as CMake compiles it for CUDAARCHS=75 (SASS sm_75 + PTX compute_75, the PTX being what an
    sm_80+ GPU JIT-compiles): the embedded PTX's mma_kernel is trap-only, and for that PTX JIT-compiled on
    sm_80 .. sm_90 devices (binaryVersion = the device's) the decision refuses the mma tactics and keeps the
    streaming ones; for compute_80 PTX it offers both."""
    nvcc = _nvcc()
    keep = tmp_path / "keep"
    keep.mkdir()
    _compile(nvcc, tmp_path, ["-c", "--generate-code=arch=compute_75,code=[compute_75,sm_75]", "--keep",
                              f"--keep-dir={keep}", "-o", str(tmp_path / "kernels.o")])
    kept = sorted(keep.glob("*.ptx"))
    assert len(kept) == 1, sorted(p.name for p in keep.iterdir())
    assert list(keep.glob("*sm_75*.cubin")), sorted(p.name for p in keep.iterdir())
    ptx75 = kept[0].read_text()
    assert _ptx_target(ptx75) == 75
    _check_kernels(ptx75, 75)
    jit_devices = (80, 86, 87, 89, 90)
    table = header_decide([(ptx_v, cc, cc) for ptx_v in (75, 80) for cc in jit_devices])
    for cc in jit_devices:
        assert table[(75, cc, cc)] == {"mma": False, "stream": True, "legacy_tile": True}, cc
        assert table[(80, cc, cc)] == {"mma": True, "stream": True, "legacy_tile": True}, cc
