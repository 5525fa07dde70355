// Portable kernels: plain C++ the compiler may auto-vectorise (SSE2 on x86-64, NEON on AArch64).
#include <cmath>
#include <cstring>

#include "cpu/kernels.h"

namespace lfdn {
namespace cpu {
namespace {

void gemm_f32(int mr, int64_t kc, const float* a, int64_t lda, const float* b, float* c, int accumulate) {
  for (int r = 0; r < mr; ++r) {
    float acc[kNR];
    for (int j = 0; j < kNR; ++j) acc[j] = accumulate ? c[r * kNR + j] : 0.0f;
    const float* ar = a + r * lda;
    for (int64_t k = 0; k < kc; ++k) {
      const float av = ar[k];
      const float* bk = b + k * kNR;
      for (int j = 0; j < kNR; ++j) acc[j] += av * bk[j];
    }
    for (int j = 0; j < kNR; ++j) c[r * kNR + j] = acc[j];
  }
}

// Exact binary16 -> binary32 without data-dependent loops (the compiler vectorises it): rebias the
// exponent, fix up inf/nan, and renormalise subnormals with one float subtraction.
inline float f16_bits_to_f32(uint16_t h) {
  const uint32_t shifted_exp = 0x7C00u << 13;
  uint32_t o = (static_cast<uint32_t>(h) & 0x7FFFu) << 13;
  const uint32_t exp = shifted_exp & o;
  o += (127u - 15u) << 23;
  float f;
  if (exp == shifted_exp) {
    o += (128u - 16u) << 23;  // inf / nan
    std::memcpy(&f, &o, sizeof f);
  } else if (exp == 0) {
    o += 1u << 23;            // subnormal: (1.m - 1) * 2^-14
    std::memcpy(&f, &o, sizeof f);
    f -= 6.103515625e-05f;    // 2^-14
  } else {
    std::memcpy(&f, &o, sizeof f);
  }
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  bits |= (static_cast<uint32_t>(h) & 0x8000u) << 16;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_bits_to_f32(src[i]);
}

void moments(const float* x, int64_t n, float eps, float* mean, float* rstd) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += x[i + j];
  float sum = 0.0f;
  for (int j = 0; j < 8; ++j) sum += s[j];
  for (; i < n; ++i) sum += x[i];
  const float m = sum / static_cast<float>(n);
  float q[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      const float d = x[i + j] - m;
      q[j] += d * d;
    }
  float sq = 0.0f;
  for (int j = 0; j < 8; ++j) sq += q[j];
  for (; i < n; ++i) sq += (x[i] - m) * (x[i] - m);
  *mean = m;
  *rstd = 1.0f / std::sqrt(sq / static_cast<float>(n) + eps);
}

inline float silu1(float v) { return v / (1.0f + std::exp(-v)); }

void gn_silu(const float* x, int64_t n, float mean, float rstd, const float* g, const float* b, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = silu1((x[i] - mean) * rstd * g[i] + b[i]);
}

void silu(const float* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = silu1(x[i]);
}

double fma_loop(int64_t iters, float* sink) {
  constexpr int kChains = 8;
  float acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = 1.0f + 0.001f * j;
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < kChains; ++j) acc[j] = acc[j] * 0.9999999f + 1e-7f;
  float s = 0.0f;
  for (int j = 0; j < kChains; ++j) s += acc[j];
  *sink = s;
  return 2.0 * kChains * static_cast<double>(iters);
}

// INT8 reference kernels: signed codes (i8_act_offset 0), plain integer loops, exact.
template <bool PA>
void gemm_i8_rows(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                  int accumulate) {
  for (int r = 0; r < mr; ++r) {
    int32_t acc[kNR];
    for (int j = 0; j < kNR; ++j) acc[j] = accumulate ? c[r * kNR + j] : 0;
    for (int64_t k = 0; k < kc4; ++k) {
      const uint32_t av = PA ? a[k * mr + r] : a[r * lda4 + k];
      const int8_t* bq = reinterpret_cast<const int8_t*>(b + k * kNR);
      for (int j = 0; j < kNR; ++j)
        for (int t = 0; t < 4; ++t)
          acc[j] += static_cast<int32_t>(static_cast<int8_t>((av >> (8 * t)) & 0xFFu)) * bq[j * 4 + t];
    }
    for (int j = 0; j < kNR; ++j) c[r * kNR + j] = acc[j];
  }
}

void gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c, int accumulate) {
  gemm_i8_rows<false>(mr, kc4, a, lda4, b, c, accumulate);
}

void gemm_i8_pa(int mr, int64_t kc4, const uint32_t* a, const uint32_t* b, int32_t* c, int accumulate) {
  gemm_i8_rows<true>(mr, kc4, a, 0, b, c, accumulate);
}

void quantize_i8(const float* x, int64_t n, uint32_t* dst, float* scale) {
  quantize_i8_rows_portable(x, n, 0, dst, scale);
}

}  // namespace

const Kernels& scalar_kernels() {
  static const Kernels k = [] {
    Kernels t{"scalar", kMR, gemm_f32, nullptr, nullptr, f16_to_f32, moments, gn_silu, silu, fma_loop};
    t.gemm_i8 = gemm_i8;
    t.gemm_i8_pa = gemm_i8_pa;
    t.quantize_i8 = quantize_i8;
    t.i8_act_offset = 0;
    return t;
  }();
  return k;
}

}  // namespace cpu
}  // namespace lfdn
