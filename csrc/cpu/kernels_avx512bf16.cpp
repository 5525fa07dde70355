// BF16 inner kernels of the avx512 table: BF16 weights and BF16 activations, FP32 accumulation with
// vdpbf16ps (_mm512_dpbf16_ps). Compiled with -mavx512bf16 (CMakeLists.txt) and reached only when the CPU
// reports AVX512_BF16 (cpu_has_avx512_bf16 in dispatch.cpp); nothing here is inline-shared with other files.
//
// Layout: both operands come in k-pairs. A packed weight panel row is 16 outputs x 2 k = one zmm of 32 BF16
// (output j's weights for k = 2*k2 and 2*k2+1 in dword j, the even k in the low half); an activation k-pair is
// one dword, broadcast to all 16 lanes. One vdpbf16ps adds both products of a pair to each output's FP32
// accumulator, so every output is one chain over k2 in increasing order whatever the row group (lanes are
// independent): a row's result does not depend on the batch or the group it is computed in.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace lfdn {
namespace cpu {
namespace {

constexpr int kMRMax = 12;  // as the FP32 kernels of the table: 12 zmm accumulators + the weight row

// PA: activations packed per row group, a[k*MR + r]; else rows of lda2 k-pairs, a[r*lda2 + k]. Same chains.
template <int MR, bool PA>
inline void ukr(int64_t kc2, const uint32_t* a, int64_t lda2, const uint32_t* b, float* c, int accumulate) {
  __m512 acc[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc[r] = accumulate ? _mm512_loadu_ps(c + r * kNR) : _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc2; ++k) {
    const __m512bh bv = (__m512bh)_mm512_loadu_si512(b + k * kNR);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
      acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_set1_epi32(static_cast<int>(PA ? a[k * MR + r] : a[r * lda2 + k])), bv);
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) _mm512_storeu_ps(c + r * kNR, acc[r]);
}

template <bool PA>
void gemm(int mr, int64_t kc2, const uint32_t* a, int64_t lda2, const uint32_t* b, float* c, int accumulate) {
  switch (mr) {
    case 1: ukr<1, PA>(kc2, a, lda2, b, c, accumulate); break;
    case 2: ukr<2, PA>(kc2, a, lda2, b, c, accumulate); break;
    case 3: ukr<3, PA>(kc2, a, lda2, b, c, accumulate); break;
    case 4: ukr<4, PA>(kc2, a, lda2, b, c, accumulate); break;
    case 5: ukr<5, PA>(kc2, a, lda2, b, c, accumulate); break;
    case 6: ukr<6, PA>(kc2, a, lda2, b, c, accumulate); break;
    case 7: ukr<7, PA>(kc2, a, lda2, b, c, accumulate); break;
    case 8: ukr<8, PA>(kc2, a, lda2, b, c, accumulate); break;
    case 9: ukr<9, PA>(kc2, a, lda2, b, c, accumulate); break;
    case 10: ukr<10, PA>(kc2, a, lda2, b, c, accumulate); break;
    case 11: ukr<11, PA>(kc2, a, lda2, b, c, accumulate); break;
    default: ukr<kMRMax, PA>(kc2, a, lda2, b, c, accumulate); break;
  }
}

}  // namespace

void avx512bf16_gemm(int mr, int64_t kc2, const uint32_t* a, int64_t lda2, const uint32_t* b, float* c,
                     int accumulate) {
  gemm<false>(mr, kc2, a, lda2, b, c, accumulate);
}

void avx512bf16_gemm_pa(int mr, int64_t kc2, const uint32_t* a, const uint32_t* b, float* c, int accumulate) {
  gemm<true>(mr, kc2, a, 0, b, c, accumulate);
}

// vcvtne2ps2bf16: round to nearest even (NaN stays NaN). The tail uses the same instruction on zero-filled
// lanes, so an odd n gets its k-pair padding (dst[n] = 0) from the conversion itself.
void avx512bf16_f32_to_bf16(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
    _mm512_storeu_si512(dst + i, (__m512i)v);
  }
  if (i < n) {
    const int64_t left = n - i;  // 1..31
    const __mmask16 lo = static_cast<__mmask16>(left >= 16 ? 0xFFFFu : (1u << left) - 1u);
    const __mmask16 hi = static_cast<__mmask16>(left > 16 ? (1u << (left - 16)) - 1u : 0u);
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + i + 16), _mm512_maskz_loadu_ps(lo, src + i));
    const int64_t even = (left + 1) / 2 * 2;
    const __mmask32 m = static_cast<__mmask32>(even >= 32 ? 0xFFFFFFFFu : (1u << even) - 1u);
    _mm512_mask_storeu_epi16(dst + i, m, (__m512i)v);
  }
}

double avx512bf16_dot_loop(int64_t iters, float* sink) {
  constexpr int kChains = 16;  // > vdpbf16ps latency x throughput on current cores
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(1.0f + 0.001f * j);
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(-1e-3f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.25f));
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  }
  __m512 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, acc[j]);
  *sink = _mm512_reduce_add_ps(s);
  return 4.0 * 16 * kChains * static_cast<double>(iters);
}

}  // namespace cpu
}  // namespace lfdn
