// INT8 inner kernels of the avx512 table: INT8 weights and activation codes, exact INT32 accumulation with
// vpdpbusd (_mm512_dpbusd_epi32, AVX512-VNNI). Compiled with -mavx512vnni (CMakeLists.txt) and reached only when
// the CPU reports AVX512_VNNI (cpu_has_avx512_vnni in dispatch.cpp); nothing here is inline-shared with other files.
//
// vpdpbusd multiplies unsigned bytes (its first source) by signed bytes (its second) and adds each group of four
// products to a dword. The weights are signed as packed (pack_linear_cpu_i8); the activations are stored as
// unsigned codes q + 128 (quantize below, i8_act_offset 128), so an output accumulates sum (q + 128) * w, and the
// caller subtracts 128 * colsum[j] (the packed trailer): exact, the same INT32 as the scalar table's sum q * w.
// Layout: a packed weight panel row is 16 outputs x 4 k = one zmm of 64 int8 (output j's weights at k = 4*k4..+3
// in dword j, lowest k in the low byte); an activation k-quad is one dword, broadcast to all 16 lanes. Every
// output is one chain over k4 in increasing order whatever the row group (integer sums are exact anyway).
#include <immintrin.h>

#include "cpu/kernels.h"

namespace lfdn {
namespace cpu {
namespace {

constexpr int kMRMax = 12;  // as the FP32 kernels of the table: 12 zmm accumulators + the weight row

template <int MR, bool PA>
inline void ukr(int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c, int accumulate) {
  __m512i acc[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc[r] = accumulate ? _mm512_loadu_si512(c + r * kNR) : _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc4; ++k) {
    const __m512i bv = _mm512_loadu_si512(b + k * kNR);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
      acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_set1_epi32(static_cast<int>(PA ? a[k * MR + r] : a[r * lda4 + k])), bv);
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) _mm512_storeu_si512(c + r * kNR, acc[r]);
}

template <bool PA>
void gemm(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c, int accumulate) {
  switch (mr) {
    case 1: ukr<1, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 2: ukr<2, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 3: ukr<3, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 4: ukr<4, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 5: ukr<5, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 6: ukr<6, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 7: ukr<7, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 8: ukr<8, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 9: ukr<9, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 10: ukr<10, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 11: ukr<11, PA>(kc4, a, lda4, b, c, accumulate); break;
    default: ukr<kMRMax, PA>(kc4, a, lda4, b, c, accumulate); break;
  }
}

}  // namespace

void avx512vnni_gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                        int accumulate) {
  gemm<false>(mr, kc4, a, lda4, b, c, accumulate);
}

void avx512vnni_gemm_i8_pa(int mr, int64_t kc4, const uint32_t* a, const uint32_t* b, int32_t* c, int accumulate) {
  gemm<true>(mr, kc4, a, 0, b, c, accumulate);
}

// The rule of Kernels::quantize_i8 with unsigned codes (q + 128), bit-identical to quantize_i8_rows_portable(...,
// 128, ...): the maximum is exact, x * inv is one IEEE multiply, vcvtps2dq rounds half to even (the default MXCSR
// mode) and the clamp to [-127, 127] after the conversion equals the portable clamp before it (|x * inv| <= 127 *
// (1 + 2^-23) rounds to at most 127).
void avx512vnni_quantize_i8(const float* x, int64_t n, uint32_t* dst, float* scale) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  __m512 vmax = _mm512_setzero_ps();
  __mmask16 bad = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    bad |= _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_NEQ_UQ);  // inf or NaN
    vmax = _mm512_max_ps(vmax, _mm512_andnot_ps(sign, v));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    bad |= _mm512_mask_cmp_ps_mask(m, _mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_NEQ_UQ);
    vmax = _mm512_max_ps(vmax, _mm512_andnot_ps(sign, v));
  }
  const float amax = _mm512_reduce_max_ps(vmax);
  const int64_t n4 = (n + 3) / 4;
  uint8_t* d = reinterpret_cast<uint8_t*>(dst);
  if (bad != 0 || amax == 0.0f) {
    for (int64_t k = 0; k < 4 * n4; ++k) d[k] = 128;
    *scale = bad != 0 ? __builtin_nanf("") : 0.0f;
    return;
  }
  const __m512 inv = _mm512_set1_ps(127.0f / amax);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), off = _mm512_set1_epi32(128);
  i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    q = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi), off);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), _mm512_cvtepi32_epi8(q));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    q = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi), off);
    _mm_mask_storeu_epi8(d + i, m, _mm512_cvtepi32_epi8(q));
  }
  for (int64_t k = n; k < 4 * n4; ++k) d[k] = 128;  // the padding of the last quad: the code of 0
  *scale = amax / 127.0f;
}

// Kernels::i8_epilogue: the portable loop's arithmetic in 16 lanes (a multiply, a multiply, adds; this file is
// compiled with -ffp-contract=off, so no FMA contraction can change a rounding)
void avx512vnni_i8_epilogue(const int32_t* c, int nn, int offset, const int32_t* colsum, float sa, const float* ws,
                 const float* bias, const float* res, float* out) {
  const __mmask16 m = static_cast<__mmask16>(nn >= 16 ? 0xFFFFu : (1u << nn) - 1u);
  const __m512i acc = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(m, c),
                                       _mm512_mullo_epi32(_mm512_set1_epi32(offset), _mm512_maskz_loadu_epi32(m, colsum)));
  __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(sa));
  v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, ws));
  if (bias != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias));
  if (res != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, res));
  _mm512_mask_storeu_ps(out, m, v);
}

double avx512vnni_dot_loop(int64_t iters, float* sink) {
  constexpr int kChains = 16;  // > vpdpbusd latency x throughput on current cores
  __m512i acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_epi32(j);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-1);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
  }
  __m512i s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm512_add_epi32(s, acc[j]);
  *sink = static_cast<float>(_mm512_reduce_add_epi32(s));
  return 2.0 * 64 * kChains * static_cast<double>(iters);
}

}  // namespace cpu
}  // namespace lfdn
