// INT8 inner kernels of the avx2 table: vpdpbusd on ymm registers with the VEX encoding (AVX-VNNI: Intel Alder Lake
// and later client cores, Sapphire Rapids, AMD Zen 5), for CPUs without AVX-512. Compiled with -mavx2 -mfma
// -mavxvnni -ffp-contract=off (CMakeLists.txt) and reached only when the CPU reports AVX-VNNI (cpu_has_avx_vnni in
// dispatch.cpp); nothing here is inline-shared with other files.
//
// The same codes and sums as the AVX512-VNNI kernels (kernels_avx512vnni.cpp): unsigned activation codes q + 128
// (i8_act_offset 128) times the signed packed weights, exact INT32; 16 outputs are two ymm of 8 dwords per row, up to
// 6 rows per call (12 accumulators + 2 weight registers of the 16). The row quantization and the epilogue are the
// portable rules bit for bit (no FMA contraction in this file: -ffp-contract=off).
#include <immintrin.h>

#include <cmath>

#include "cpu/kernels.h"

namespace lfdn {
namespace cpu {
namespace {

constexpr int kMRMax = 6;

template <int MR, bool PA>
inline void ukr(int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c, int accumulate) {
  __m256i acc[MR][2];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 2; ++j)
      acc[r][j] = accumulate ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + r * kNR + 8 * j))
                             : _mm256_setzero_si256();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc4; ++k) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k * kNR));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k * kNR + 8));
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256i av = _mm256_set1_epi32(static_cast<int>(PA ? a[k * MR + r] : a[r * lda4 + k]));
      acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], av, b0);
      acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], av, b1);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 2; ++j) _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * kNR + 8 * j), acc[r][j]);
}

template <bool PA>
void gemm(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c, int accumulate) {
  switch (mr) {
    case 1: ukr<1, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 2: ukr<2, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 3: ukr<3, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 4: ukr<4, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 5: ukr<5, PA>(kc4, a, lda4, b, c, accumulate); break;
    default: ukr<kMRMax, PA>(kc4, a, lda4, b, c, accumulate); break;
  }
}

}  // namespace

void avxvnni_gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                     int accumulate) {
  gemm<false>(mr, kc4, a, lda4, b, c, accumulate);
}

void avxvnni_gemm_i8_pa(int mr, int64_t kc4, const uint32_t* a, const uint32_t* b, int32_t* c, int accumulate) {
  gemm<true>(mr, kc4, a, 0, b, c, accumulate);
}

// Kernels::quantize_i8 with unsigned codes, bit-identical to quantize_i8_rows_portable(..., 128, ...): 8 lanes at a
// time (vcvtps2dq rounds half to even), the tail with the portable expression.
void avxvnni_quantize_i8(const float* x, int64_t n, uint32_t* dst, float* scale) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 vmax = _mm256_setzero_ps();
  int bad = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    bad |= _mm256_movemask_ps(_mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_NEQ_UQ));
    vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, v));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  float amax = 0.0f;
  for (int j = 0; j < 8; ++j) amax = lanes[j] > amax ? lanes[j] : amax;
  for (; i < n; ++i) {
    const float v = x[i];
    if (!(v - v == 0.0f)) bad = 1;
    const float av = v < 0.0f ? -v : v;
    amax = av > amax ? av : amax;
  }
  const int64_t n4 = (n + 3) / 4;
  uint8_t* d = reinterpret_cast<uint8_t*>(dst);
  if (bad != 0 || amax == 0.0f) {
    for (int64_t k = 0; k < 4 * n4; ++k) d[k] = 128;
    *scale = bad != 0 ? __builtin_nanf("") : 0.0f;
    return;
  }
  const float inv_s = 127.0f / amax;
  const __m256 inv = _mm256_set1_ps(inv_s);
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127), off = _mm256_set1_epi32(128);
  // byte 0 of every dword of each 128-bit lane into its low 4 bytes
  const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    q = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(q, lo), hi), off);
    q = _mm256_shuffle_epi8(q, pick);
    const uint32_t w0 = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_castsi256_si128(q)));
    const uint32_t w1 = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(q, 1)));
    __builtin_memcpy(d + i, &w0, 4);
    __builtin_memcpy(d + i + 4, &w1, 4);
  }
  for (; i < n; ++i) {
    float q = std::nearbyint(x[i] * inv_s);
    q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
    d[i] = static_cast<uint8_t>(static_cast<int>(q) + 128);
  }
  for (int64_t k = n; k < 4 * n4; ++k) d[k] = 128;
  *scale = amax / 127.0f;
}

// Kernels::i8_epilogue in 2 x 8 lanes (a multiply, a multiply, adds: no contraction in this file)
void avxvnni_i8_epilogue(const int32_t* c, int nn, int offset, const int32_t* colsum, float sa, const float* ws,
                         const float* bias, const float* res, float* out) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int h = 0; h < 2; ++h) {
    const int left = nn - 8 * h;
    if (left <= 0) break;
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane);
    const __m256i acc = _mm256_sub_epi32(_mm256_maskload_epi32(c + 8 * h, m),
                                         _mm256_mullo_epi32(_mm256_set1_epi32(offset), _mm256_maskload_epi32(colsum + 8 * h, m)));
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(sa));
    v = _mm256_mul_ps(v, _mm256_maskload_ps(ws + 8 * h, m));
    if (bias != nullptr) v = _mm256_add_ps(v, _mm256_maskload_ps(bias + 8 * h, m));
    if (res != nullptr) v = _mm256_add_ps(v, _mm256_maskload_ps(res + 8 * h, m));
    _mm256_maskstore_ps(out + 8 * h, m, v);
  }
}

double avxvnni_dot_loop(int64_t iters, float* sink) {
  constexpr int kChains = 12;
  __m256i acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_epi32(j);
  const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-1);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_dpbusd_avx_epi32(acc[j], a, b);
  }
  __m256i s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm256_add_epi32(s, acc[j]);
  alignas(32) int32_t v[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), s);
  *sink = static_cast<float>(v[0] + v[7]);
  return 2.0 * 32 * kChains * static_cast<double>(iters);
}

}  // namespace cpu
}  // namespace lfdn
