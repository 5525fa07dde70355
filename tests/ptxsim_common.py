"""Shared by the PTX interpreter's tests: the interpreter on sys.path and nvcc-compiled PTX (cached)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))

import ptxsim  # noqa: E402
from ptxsim.cuda import compile_to_ptx  # noqa: E402

REQUIRED = {t.strip() for t in os.environ.get("LFDN_EDGE_REQUIRE_TOOLCHAINS", "").split(",") if t.strip()}


def need_nvcc() -> None:
    if shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").exists():
        return
    if "nvcc" in REQUIRED:
        pytest.fail("nvcc is required (LFDN_EDGE_REQUIRE_TOOLCHAINS) but not found")
    pytest.skip("nvcc not found: the PTX interpreter's tests compile CUDA sources to PTX")


def ptx_of(source: Path, arch: str = "compute_80") -> str:
    need_nvcc()
    return compile_to_ptx(source, arch, include=[ROOT / "csrc" / "include", ROOT / "csrc"])


__all__ = ["ROOT", "ptxsim", "ptx_of", "need_nvcc"]
