// AVX2 + FMA + F16C kernels. This file is compiled with -mavx2 -mfma -mf16c (CMakeLists.txt) and must not
// define or instantiate anything inline that other files could share (no STL, helpers static): the table is
// only reached after the run-time CPU check in dispatch.cpp.
#include <immintrin.h>

#include <math.h>  // C functions only: no inline C++ wrappers compiled with AVX2 flags

#include "cpu/kernels.h"

namespace lfdn {
namespace cpu {
namespace {

// Micro-kernel: MR rows x 16 outputs, B (one k-block of a weight panel) in FP32 or FP16 (converted with
// F16C). Every output is one FMA chain over k in increasing order, whatever MR is: a row's result does not
// depend on how many rows share its group, so a score does not depend on the batch the item is in.
// (Batch 1 has only two chains in flight, but it is bound by memory bandwidth, not by FMA latency.)
template <int MR, bool F16>
inline void ukr(int64_t kc, const float* a, int64_t lda, const void* bv, float* c, int accumulate) {
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    c0[r] = accumulate ? _mm256_loadu_ps(c + r * kNR) : _mm256_setzero_ps();
    c1[r] = accumulate ? _mm256_loadu_ps(c + r * kNR + 8) : _mm256_setzero_ps();
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m256 b0, b1;
    if (F16) {
      const uint16_t* b = static_cast<const uint16_t*>(bv) + k * kNR;
      b0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
      b1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 8)));
    } else {
      const float* b = static_cast<const float*>(bv) + k * kNR;
      b0 = _mm256_loadu_ps(b);
      b1 = _mm256_loadu_ps(b + 8);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * lda + k);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_ps(c + r * kNR, c0[r]);
    _mm256_storeu_ps(c + r * kNR + 8, c1[r]);
  }
}

template <bool F16>
void gemm(int mr, int64_t kc, const float* a, int64_t lda, const void* b, float* c, int accumulate) {
  switch (mr) {
    case 1: ukr<1, F16>(kc, a, lda, b, c, accumulate); break;
    case 2: ukr<2, F16>(kc, a, lda, b, c, accumulate); break;
    case 3: ukr<3, F16>(kc, a, lda, b, c, accumulate); break;
    case 4: ukr<4, F16>(kc, a, lda, b, c, accumulate); break;
    case 5: ukr<5, F16>(kc, a, lda, b, c, accumulate); break;
    default: ukr<6, F16>(kc, a, lda, b, c, accumulate); break;
  }
}

// Packed activations (a[k*MR + r]): the same FMA chains in the same order as ukr, one broadcast stream.
template <int MR>
inline void ukr_pa(int64_t kc, const float* a, const float* b, float* c, int accumulate) {
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    c0[r] = accumulate ? _mm256_loadu_ps(c + r * kNR) : _mm256_setzero_ps();
    c1[r] = accumulate ? _mm256_loadu_ps(c + r * kNR + 8) : _mm256_setzero_ps();
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b + k * kNR), b1 = _mm256_loadu_ps(b + k * kNR + 8);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + k * MR + r);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_ps(c + r * kNR, c0[r]);
    _mm256_storeu_ps(c + r * kNR + 8, c1[r]);
  }
}

void gemm_f32_pa(int mr, int64_t kc, const float* a, const float* b, float* c, int accumulate) {
  switch (mr) {
    case 1: ukr_pa<1>(kc, a, b, c, accumulate); break;
    case 2: ukr_pa<2>(kc, a, b, c, accumulate); break;
    case 3: ukr_pa<3>(kc, a, b, c, accumulate); break;
    case 4: ukr_pa<4>(kc, a, b, c, accumulate); break;
    case 5: ukr_pa<5>(kc, a, b, c, accumulate); break;
    default: ukr_pa<6>(kc, a, b, c, accumulate); break;
  }
}

void gemm_f32(int mr, int64_t kc, const float* a, int64_t lda, const float* b, float* c, int accumulate) {
  gemm<false>(mr, kc, a, lda, b, c, accumulate);
}

void gemm_f16(int mr, int64_t kc, const float* a, int64_t lda, const uint16_t* b, float* c, int accumulate) {
  gemm<true>(mr, kc, a, lda, b, c, accumulate);
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void moments(const float* x, int64_t n, float eps, float* mean, float* rstd) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
  }
  float sum = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) sum += x[i];
  const float m = sum / static_cast<float>(n);
  const __m256 mv = _mm256_set1_ps(m);
  __m256 q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps();
  i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), mv);
    const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mv);
    q0 = _mm256_fmadd_ps(d0, d0, q0);
    q1 = _mm256_fmadd_ps(d1, d1, q1);
  }
  float sq = hsum(_mm256_add_ps(q0, q1));
  for (; i < n; ++i) sq += (x[i] - m) * (x[i] - m);
  *mean = m;
  *rstd = 1.0f / sqrtf(sq / static_cast<float>(n) + eps);
}

// exp(x) for x in [-87, 88] (clamped): Cody-Waite reduction by ln 2 and a degree-6 polynomial (Cephes
// expf coefficients), about 1 ulp; 2^n is built in the exponent bits.
inline __m256 exp256(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

inline __m256 silu256(__m256 v) {
  const __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f), exp256(_mm256_sub_ps(_mm256_setzero_ps(), v)));
  return _mm256_div_ps(v, den);
}

inline float silu1(float v) { return v / (1.0f + expf(-v)); }

void gn_silu(const float* x, int64_t n, float mean, float rstd, const float* g, const float* b, float* out) {
  const __m256 mv = _mm256_set1_ps(mean), rv = _mm256_set1_ps(rstd);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xn = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rv);
    const __m256 v = _mm256_fmadd_ps(xn, _mm256_loadu_ps(g + i), _mm256_loadu_ps(b + i));
    _mm256_storeu_ps(out + i, silu256(v));
  }
  for (; i < n; ++i) out[i] = silu1((x[i] - mean) * rstd * g[i] + b[i]);
}

void silu(const float* x, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, silu256(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) out[i] = silu1(x[i]);
}

double fma_loop(int64_t iters, float* sink) {
  constexpr int kChains = 12;
  __m256 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_ps(1.0f + 0.001f * j);
  const __m256 m = _mm256_set1_ps(0.9999999f), add = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], m, add);
  }
  __m256 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm256_add_ps(s, acc[j]);
  *sink = hsum(s);
  return 2.0 * 8 * kChains * static_cast<double>(iters);
}

}  // namespace

const Kernels* avx2_kernels() {
  static const Kernels k{"avx2", kMR, gemm_f32, gemm_f32_pa, gemm_f16, f16_to_f32, moments, gn_silu, silu, fma_loop};
  return &k;
}

}  // namespace cpu
}  // namespace lfdn
