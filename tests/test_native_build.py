"""The native core builds in both configurations CI needs, from the source tree, in temporary directories:

* CPU-only (-DLFDN_EDGE_CUDA=OFF, as on a machine without nvcc): the module builds, imports, reports no
  CUDA, and is compiled with portable flags (no -march; only the AVX2 kernel file gets -mavx2/-mfma/-mf16c).
* CUDA (nvcc present): the CUDA kernels and the module build for every default architecture (sm_80, 86, 87,
  89, 90 + PTX); the module imports on a machine without a GPU and says so instead of crashing.
Skipped with a reason when cmake, a compiler, pybind11 or nvcc is missing. About a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JOBS = str(max(1, min(4, os.cpu_count() or 1)))
DEFAULT_ARCHS = ["80-real", "86-real", "87-real", "89-real", "90-real", "90-virtual"]

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
        if "-mavx2" in cmd:
            assert c["file"].endswith("kernels_avx2.cpp"), c["file"]
    # The AVX2 object must export nothing but its table: an inline/template function emitted there (weak
    # symbol) could be picked by the linker for other files and run AVX2 code on a CPU without it.
    avx2_obj = list(build.rglob("kernels_avx2.cpp.o"))
    if avx2_obj and shutil.which("nm"):
        syms = _run(["nm", "-C", "--defined-only", "--extern-only", str(avx2_obj[0])]).stdout.split("\n")
        assert [ln.split(" ", 2)[2] for ln in syms if ln.strip()] == ["lfdn::cpu::avx2_kernels()"], syms


def test_bad_cuda_option_fails_configure_clearly(tmp_path):
    proc = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path / "bad"), "-DLFDN_EDGE_CUDA=maybe"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "LFDN_EDGE_CUDA must be AUTO, ON or OFF" in proc.stderr


@pytest.mark.skipif(shutil.which(os.environ.get("CUDACXX", "nvcc")) is None, reason="nvcc not found")
def test_cuda_build_all_default_architectures(tmp_path):
    build = tmp_path / "cuda"
    _configure(build, "-DLFDN_EDGE_CUDA=ON", "-DLFDN_EDGE_PYTHON=ON", f"-Dpybind11_DIR={_pybind11_dir()}",
               f"-DPython_EXECUTABLE={sys.executable}")
    cache = (build / "CMakeCache.txt").read_text()
    assert "CMAKE_CUDA_ARCHITECTURES:STRING=" + ";".join(DEFAULT_ARCHS) in cache
    _run(["cmake", "--build", str(build), "-j", JOBS])
    commands = json.loads((build / "compile_commands.json").read_text())
    cu = [c.get("command", " ".join(c.get("arguments", []))) for c in commands if c["file"].endswith(".cu")]
    assert len(cu) >= 6
    for cmd in cu:
        for arch in ("80", "86", "87", "89", "90"):
            assert f"arch=compute_{arch},code=[sm_{arch}]" in cmd
        assert "arch=compute_90,code=[compute_90]" in cmd  # PTX for GPUs newer than sm_90
    mod_dir = tmp_path / "mod"
    mod_dir.mkdir()
    shutil.copy(next(build.glob("_C*")), mod_dir)
    info = _import_info(mod_dir)
    assert info["cuda"] is True and info["cuda_archs"] == DEFAULT_ARCHS and info["has_cuda_engine"]
    assert info["cuda_devices"] >= 0  # 0 on a machine without a GPU or driver: reported, not a crash
