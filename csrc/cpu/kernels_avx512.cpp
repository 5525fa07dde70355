// AVX-512 (F/BW/VL/DQ) + FMA + F16C kernels. Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq
// -mfma -mf16c (CMakeLists.txt) and reached only after the run-time CPU check in dispatch.cpp; like
// kernels_avx2.cpp it defines nothing inline that other files could share (no STL, helpers static).
//
// A packed weight panel row (16 outputs) is one zmm register, so a row of the micro-kernel is one
// accumulator and up to kMRMax rows share each weight load: batches up to 12 are one row group (the
// weights are read once, straight from DRAM), larger batches are split into near-equal groups.
#include <immintrin.h>

#include <math.h>  // C functions only

#include "cpu/kernels.h"

namespace lfdn {
namespace cpu {
namespace {

constexpr int kMRMax = 12;  // accumulators per call; 12 zmm + the weight row + headroom of the 32 registers

// Every output is one FMA chain over k in increasing order whatever MR is (lanes are independent), so a row's
// result does not depend on the group it is computed in.
template <int MR, bool F16>
inline void ukr(int64_t kc, const float* a, int64_t lda, const void* bv, float* c, int accumulate) {
  __m512 acc[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc[r] = accumulate ? _mm512_loadu_ps(c + r * kNR) : _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m512 b;
    if (F16) {
      b = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(bv) + k * kNR)));
    } else {
      b = _mm512_loadu_ps(static_cast<const float*>(bv) + k * kNR);
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r * lda + k]), b, acc[r]);
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) _mm512_storeu_ps(c + r * kNR, acc[r]);
}

template <bool F16>
void gemm(int mr, int64_t kc, const float* a, int64_t lda, const void* b, float* c, int accumulate) {
  switch (mr) {
    case 1: ukr<1, F16>(kc, a, lda, b, c, accumulate); break;
    case 2: ukr<2, F16>(kc, a, lda, b, c, accumulate); break;
    case 3: ukr<3, F16>(kc, a, lda, b, c, accumulate); break;
    case 4: ukr<4, F16>(kc, a, lda, b, c, accumulate); break;
    case 5: ukr<5, F16>(kc, a, lda, b, c, accumulate); break;
    case 6: ukr<6, F16>(kc, a, lda, b, c, accumulate); break;
    case 7: ukr<7, F16>(kc, a, lda, b, c, accumulate); break;
    case 8: ukr<8, F16>(kc, a, lda, b, c, accumulate); break;
    case 9: ukr<9, F16>(kc, a, lda, b, c, accumulate); break;
    case 10: ukr<10, F16>(kc, a, lda, b, c, accumulate); break;
    case 11: ukr<11, F16>(kc, a, lda, b, c, accumulate); break;
    default: ukr<12, F16>(kc, a, lda, b, c, accumulate); break;
  }
}

// Packed activations (a[k*MR + r]): the same FMA chains in the same order as ukr, one broadcast stream.
template <int MR>
inline void ukr_pa(int64_t kc, const float* a, const float* b, float* c, int accumulate) {
  __m512 acc[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc[r] = accumulate ? _mm512_loadu_ps(c + r * kNR) : _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 bv = _mm512_loadu_ps(b + k * kNR);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[k * MR + r]), bv, acc[r]);
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) _mm512_storeu_ps(c + r * kNR, acc[r]);
}

void gemm_f32_pa(int mr, int64_t kc, const float* a, const float* b, float* c, int accumulate) {
  switch (mr) {
    case 1: ukr_pa<1>(kc, a, b, c, accumulate); break;
    case 2: ukr_pa<2>(kc, a, b, c, accumulate); break;
    case 3: ukr_pa<3>(kc, a, b, c, accumulate); break;
    case 4: ukr_pa<4>(kc, a, b, c, accumulate); break;
    case 5: ukr_pa<5>(kc, a, b, c, accumulate); break;
    case 6: ukr_pa<6>(kc, a, b, c, accumulate); break;
    case 7: ukr_pa<7>(kc, a, b, c, accumulate); break;
    case 8: ukr_pa<8>(kc, a, b, c, accumulate); break;
    case 9: ukr_pa<9>(kc, a, b, c, accumulate); break;
    case 10: ukr_pa<10>(kc, a, b, c, accumulate); break;
    case 11: ukr_pa<11>(kc, a, b, c, accumulate); break;
    default: ukr_pa<12>(kc, a, b, c, accumulate); break;
  }
}

// Two adjacent panels per call (32 outputs): 2 x MR accumulators (24 zmm at MR 12), per k two weight loads
// shared by MR broadcasts, against one per MR with one panel; the L1 load ports are then less of a limit for
// the FMA units. Each output is still one FMA chain over k in increasing order with the same operands as in
// ukr / ukr_pa: the results are bit-identical to the one-panel kernels'.
template <int MR, bool PA>
inline void ukr2(int64_t kc, const float* a, int64_t lda, const float* b, int64_t bstride, float* c, int64_t cstride,
                 int accumulate) {
  __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    acc0[r] = accumulate ? _mm512_loadu_ps(c + r * kNR) : _mm512_setzero_ps();
    acc1[r] = accumulate ? _mm512_loadu_ps(c + cstride + r * kNR) : _mm512_setzero_ps();
  }
  const float* b1 = b + bstride;
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 w0 = _mm512_loadu_ps(b + k * kNR);
    const __m512 w1 = _mm512_loadu_ps(b1 + k * kNR);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(PA ? a[k * MR + r] : a[r * lda + k]);
      acc0[r] = _mm512_fmadd_ps(av, w0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(av, w1, acc1[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_ps(c + r * kNR, acc0[r]);
    _mm512_storeu_ps(c + cstride + r * kNR, acc1[r]);
  }
}

template <bool PA>
void gemm2(int mr, int64_t kc, const float* a, int64_t lda, const float* b, int64_t bs, float* c, int64_t cs,
           int accumulate) {
  switch (mr) {
    case 1: ukr2<1, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    case 2: ukr2<2, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    case 3: ukr2<3, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    case 4: ukr2<4, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    case 5: ukr2<5, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    case 6: ukr2<6, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    case 7: ukr2<7, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    case 8: ukr2<8, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    case 9: ukr2<9, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    case 10: ukr2<10, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    case 11: ukr2<11, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    default: ukr2<12, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
  }
}

void gemm_f32_2p(int mr, int64_t kc, const float* a, int64_t lda, const float* b, int64_t bs, float* c, int64_t cs,
                 int accumulate) {
  gemm2<false>(mr, kc, a, lda, b, bs, c, cs, accumulate);
}

void gemm_f32_2p_pa(int mr, int64_t kc, const float* a, const float* b, int64_t bs, float* c, int64_t cs,
                    int accumulate) {
  gemm2<true>(mr, kc, a, 0, b, bs, c, cs, accumulate);
}

void gemm_f32(int mr, int64_t kc, const float* a, int64_t lda, const float* b, float* c, int accumulate) {
  gemm<false>(mr, kc, a, lda, b, c, accumulate);
}

void gemm_f16(int mr, int64_t kc, const float* a, int64_t lda, const uint16_t* b, float* c, int accumulate) {
  gemm<true>(mr, kc, a, lda, b, c, accumulate);
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}

// Sum of the 16 lanes as (lo 8 + hi 8) and then the same 8-lane reduction as the AVX2 table.
inline float hsum(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void moments(const float* x, int64_t n, float eps, float* mean, float* rstd) {
  __m512 s = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) s = _mm512_add_ps(s, _mm512_loadu_ps(x + i));
  float sum = hsum(s);
  for (; i < n; ++i) sum += x[i];
  const float m = sum / static_cast<float>(n);
  const __m512 mv = _mm512_set1_ps(m);
  __m512 q = _mm512_setzero_ps();
  i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), mv);
    q = _mm512_fmadd_ps(d, d, q);
  }
  float sq = hsum(q);
  for (; i < n; ++i) sq += (x[i] - m) * (x[i] - m);
  *mean = m;
  *rstd = 1.0f / sqrtf(sq / static_cast<float>(n) + eps);
}

// exp(x), x clamped to [-87, 88]: the AVX2 table's Cody-Waite reduction and degree-6 polynomial, 16 lanes.
inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

inline __m512 silu512(__m512 v) {
  return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
}

inline __mmask16 tail_mask(int64_t left) { return static_cast<__mmask16>((1u << left) - 1u); }

void gn_silu(const float* x, int64_t n, float mean, float rstd, const float* g, const float* b, float* out) {
  const __m512 mv = _mm512_set1_ps(mean), rv = _mm512_set1_ps(rstd);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 xn = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv), rv);
    _mm512_storeu_ps(out + i, silu512(_mm512_fmadd_ps(xn, _mm512_loadu_ps(g + i), _mm512_loadu_ps(b + i))));
  }
  if (i < n) {  // masked tail: the same arithmetic on the last n - i lanes
    const __mmask16 m = tail_mask(n - i);
    const __m512 xn = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mv), rv);
    const __m512 v = _mm512_fmadd_ps(xn, _mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, b + i));
    _mm512_mask_storeu_ps(out + i, m, silu512(v));
  }
}

void silu(const float* x, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, silu512(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(out + i, m, silu512(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

double fma_loop(int64_t iters, float* sink) {
  constexpr int kChains = 16;  // > FMA latency x throughput on current cores
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(1.0f + 0.001f * j);
  const __m512 m = _mm512_set1_ps(0.9999999f), add = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], m, add);
  }
  __m512 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, acc[j]);
  *sink = _mm512_reduce_add_ps(s);
  return 2.0 * 16 * kChains * static_cast<double>(iters);
}

}  // namespace

const Kernels* avx512_kernels() {
  static const Kernels k = [] {
    Kernels t{"avx512", kMRMax, gemm_f32, gemm_f32_pa, gemm_f16, f16_to_f32, moments, gn_silu, silu, fma_loop};
    t.gemm_f32_2p = gemm_f32_2p;
    t.gemm_f32_2p_pa = gemm_f32_2p_pa;
#if defined(LFDN_HAVE_AVX512BF16_KERNELS)
    if (cpu_has_avx512_bf16()) {  // the BF16 entries exist only where vdpbf16ps does
      t.gemm_bf16 = avx512bf16_gemm;
      t.gemm_bf16_pa = avx512bf16_gemm_pa;
      t.f32_to_bf16 = avx512bf16_f32_to_bf16;
      t.bf16_dot_loop = avx512bf16_dot_loop;
    }
#endif
    return t;
  }();
  return &k;
}

}  // namespace cpu
}  // namespace lfdn
