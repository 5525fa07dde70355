// AArch64 Advanced SIMD (NEON) kernels: FP32 FMA (fmla), FP16 weights widened in registers (fcvtl, base
// ARMv8.0). Advanced SIMD is part of the AArch64 base architecture, so this file needs no extra compiler flags;
// dispatch.cpp still selects it only when HWCAP reports FP and ASIMD. Built only for AArch64 targets
// (CMakeLists.txt). Helpers are static: nothing here is shared with other translation units.
#include <arm_neon.h>

#include <math.h>  // C functions only

#include "cpu/kernels.h"

namespace lfdn {
namespace cpu {
namespace {

constexpr int kMRNeon = 6;  // 6 rows x 16 outputs = 24 accumulators + 4 weight registers of the 32

inline void load_b(const float* b, float32x4_t* v) {
  v[0] = vld1q_f32(b);
  v[1] = vld1q_f32(b + 4);
  v[2] = vld1q_f32(b + 8);
  v[3] = vld1q_f32(b + 12);
}

inline void load_b(const uint16_t* b, float32x4_t* v) {
  const float16x8_t lo = vreinterpretq_f16_u16(vld1q_u16(b));
  const float16x8_t hi = vreinterpretq_f16_u16(vld1q_u16(b + 8));
  v[0] = vcvt_f32_f16(vget_low_f16(lo));
  v[1] = vcvt_high_f32_f16(lo);
  v[2] = vcvt_f32_f16(vget_low_f16(hi));
  v[3] = vcvt_high_f32_f16(hi);
}

// Every output is one fused multiply-add chain over k in increasing order whatever MR is: a row's result
// does not depend on the group it is computed in.
template <int MR, class T>
inline void ukr(int64_t kc, const float* a, int64_t lda, const T* b, float* c, int accumulate) {
  float32x4_t acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = accumulate ? vld1q_f32(c + r * kNR + 4 * j) : vdupq_n_f32(0.0f);
  for (int64_t k = 0; k < kc; ++k) {
    float32x4_t bv[4];
    load_b(b + k * kNR, bv);
    for (int r = 0; r < MR; ++r) {
      const float av = a[r * lda + k];
      for (int j = 0; j < 4; ++j) acc[r][j] = vfmaq_n_f32(acc[r][j], bv[j], av);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) vst1q_f32(c + r * kNR + 4 * j, acc[r][j]);
}

template <class T>
void gemm(int mr, int64_t kc, const float* a, int64_t lda, const T* b, float* c, int accumulate) {
  switch (mr) {
    case 1: ukr<1>(kc, a, lda, b, c, accumulate); break;
    case 2: ukr<2>(kc, a, lda, b, c, accumulate); break;
    case 3: ukr<3>(kc, a, lda, b, c, accumulate); break;
    case 4: ukr<4>(kc, a, lda, b, c, accumulate); break;
    case 5: ukr<5>(kc, a, lda, b, c, accumulate); break;
    default: ukr<6>(kc, a, lda, b, c, accumulate); break;
  }
}

void gemm_f32(int mr, int64_t kc, const float* a, int64_t lda, const float* b, float* c, int accumulate) {
  gemm(mr, kc, a, lda, b, c, accumulate);
}

void gemm_f16(int mr, int64_t kc, const float* a, int64_t lda, const uint16_t* b, float* c, int accumulate) {
  gemm(mr, kc, a, lda, b, c, accumulate);
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src + i));
    vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
    vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
  }
  for (; i < n; ++i) {  // one lane through the same instruction
    const float16x4_t h = vreinterpret_f16_u16(vdup_n_u16(src[i]));
    dst[i] = vgetq_lane_f32(vcvt_f32_f16(h), 0);
  }
}

void moments(const float* x, int64_t n, float eps, float* mean, float* rstd) {
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = vaddq_f32(s0, vld1q_f32(x + i));
    s1 = vaddq_f32(s1, vld1q_f32(x + i + 4));
  }
  float sum = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; ++i) sum += x[i];
  const float m = sum / static_cast<float>(n);
  const float32x4_t mv = vdupq_n_f32(m);
  float32x4_t q0 = vdupq_n_f32(0.0f), q1 = vdupq_n_f32(0.0f);
  i = 0;
  for (; i + 8 <= n; i += 8) {
    const float32x4_t d0 = vsubq_f32(vld1q_f32(x + i), mv), d1 = vsubq_f32(vld1q_f32(x + i + 4), mv);
    q0 = vfmaq_f32(q0, d0, d0);
    q1 = vfmaq_f32(q1, d1, d1);
  }
  float sq = vaddvq_f32(vaddq_f32(q0, q1));
  for (; i < n; ++i) sq += (x[i] - m) * (x[i] - m);
  *mean = m;
  *rstd = 1.0f / sqrtf(sq / static_cast<float>(n) + eps);
}

// exp(x), x clamped to [-87, 88]: the x86 tables' Cody-Waite reduction and degree-6 polynomial, 4 lanes.
inline float32x4_t exp4(float32x4_t x) {
  x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.0f)), vdupq_n_f32(88.0f));
  const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
  p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
  p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

inline float32x4_t silu4(float32x4_t v) { return vdivq_f32(v, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(v)))); }

inline float silu1(float v) { return v / (1.0f + expf(-v)); }

void gn_silu(const float* x, int64_t n, float mean, float rstd, const float* g, const float* b, float* out) {
  const float32x4_t mv = vdupq_n_f32(mean), rv = vdupq_n_f32(rstd);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t xn = vmulq_f32(vsubq_f32(vld1q_f32(x + i), mv), rv);
    vst1q_f32(out + i, silu4(vfmaq_f32(vld1q_f32(b + i), xn, vld1q_f32(g + i))));
  }
  for (; i < n; ++i) out[i] = silu1((x[i] - mean) * rstd * g[i] + b[i]);
}

void silu(const float* x, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(out + i, silu4(vld1q_f32(x + i)));
  for (; i < n; ++i) out[i] = silu1(x[i]);
}

double fma_loop(int64_t iters, float* sink) {
  constexpr int kChains = 16;
  float32x4_t acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = vdupq_n_f32(1.0f + 0.001f * j);
  const float32x4_t m = vdupq_n_f32(0.9999999f), add = vdupq_n_f32(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < kChains; ++j) acc[j] = vfmaq_f32(add, acc[j], m);
  float32x4_t s = acc[0];
  for (int j = 1; j < kChains; ++j) s = vaddq_f32(s, acc[j]);
  *sink = vaddvq_f32(s);
  return 2.0 * 4 * kChains * static_cast<double>(iters);
}

}  // namespace

const Kernels* neon_kernels() {
  static const Kernels k{"neon", kMRNeon, gemm_f32, nullptr, gemm_f16, f16_to_f32, moments, gn_silu, silu, fma_loop};
  return &k;
}

}  // namespace cpu
}  // namespace lfdn
