"""The mma kernel's cp.async tile stores are free of shared-memory bank conflicts (csrc/cuda/kernels/tile_map.h).

The mapping header is plain C++ (host and device): compiled here with g++ into a small program that prints
each thread's (row, first half) for the A (32 and 64 rows) and W (64 rows) tiles; the test then checks, per
quarter warp of 16-byte stores at the kernel's 80-byte row pitch, that the eight stores fall in eight different
16-byte bank groups, and that every chunk of the tile is written exactly once.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PITCH_BYTES = 40 * 2  # kMmaPitch halves
THREADS = 128


@pytest.fixture(scope="module")
def mapping(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    d = tmp_path_factory.mktemp("tile")
    (d / "main.cpp").write_text(
        '#include <cstdio>\n#include "cuda/kernels/tile_map.h"\n'
        "int main() { for (int c = 0; c < 64 * 4; ++c) { int r, h; lfdn::cuda::tac::tile_chunk(c, &r, &h);"
        ' std::printf("%d %d\\n", r, h); } }\n')
    subprocess.run([cxx, "-std=c++17", "-Wall", "-Werror", f"-I{ROOT / 'csrc'}", str(d / "main.cpp"), "-o",
                    str(d / "m")], check=True)
    out = subprocess.run([str(d / "m")], capture_output=True, text=True, check=True).stdout
    return [tuple(map(int, line.split())) for line in out.splitlines()]


@pytest.mark.parametrize("rows", [32, 64])
def test_every_chunk_once_and_no_bank_conflict_per_quarter_warp(mapping, rows):
    chunks = mapping[: rows * 4]
    assert sorted(chunks) == sorted((r, h) for r in range(rows) for h in (0, 8, 16, 24))
    for c0 in range(0, rows * 4, THREADS):  # one pass of the CTA's 128 threads
        for q in range(0, THREADS, 8):      # quarter warps
            group = chunks[c0 + q: c0 + q + 8]
            banks = [(r * PITCH_BYTES + 2 * h) // 16 % 8 for r, h in group]
            assert len(set(banks)) == len(group), (rows, c0 + q, group, banks)


def test_the_row_major_mapping_it_replaced_had_two_way_conflicts():
    """The model is sharp enough to see the old mapping's conflicts (chunk c -> row c / 4, column c % 4)."""
    group = [(c // 4, (c % 4) * 8) for c in range(8)]
    banks = [(r * PITCH_BYTES + 2 * h) // 16 % 8 for r, h in group]
    assert len(set(banks)) == 7  # offsets 0 and 128: the same bank group
