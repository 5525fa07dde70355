// Thread -> 16-byte chunk mapping of the mma kernel's cp.async tile stores (plain C++, host and device, so
// tests/test_tile_map.py checks it on the CPU).
//
// A tile row holds kMmaBK = 32 halves = four 16-byte chunks and is stored at a pitch of 40 halves (80 bytes,
// the pitch that makes ldmatrix's eight row addresses hit eight different 16-byte bank groups). 16-byte shared
// stores are serviced a quarter warp (8 threads, 128 bytes) at a time. The row-major mapping (chunk c -> row
// c / 4, column c % 4) puts two rows in one quarter warp: offsets 0, 16, 32, 48 and 80, 96, 112, 128, and 128
// hits bank group 0 again: a 2-way conflict on every store. Column-major within blocks of eight rows (chunk c
// -> row 8 (c / 32) + c % 8, column (c / 8) % 4) gives each quarter warp one column of eight consecutive rows:
// offsets 80 r + 16 col for r = 0..7 fall in eight different bank groups (0, 80, 32, 112, 64, 16, 96, 48 + 16
// col mod 128), the ldmatrix pattern, so the stores are conflict-free. The global reads of a warp still cover
// eight rows x 64 contiguous bytes each (full 32-byte sectors), as before.
#pragma once

#if defined(__CUDACC__)
#define LFDN_TILE_HD __host__ __device__ __forceinline__
#else
#define LFDN_TILE_HD inline
#endif

namespace lfdn {
namespace cuda {
namespace tac {

constexpr int kTileChunksPerRow = 4;  // kMmaBK halves / 8 halves per 16-byte chunk

// chunk index c (0 .. rows * 4 - 1, rows a multiple of 8) -> its row and its first half (0, 8, 16, 24)
LFDN_TILE_HD void tile_chunk(int c, int* row, int* half0) {
  *row = (c / (8 * kTileChunksPerRow)) * 8 + c % 8;
  *half0 = ((c / 8) % kTileChunksPerRow) * 8;
}

}  // namespace tac
}  // namespace cuda
}  // namespace lfdn
