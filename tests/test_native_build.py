"""The native core builds in both configurations CI needs, from the source tree, in temporary directories:

* CPU-only (-DLFDN_EDGE_CUDA=OFF, as on a machine without nvcc): the module builds, imports, reports no
  CUDA, and is compiled with portable flags (no -march; only the AVX2 kernel file gets -mavx2/-mfma/-mf16c).
* CUDA (nvcc present): the CUDA kernels and the module build for every default architecture of that nvcc
  (csrc/cmake/cuda_archs.cmake: sm_72 where supported, 75, 80, 86, 87, 89, 90 + PTX); the module imports on
  a machine without a GPU and says why it sees no device instead of crashing. The default architecture
  table is checked for every CUDA version it distinguishes, and $CUDAARCHS overrides it.
* tools/gpu_check.sh --dry-run: every step of the GPU check that needs no GPU.
Skipped with a reason when cmake, a compiler, pybind11 or nvcc is missing. About two minutes on 2 cores.
(CUDA 11.8 and 12.2 are checked in tests/test_cuda_toolchains.py.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JOBS = str(max(1, min(4, os.cpu_count() or 1)))
NVCC = os.environ.get("CUDACXX", "nvcc")
_CUDA_11_8_UP = ["75-real", "80-real", "86-real", "87-real", "89-real", "90-real", "90-virtual"]
# nvcc version -> default CMAKE_CUDA_ARCHITECTURES (sm_72 Xavier until CUDA 12; sm_89/90 from 11.8)
DEFAULT_ARCHS = {
    "11.2": [],  # too old: refused
    "11.4.3": ["72-real", "75-real", "80-real", "86-real", "87-real", "87-virtual"],
    "11.8": ["72-real", *_CUDA_11_8_UP],
    "12.2.140": ["72-real", *_CUDA_11_8_UP],
    "12.9": ["72-real", *_CUDA_11_8_UP],
    "13.0.88": _CUDA_11_8_UP,
    "13.5": _CUDA_11_8_UP,
}

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")


def _pybind11_dir() -> str:
    pybind11 = pytest.importorskip("pybind11", reason="pybind11 not installed")
    return pybind11.get_cmake_dir()


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def _configure(build: Path, *defs: str):
    return _run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", *defs])


def _import_info(so_dir: Path) -> dict:
    """build_info() of the module built in so_dir, imported in a fresh interpreter (not lfdn_edge's copy)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import _C; info = _C.build_info(); "
            "info['has_cuda_engine'] = hasattr(_C, 'CudaEngine'); "
            "info['cuda_devices'] = _C.cuda_device_count() if info['cuda'] else None; "
            "info['cuda_device_error'] = _C.cuda_device_error() if info['cuda'] else None; "
            "print(json.dumps(info))")
    out = _run([sys.executable, "-c", code, str(so_dir)], cwd=str(so_dir))
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cpu_only_build_is_portable_and_imports(tmp_path):
    build = tmp_path / "cpu"
    cfg = _configure(build, "-DLFDN_EDGE_CUDA=OFF", "-DLFDN_EDGE_PYTHON=ON", f"-Dpybind11_DIR={_pybind11_dir()}",
                     f"-DPython_EXECUTABLE={sys.executable}")
    assert "lfdn-edge: CUDA" not in cfg.stdout
    _run(["cmake", "--build", str(build), "-j", JOBS])
    so = next(build.glob("_C*"))
    mod_dir = tmp_path / "mod"
    mod_dir.mkdir()
    shutil.copy(so, mod_dir)
    info = _import_info(mod_dir)
    assert info["cuda"] is False and info["cuda_archs"] == [] and not info["has_cuda_engine"]
    assert info["cpu"] is True and "scalar" in info["cpu_kernels"]

    commands = json.loads((build / "compile_commands.json").read_text())
    for c in commands:
        cmd = c.get("command", " ".join(c.get("arguments", [])))
        assert "-march" not in cmd, f"non-portable flag in {c['file']}"
        # ISA flags only on the kernel file of that ISA (AVX2 flags also on the AVX-512 file, a superset)
        if "-mavx512bf16" in cmd:
            assert c["file"].endswith("kernels_avx512bf16.cpp"), c["file"]
        elif "-mavx512vnni" in cmd:
            assert c["file"].endswith("kernels_avx512vnni.cpp"), c["file"]
        elif "-mavxvnni" in cmd:
            assert c["file"].endswith("kernels_avxvnni.cpp"), c["file"]
        elif "-mamx" in cmd:
            assert c["file"].endswith("kernels_avx512amx.cpp"), c["file"]
        elif "-mavx512" in cmd:
            assert c["file"].endswith("kernels_avx512.cpp"), c["file"]
        elif "-mavx2" in cmd:
            assert c["file"].endswith("kernels_avx2.cpp"), c["file"]
    # Each ISA object may export only its own entry points (named <isa>_...), and no weak symbol: an
    # inline/template function emitted there could be picked by the linker for other files and run
    # AVX2/AVX-512 code on a CPU without it.
    for isa in ("avx2", "avx512", "avx512bf16", "avx512vnni", "avxvnni", "avx512amx"):
        obj = list(build.rglob(f"kernels_{isa}.cpp.o"))
        if obj and shutil.which("nm"):
            lines = [ln.split(" ", 2) for ln in _run(["nm", "-C", "--defined-only", "--extern-only",
                                                      str(obj[0])]).stdout.split("\n") if ln.strip()]
            assert lines, f"kernels_{isa}.cpp.o exports nothing"
            for _, kind, name in lines:
                if name.startswith("DW.ref."):  # the C++ exception-handling personality reference, not code
                    continue
                assert kind not in ("W", "V", "u"), f"weak symbol {name} in kernels_{isa}.cpp.o"
                assert name.startswith(f"lfdn::cpu::{isa}_"), f"kernels_{isa}.cpp.o exports {name}"


def test_shared_isa_loops_are_included_with_internal_linkage():
    """csrc/cpu/kernels_isa.inl (the loops the SIMD tables share) is text for one ISA file's anonymous namespace:
    each table includes it there, and it includes nothing and uses no standard-library template, so no function
    of it can be emitted as a shared (weak) symbol that the linker might pick for another ISA's callers. (The
    symbol check above sees only what the compiler emitted; an inline function it inlined everywhere would pass
    it even outside the namespace.)"""
    inl = (ROOT / "csrc" / "cpu" / "kernels_isa.inl").read_text()
    code = "\n".join(ln for ln in inl.splitlines() if not ln.lstrip().startswith("//"))
    assert "#include" not in code and "std::" not in code and "#pragma once" not in code
    for isa in ("avx2", "avx512", "neon"):
        src = (ROOT / "csrc" / "cpu" / f"kernels_{isa}.cpp").read_text()
        inc = src.index('#include "cpu/kernels_isa.inl"')
        opened, closed = src.rfind("namespace {", 0, inc), src.find("}  // namespace", inc)
        assert opened >= 0 and closed > inc, f"kernels_{isa}.cpp includes kernels_isa.inl outside its anonymous namespace"
        between = "\n".join(ln.split("//")[0] for ln in src[opened + len("namespace {"):inc].splitlines())
        assert between.count("{") == between.count("}"), f"kernels_{isa}.cpp closes its anonymous namespace first"


def _nvcc_version() -> str:
    out = _run([shutil.which(NVCC), "--version"]).stdout
    return re.search(r"release \d+\.\d+, V(\d+\.\d+\.\d+)", out).group(1)


def _expected_archs(version: str) -> list[str]:
    major, minor = (int(v) for v in version.split(".")[:2])
    if major >= 13:
        return _CUDA_11_8_UP
    if (major, minor) >= (11, 8):
        return ["72-real", *_CUDA_11_8_UP]
    return DEFAULT_ARCHS["11.4.3"] if (major, minor) >= (11, 4) else []


@pytest.mark.parametrize("version", sorted(DEFAULT_ARCHS))
def test_default_cuda_architectures_follow_the_nvcc_version(version):
    proc = _run(["cmake", f"-DLFDN_CUDA_VERSION={version}", "-P", str(ROOT / "csrc" / "cmake" / "cuda_archs.cmake")])
    got = [a for a in proc.stderr.strip().split(";") if a]
    assert got == DEFAULT_ARCHS[version] == _expected_archs(version)


def test_bad_cuda_option_fails_configure_clearly(tmp_path):
    proc = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path / "bad"), "-DLFDN_EDGE_CUDA=maybe"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "LFDN_EDGE_CUDA must be AUTO, ON or OFF" in proc.stderr


def _gpu_present() -> bool:
    """An NVIDIA GPU with a working driver, by nvidia-smi (independent of the module under test)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
    return proc.returncode == 0 and "GPU " in proc.stdout


@pytest.mark.skipif(shutil.which(NVCC) is None, reason="nvcc not found")
def test_cuda_build_all_default_architectures(tmp_path):
    build = tmp_path / "cuda"
    env = {k: v for k, v in os.environ.items() if k != "CUDAARCHS"}
    archs = _expected_archs(_nvcc_version())
    assert archs, f"nvcc {_nvcc_version()} is older than CUDA 11.4"
    _run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
          "-DLFDN_EDGE_CUDA=ON", "-DLFDN_EDGE_PYTHON=ON", f"-Dpybind11_DIR={_pybind11_dir()}",
          f"-DPython_EXECUTABLE={sys.executable}"], env=env)
    cache = (build / "CMakeCache.txt").read_text()
    assert "CMAKE_CUDA_ARCHITECTURES:STRING=" + ";".join(archs) + "\n" in cache
    _run(["cmake", "--build", str(build), "-j", JOBS])
    commands = json.loads((build / "compile_commands.json").read_text())
    cu = [c.get("command", " ".join(c.get("arguments", []))) for c in commands if c["file"].endswith(".cu")]
    assert len(cu) >= 6
    for cmd in cu:
        for a in archs:
            num, kind = a.split("-")
            code = f"sm_{num}" if kind == "real" else f"compute_{num}"  # SASS, or PTX for newer GPUs
            assert f"arch=compute_{num},code=[{code}]" in cmd, (a, cmd)
        assert "sm_75" in cmd  # T4
    mod_dir = tmp_path / "mod"
    mod_dir.mkdir()
    shutil.copy(next(build.glob("_C*")), mod_dir)
    info = _import_info(mod_dir)
    assert info["cuda"] is True and info["cuda_archs"] == archs and info["has_cuda_engine"]
    if _gpu_present():
        assert info["cuda_devices"] >= 1 and info["cuda_device_error"] == ""
    else:  # reported with the reason, not a crash and not a bare "no device"
        assert info["cuda_devices"] == 0
        why = info["cuda_device_error"]
        assert why.startswith("cudaGetDeviceCount: cudaError"), why
        assert ("no CUDA driver is installed" in why or "the driver supports CUDA" in why
                or "sees no CUDA device" in why), why


@pytest.mark.skipif(shutil.which(NVCC) is None, reason="nvcc not found")
def test_cudaarchs_environment_variable_overrides_the_default(tmp_path):
    env = dict(os.environ, CUDAARCHS="87-real")
    _run(["cmake", "-S", str(ROOT), "-B", str(tmp_path / "b"), "-DLFDN_EDGE_CUDA=ON"], env=env)
    assert "CMAKE_CUDA_ARCHITECTURES:STRING=87-real\n" in (tmp_path / "b" / "CMakeCache.txt").read_text()


def _C_build_info() -> dict:
    try:
        from lfdn_edge import _C
    except ImportError:
        return {}
    return dict(_C.build_info())


def test_gpu_check_dry_run(tmp_path):
    """tools/gpu_check.sh --dry-run: arguments, build configuration, test collection and bench variants."""
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), "--dry-run", str(out)], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHON=sys.executable))
    summary = json.loads((out / "summary.json").read_text())
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{json.dumps(summary, indent=1)}"
    assert summary["mode"] == "dry-run" and summary["ok"] is True
    steps = {s["name"]: s for s in summary["steps"]}
    assert set(steps) >= {"environment", "configure", "collect-tests", "bench-variants"}
    assert all(s["rc"] in (0, "skipped") for s in steps.values()), steps
    collected = (out / "logs" / "collect-tests.log").read_text()
    for name in ("test_cuda_engine_matches_reference", "test_cuda_fused_linear_matches_torch",
                 "test_cuda_fused_linear_out_of_fp16_range_matches_fp64"):
        assert name in collected
    bench = (out / "logs" / "bench-variants.log").read_text()
    for variant in ("torch-fp32", "torch-fp16", "torch-compile-fp16", "torch-compile-fp16-ro", "native-fp16",
                    "native-fp16 auto", "native-fp16 cuda.stream_r8", "native-fp16 cuda.mma_splitk_m32",
                    "native-fp16 cuda.cublaslt"):  # each CUDA tactic separately, the engine's own choice
        assert variant in bench
    assert steps["tactics-script"]["rc"] == 0  # the on-device selection script (parses; lists the tactics)
    tactics_log = (out / "logs" / "tactics-script.log").read_text()
    if "'cuda': True" in repr(_C_build_info()):
        assert "cuda.legacy_tile" in tactics_log and "cuda.test_no_bias" in tactics_log
    bad = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage" in bad.stderr
