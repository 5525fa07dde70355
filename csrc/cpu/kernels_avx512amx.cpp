// AMX-INT8 inner kernel of the avx512 table's INT8 path: tdpbusd on tiles (Intel Advanced Matrix Extensions,
// Sapphire Rapids and later). Compiled with -mamx-tile -mamx-int8 (CMakeLists.txt) and reached only when the CPU
// reports AMX-TILE and AMX-INT8, the OS saves the tile state (XCR0 bits 17-18) and Linux granted this process
// the tile data permission (arch_prctl ARCH_REQ_XCOMP_PERM, asked once here); otherwise the entry stays null and
// the AMX tactics do not apply. Nothing here is inline-shared with other files.
//
// tdpbusd is vpdpbusd on tiles: unsigned activation codes (q + 128, the VNNI path's codes) times signed weights,
// four products per dword, INT32 accumulation, exactly. Its B operand is a tile of K/4 rows x 16 dwords, each
// dword the 4 weights of one output at 4 consecutive k: precisely one k-block of a packed weight panel
// ([panel][k/4][16][4], pack_linear_cpu_i8), so the weights are read in place (stride 64 bytes). A is up to 16
// activation rows of 64 bytes (16 k-quads) read in place from the row-major codes (stride lda4 * 4 bytes); C is
// mr rows x 16 outputs of INT32, the cbuf of the caller (stride 64 bytes). The results are the INT32 sums the
// VNNI and scalar kernels compute, bit for bit, so AMX and VNNI tactics can be mixed across batch buckets without
// a row's scores depending on its batch.
#include <immintrin.h>

#include <cpuid.h>
#include <cstring>
#include <sys/syscall.h>
#include <unistd.h>

#include "cpu/kernels.h"

namespace lfdn {
namespace cpu {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Tiles: 0 C (mr x 64 B), 1 A (mr x 64 B), 2 B (16 x 64 B), 3 A tail (mr x 4*tail B), 4 B tail (tail x 64 B).
// The configuration depends on (mr, tail) only; each thread keeps the last one it loaded (ldtilecfg also zeroes
// every tile, and costs tens of cycles: it is loaded only when the shape changes).
thread_local int t_loaded = -1;

inline void configure(int mr, int tail) {
  const int key = mr * 64 + tail;
  if (t_loaded == key) return;
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  cfg.rows[0] = static_cast<uint8_t>(mr);
  cfg.colsb[0] = 64;
  cfg.rows[1] = static_cast<uint8_t>(mr);
  cfg.colsb[1] = 64;
  cfg.rows[2] = 16;
  cfg.colsb[2] = 64;
  if (tail > 0) {
    cfg.rows[3] = static_cast<uint8_t>(mr);
    cfg.colsb[3] = static_cast<uint16_t>(4 * tail);
    cfg.rows[4] = static_cast<uint8_t>(tail);
    cfg.colsb[4] = 64;
  }
  _tile_loadconfig(&cfg);
  t_loaded = key;
}

// Two panels: 0 C00, 1 C01 (rows 0..m0, panels 0 / 1), 2 C10, 3 C11 (rows m0..m0+m1), 4 A0 (m0 x 64 B),
// 5 A1 (m1 x 64 B), 6 B0, 7 B1 (16 x 64 B). m1 = 0: tiles 2, 3, 5 are left unconfigured and unused.
inline void configure_2p(int m0, int m1) {
  const int key = 100000 + m0 * 64 + m1;
  if (t_loaded == key) return;
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  const int rows[8] = {m0, m0, m1, m1, m0, m1, 16, 16};
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = static_cast<uint8_t>(rows[t]);
    cfg.colsb[t] = rows[t] > 0 ? 64 : 0;
  }
  _tile_loadconfig(&cfg);
  t_loaded = key;
}

// The tail of a k-block (kc4 % 16 quads, no tile register left for it) on the VNNI kernel, into the stored sums:
// the same exact INT32 products.
void tail_vnni(int mr, int64_t tail, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c) {
  for (int r = 0; r < mr; r += 12) {
    const int rows = mr - r < 12 ? mr - r : 12;
    avx512vnni_gemm_i8(rows, tail, a + r * lda4, lda4, b, c + r * kNR, 1);
  }
}

}  // namespace

bool avx512amx_usable() {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool tile = (d >> 24) & 1u, int8 = (d >> 25) & 1u;
    if (!tile || !int8 || cpu_feature_off("amx")) return false;
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !((c >> 27) & 1u)) return false;  // OSXSAVE
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if (((lo >> 17) & 3u) != 3u) return false;  // XTILECFG and XTILEDATA enabled by the OS
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
}

// c[r*16 + j] (+)= sum over k4 < kc4 of a[r*lda4 + k4] . b[k4*16 + j] (4 unsigned x signed byte products), r < mr <= 16.
void avx512amx_gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                       int accumulate) {
  const int tail = static_cast<int>(kc4 % 16);
  configure(mr, tail);
  if (accumulate) {
    _tile_loadd(0, c, 64);
  } else {
    _tile_zero(0);
  }
  const int64_t stride = lda4 * 4;
  int64_t k = 0;
  for (; k + 16 <= kc4; k += 16) {
    _tile_loadd(1, a + k, stride);
    _tile_loadd(2, b + k * kNR, 64);
    _tile_dpbusd(0, 1, 2);
  }
  if (tail > 0) {
    _tile_loadd(3, a + k, stride);
    _tile_loadd(4, b + k * kNR, 64);
    _tile_dpbusd(0, 3, 4);
  }
  _tile_stored(0, c, 64);
}

// 2 x 2 blocking: per 16 k-quads, A0, A1, B0, B1 are loaded once and feed four tdpbusd (one load per tdpbusd
// instead of two). Panel 1's weights at b + bstride, its sums at c + cstride. mr <= 32.
void avx512amx_gemm_i8_2p(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int64_t bstride,
                          int32_t* c, int64_t cstride, int accumulate) {
  const int m0 = mr < 16 ? mr : 16, m1 = mr - m0;
  configure_2p(m0, m1);
  int32_t* c1 = c + cstride;
  int32_t* c10 = c + m0 * kNR;
  int32_t* c11 = c1 + m0 * kNR;
  if (accumulate) {
    _tile_loadd(0, c, 64);
    _tile_loadd(1, c1, 64);
    if (m1 > 0) {
      _tile_loadd(2, c10, 64);
      _tile_loadd(3, c11, 64);
    }
  } else {
    _tile_zero(0);
    _tile_zero(1);
    if (m1 > 0) {
      _tile_zero(2);
      _tile_zero(3);
    }
  }
  const int64_t stride = lda4 * 4;
  const uint32_t* a1 = a + m0 * lda4;
  const uint32_t* b1 = b + bstride;
  const int64_t full = kc4 / 16 * 16;
  if (m1 > 0) {
    for (int64_t k = 0; k < full; k += 16) {
      _tile_loadd(4, a + k, stride);
      _tile_loadd(6, b + k * kNR, 64);
      _tile_loadd(7, b1 + k * kNR, 64);
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_loadd(5, a1 + k, stride);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
  } else {
    for (int64_t k = 0; k < full; k += 16) {
      _tile_loadd(4, a + k, stride);
      _tile_loadd(6, b + k * kNR, 64);
      _tile_loadd(7, b1 + k * kNR, 64);
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
    }
  }
  _tile_stored(0, c, 64);
  _tile_stored(1, c1, 64);
  if (m1 > 0) {
    _tile_stored(2, c10, 64);
    _tile_stored(3, c11, 64);
  }
  if (full < kc4) {
    tail_vnni(mr, kc4 - full, a + full, lda4, b + full * kNR, c);
    tail_vnni(mr, kc4 - full, a + full, lda4, b1 + full * kNR, c1);
  }
}

// Probe: 4 independent C tiles (16 x 16 INT32) += A (16 x 64 B) . B (16 x 64 B), 2 x 16 x 16 x 64 ops each.
double avx512amx_dot_loop(int64_t iters, float* sink) {
  alignas(64) uint8_t a[16 * 64];
  alignas(64) int32_t c[16 * 16];
  std::memset(a, 1, sizeof a);
  configure_2p(16, 16);  // tiles 0-3: 16 x 64 B; 4, 5: A; 6, 7: B
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, a, 64);
  _tile_loadd(6, a, 64);
  for (int64_t i = 0; i < iters; ++i) {
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 4, 6);
    _tile_dpbusd(2, 4, 6);
    _tile_dpbusd(3, 4, 6);
  }
  _tile_stored(0, c, 64);
  *sink = static_cast<float>(c[0]);
  return 4.0 * 2 * 16 * 16 * 64 * static_cast<double>(iters);
}

}  // namespace cpu
}  // namespace lfdn
