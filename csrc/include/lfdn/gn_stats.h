// GroupNorm(1 group) row statistics that hold for any finite input: one implementation shared by the CPU
// kernels, the CUDA kernels (prologue, legacy tile, reference) and the tests.
//
// Why: the statistics are accumulated in FP32. The centred sum of squares overflows once |x - mean| exceeds
// ~1.8e19 (and the plain sum once n * max|x| exceeds FLT_MAX); the variance is then inf, rstd 0, and the row
// silently becomes SiLU(beta). So a row whose max |x| is above kGnScaleFreeLimit (2^32) is first multiplied by
// a power of two, inv_scale = 2^-e with max|x| * inv_scale in [0.5, 1), and its statistics are taken of the
// scaled values; the normalised value is then
//     gn_normalize(x) = (x * inv_scale - mean) * rstd,   rstd = 1 / sqrt(var + eps * inv_scale^2)
// with mean and var of the scaled row: exactly (x - mean_x) / sqrt(var_x + eps) in real arithmetic, because
// the scaling is a power of two (exact) and eps is scaled with it. Every intermediate is bounded by n (sum)
// and 4n (squares), so nothing overflows for any finite row. Rows with max |x| <= 2^32 keep inv_scale = 1,
// i.e. exactly the unscaled computation (bit-identical to the kernels before this guard: x * 1.0f == x and
// eps * 1 * 1 == eps). Rows holding NaN or +-inf keep inv_scale = 1 as well, so they propagate as before.
//
// Tiny rows (1e-30 and below) need no scaling: their squares underflow to 0 where eps dominates anyway.
//
// Callers reduce in their own order (SIMD lanes, warp shuffles); what is shared is the rule: first max|x|
// (gn_input_scale), then sum of x * inv_scale (gn_mean), then the centred squares (gn_rstd), then
// gn_normalize. gn_row_stats is the sequential reference of the whole rule.
#pragma once

#include <cstdint>  // (NVRTC: the toolchain test's shim)
#if !defined(__CUDACC_RTC__)
#include <math.h>
#endif

#if defined(__CUDACC__)
#define LFDN_GN_HD __host__ __device__ __forceinline__
#else
#define LFDN_GN_HD inline
#endif

namespace lfdn {

constexpr float kGnScaleFreeLimit = 4294967296.0f;  // 2^32: rows up to this max |x| are not rescaled

struct GnStats {
  float inv_scale = 1.0f;  // a power of two (1 for rows within kGnScaleFreeLimit or non-finite rows)
  float mean = 0.0f;       // of x * inv_scale
  float rstd = 0.0f;       // 1 / sqrt(var(x * inv_scale) + eps * inv_scale^2)
};

// NaN-propagating max (fmaxf would drop a NaN; the GroupNorm rescaling and the FP16 range guard must see it to
// leave the row unscaled). Used by every kernel's max reductions.
LFDN_GN_HD float gn_nan_max(float a, float b) { return (a > b || a != a) ? a : b; }

// 1, or the power of two that brings max_abs into [0.5, 1) when max_abs > kGnScaleFreeLimit and finite.
LFDN_GN_HD float gn_input_scale(float max_abs) {
  if (!(max_abs > kGnScaleFreeLimit) || !(max_abs <= 3.402823466e38f)) return 1.0f;  // in range, NaN or inf
  int e = 0;
  frexpf(max_abs, &e);            // max_abs = m * 2^e, m in [0.5, 1)
  return ldexpf(1.0f, -e);        // max_abs * 2^-e in [0.5, 1)
}

LFDN_GN_HD float gn_mean(float sum_scaled, int64_t n) { return sum_scaled / static_cast<float>(n); }

LFDN_GN_HD float gn_rstd(float centred_sq_sum_scaled, int64_t n, float eps, float inv_scale) {
  // eps * inv_scale^2 may underflow to 0 for huge rows: eps is then far below their variance anyway
  return 1.0f / sqrtf(centred_sq_sum_scaled / static_cast<float>(n) + eps * inv_scale * inv_scale);
}

LFDN_GN_HD float gn_normalize(float x, const GnStats& s) { return (x * s.inv_scale - s.mean) * s.rstd; }

// The whole rule, sequentially (the CPU's scaled path and the reference of the tests).
LFDN_GN_HD GnStats gn_row_stats(const float* x, int64_t n, float eps) {
  GnStats s;
  float m = 0.0f;
  for (int64_t k = 0; k < n; ++k) m = gn_nan_max(m, fabsf(x[k]));
  s.inv_scale = gn_input_scale(m);
  float sum = 0.0f;
  for (int64_t k = 0; k < n; ++k) sum += x[k] * s.inv_scale;
  s.mean = gn_mean(sum, n);
  float q = 0.0f;
  for (int64_t k = 0; k < n; ++k) {
    const float d = x[k] * s.inv_scale - s.mean;
    q += d * d;
  }
  s.rstd = gn_rstd(q, n, eps, s.inv_scale);
  return s;
}

}  // namespace lfdn
