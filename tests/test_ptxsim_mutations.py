"""Mutation checks on the project's own kernels: each mutant of csrc/cuda/kernels/tactics.cuh (an off-by-one
tile bound, a removed __syncthreads, a removed cp.async wait, two swapped ldmatrix destination registers) is
compiled by nvcc, run through the same case as the named kernel test (test_ptxsim_kernels.py::test_tactic),
and must be caught there: by the interpreter's memcheck, racecheck or initcheck, or by the tolerance rule.
The unmutated source passes the same case (test_tactic itself)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ptxsim_common import ROOT, need_nvcc, ptxsim
from ptxsim_project import Gpu, need_capture
from ptxsim.cuda import nvcc_path
from test_ptxsim_kernels import tactic_case

HEADER = "csrc/cuda/kernels/tactics.cuh"

MUTANTS = {
    # the mma epilogue's row bound: row `rows` (one past the last) is stored; its guard scale, which the
    # prologue never wrote, is read first (initcheck; without initcheck the store past `out` is a memcheck error)
    "off_by_one_tile_bound": ("} else if (r < rows && n < p.e.N) {", "} else if (r <= rows && n < p.e.N) {",
                              ptxsim.InitcheckError),
    # the barrier between a k-tile's cp.async landing and the other warps' ldmatrix reads
    "removed_syncthreads": ("    __syncthreads();  // tile kt visible to every warp; every warp is done with tile kt - 1\n",
                            "\n", ptxsim.RacecheckError),
    # the wait for the k-tile's copies: ldmatrix reads shared memory before they land
    "removed_cp_async_wait": ("  for (int kt = 0; kt < ktiles; ++kt) {\n    cp_async_wait<kMmaStages - 2>();\n",
                              "  for (int kt = 0; kt < ktiles; ++kt) {\n", ptxsim.InitcheckError),
    # A fragment registers a1 and a2 swapped: wrong products, no checker can see it; the tolerance must
    "swapped_ldmatrix_registers": (': "=r"(af[i][0]), "=r"(af[i][1]), "=r"(af[i][2]), "=r"(af[i][3])',
                                   ': "=r"(af[i][0]), "=r"(af[i][2]), "=r"(af[i][1]), "=r"(af[i][3])', AssertionError),
}


def mutant_ptx(tmp_path, old: str, new: str) -> str:
    src = (ROOT / HEADER).read_text(encoding="utf-8")
    assert src.count(old) == 1, f"the mutation site is not unique in {HEADER}: {old!r}"
    tree = tmp_path / "csrc"
    shutil.copytree(ROOT / "csrc" / "include", tree / "include")
    shutil.copytree(ROOT / "csrc" / "cuda", tree / "cuda")
    (tree / HEADER.replace("csrc/", "")).write_text(src.replace(old, new), encoding="utf-8")
    out = tmp_path / "tactics.ptx"
    r = subprocess.run([nvcc_path(), "-ptx", "-arch=compute_80", "-std=c++17", f"-I{tree / 'include'}", f"-I{tree}",
                        str(tree / "cuda" / "tactics_launch.cu"), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out.read_text(encoding="utf-8")


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_mutant_is_caught_by_test_tactic(tmp_path, mutant):
    need_nvcc()
    need_capture()
    old, new, caught_by = MUTANTS[mutant]
    gpu = Gpu("compute_80", ptx={"tactics": mutant_ptx(tmp_path, old, new)}, label=f"mutant {mutant}")
    with pytest.raises(caught_by) as e:
        tactic_case(gpu, "cuda.mma_m32", 33)  # the case of test_tactic[cuda.mma_m32-33]
    if caught_by is AssertionError:
        assert "x the tolerance" in str(e.value)
    else:
        assert "mma_kernel" in str(e.value)


def test_off_by_one_also_caught_by_memcheck_alone(tmp_path):
    """With initcheck off, the same off-by-one mutant's store past the end of `out` is a memcheck error."""
    need_nvcc()
    need_capture()
    old, new, _ = MUTANTS["off_by_one_tile_bound"]
    gpu = Gpu("compute_80", ptx={"tactics": mutant_ptx(tmp_path, old, new)}, label="mutant off_by_one",
              initcheck=False)
    with pytest.raises(ptxsim.MemcheckError, match="just past allocation 'out'"):
        tactic_case(gpu, "cuda.mma_m32", 33)
