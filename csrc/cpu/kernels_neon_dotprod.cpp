// INT8 inner kernels of the neon table: INT8 weights and activation codes, exact INT32 accumulation with the
// Armv8.2 dot-product extension (sdot, FEAT_DotProd: vdotq_s32 / vdotq_laneq_s32). Compiled with
// -march=armv8.2-a+dotprod (CMakeLists.txt) and reached only when HWCAP reports ASIMDDP (cpu_has_neon_dotprod
// in dispatch.cpp): a Cortex-A53/A72 class CPU never executes a byte of it, and its neon table has no INT8
// entries (an INT8 layer is then refused with kUnsupported). Nothing here is inline-shared with other files.
//
// sdot multiplies signed bytes by signed bytes and adds each group of four products to a dword, so the
// activations are stored as signed codes q in [-127, 127] (quantize below, i8_act_offset 0, the scalar table's
// codes): the INT32 results are the exact sum of q * w, bit-identical to the scalar table's.
// Layout: a packed weight panel row is 16 outputs x 4 k = 64 int8 = four q registers (outputs 0-3, 4-7, 8-11,
// 12-15; output j's weights at k = 4*k4..+3 in dword j % 4, lowest k in the low byte); an activation k-quad is
// one dword, used in all four lanes (ld1r, or a lane of a q register holding four rows' quads for the
// k-quad-major packed activations). One row x 16 outputs = 4 int32x4 accumulators: 6 rows (the table's mr_max)
// take 24 of the 32 vector registers, the weight row 4 more.
// Where the CPU also has the Armv8.6 INT8 matrix multiply (I8MM), the table's gemm_i8 / gemm_i8_pa are the smmla
// kernels at the end of this file (the same INT32 sums), and i8_dot_loop their smmla probe; quantize_i8 and the
// epilogue stay these.
#include <arm_neon.h>

#include <cstring>

#include "cpu/kernels.h"

#if !defined(__ARM_FEATURE_DOTPROD)
#error "kernels_neon_dotprod.cpp must be compiled with the dot-product extension (-march=armv8.2-a+dotprod)"
#endif

namespace lfdn {
namespace cpu {
namespace {

constexpr int kMRMax = 6;  // the neon table's mr_max: 24 accumulators + 4 weight registers of the 32

inline int8x16_t bytes(uint32x4_t v) { return vreinterpretq_s8_u32(v); }

template <int MR, bool PA>
inline void ukr(int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c, int accumulate) {
  int32x4_t acc[MR][4];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) acc[r][q] = accumulate ? vld1q_s32(c + r * kNR + 4 * q) : vdupq_n_s32(0);
  for (int64_t k = 0; k < kc4; ++k) {
    const int8x16_t b0 = vld1q_s8(reinterpret_cast<const int8_t*>(b + k * kNR));
    const int8x16_t b1 = vld1q_s8(reinterpret_cast<const int8_t*>(b + k * kNR + 4));
    const int8x16_t b2 = vld1q_s8(reinterpret_cast<const int8_t*>(b + k * kNR + 8));
    const int8x16_t b3 = vld1q_s8(reinterpret_cast<const int8_t*>(b + k * kNR + 12));
    if (PA) {
      // four rows' quads per q register, one lane each (vdotq_laneq_s32); the last MR % 4 rows by ld1r
      const uint32_t* ak = a + k * MR;
      constexpr int kQuads = MR / 4;
#pragma GCC unroll 2
      for (int g = 0; g < kQuads; ++g) {
        const int8x16_t av = bytes(vld1q_u32(ak + 4 * g));
#define LFDN_LANE(L)                                               \
  acc[4 * g + L][0] = vdotq_laneq_s32(acc[4 * g + L][0], b0, av, L); \
  acc[4 * g + L][1] = vdotq_laneq_s32(acc[4 * g + L][1], b1, av, L); \
  acc[4 * g + L][2] = vdotq_laneq_s32(acc[4 * g + L][2], b2, av, L); \
  acc[4 * g + L][3] = vdotq_laneq_s32(acc[4 * g + L][3], b3, av, L);
        LFDN_LANE(0)
        LFDN_LANE(1)
        LFDN_LANE(2)
        LFDN_LANE(3)
#undef LFDN_LANE
      }
#pragma GCC unroll 4
      for (int r = 4 * kQuads; r < MR; ++r) {
        const int8x16_t av = bytes(vld1q_dup_u32(ak + r));
        acc[r][0] = vdotq_s32(acc[r][0], b0, av);
        acc[r][1] = vdotq_s32(acc[r][1], b1, av);
        acc[r][2] = vdotq_s32(acc[r][2], b2, av);
        acc[r][3] = vdotq_s32(acc[r][3], b3, av);
      }
    } else {
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const int8x16_t av = bytes(vld1q_dup_u32(a + r * lda4 + k));  // ld1r: the row's quad in every lane
        acc[r][0] = vdotq_s32(acc[r][0], b0, av);
        acc[r][1] = vdotq_s32(acc[r][1], b1, av);
        acc[r][2] = vdotq_s32(acc[r][2], b2, av);
        acc[r][3] = vdotq_s32(acc[r][3], b3, av);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) vst1q_s32(c + r * kNR + 4 * q, acc[r][q]);
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

// 16 values -> 16 signed codes: one FP32 multiply, fcvtns (round to nearest, ties to even; saturating), the clamp
// to [-127, 127], then two saturating narrows (exact: the values are already in range).
inline int8x16_t codes16(const float* x, float32x4_t inv) {
  const int32x4_t lo = vdupq_n_s32(-127), hi = vdupq_n_s32(127);
  int32x4_t q[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)
    q[i] = vminq_s32(vmaxq_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 4 * i), inv)), lo), hi);
  const int16x8_t h0 = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
  const int16x8_t h1 = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
  return vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1));
}

}  // namespace

// Declared in kernels_neon.cpp (the table that uses them).
void neon_dotprod_gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                          int accumulate);
void neon_dotprod_gemm_i8_pa(int mr, int64_t kc4, const uint32_t* a, const uint32_t* b, int32_t* c, int accumulate);
void neon_dotprod_quantize_i8(const float* x, int64_t n, uint32_t* dst, float* scale);
double neon_dotprod_dot_loop(int64_t iters, float* sink);
void neon_dotprod_i8_epilogue(const int32_t* c, int nn, int offset, const int32_t* colsum, float sa, const float* ws,
                              const float* bias, const float* res, float* out);

void neon_dotprod_gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                          int accumulate) {
  gemm<false>(mr, kc4, a, lda4, b, c, accumulate);
}

void neon_dotprod_gemm_i8_pa(int mr, int64_t kc4, const uint32_t* a, const uint32_t* b, int32_t* c, int accumulate) {
  gemm<true>(mr, kc4, a, 0, b, c, accumulate);
}

// The rule of Kernels::quantize_i8 with signed codes, bit-identical to quantize_i8_rows_portable(..., 0, ...): the
// maximum of |x| is exact (fabs, fmax; the finite check is separate: x - x is 0 exactly for finite x), x * inv is
// one IEEE multiply, fcvtns rounds half to even as nearbyint does in the default mode, and the clamp to
// [-127, 127] after the conversion equals the portable clamp before it (|x * inv| <= 127 * (1 + 2^-23) rounds to
// at most 127). The tail (n % 16 values) goes through the same instructions from a zero-padded copy.
void neon_dotprod_quantize_i8(const float* x, int64_t n, uint32_t* dst, float* scale) {
  const float32x4_t zero = vdupq_n_f32(0.0f);
  float32x4_t vmax = zero;
  uint32x4_t finite = vdupq_n_u32(~0u);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t v = vld1q_f32(x + i);
    finite = vandq_u32(finite, vceqq_f32(vsubq_f32(v, v), zero));  // inf or NaN: x - x is NaN
    vmax = vmaxq_f32(vmax, vabsq_f32(v));
  }
  if (i < n) {
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    std::memcpy(t, x + i, sizeof(float) * static_cast<size_t>(n - i));
    const float32x4_t v = vld1q_f32(t);
    finite = vandq_u32(finite, vceqq_f32(vsubq_f32(v, v), zero));
    vmax = vmaxq_f32(vmax, vabsq_f32(v));
  }
  const bool bad = vminvq_u32(finite) == 0;
  const float amax = vmaxvq_f32(vmax);
  const int64_t n4 = (n + 3) / 4;
  int8_t* d = reinterpret_cast<int8_t*>(dst);
  if (bad || amax < kI8MinAmax) {
    std::memset(d, 0, static_cast<size_t>(4 * n4));
    *scale = bad ? __builtin_nanf("") : 0.0f;
    return;
  }
  const float32x4_t inv = vdupq_n_f32(127.0f / amax);
  i = 0;
  for (; i + 16 <= n; i += 16) vst1q_s8(d + i, codes16(x + i, inv));
  if (i < n) {
    float t[16] = {};
    std::memcpy(t, x + i, sizeof(float) * static_cast<size_t>(n - i));
    int8_t q[16];
    vst1q_s8(q, codes16(t, inv));  // the zero padding gives code 0, the code of the quad padding too
    std::memcpy(d + i, q, static_cast<size_t>(4 * n4 - i));
  }
  *scale = amax / 127.0f;
}

double neon_dotprod_dot_loop(int64_t iters, float* sink) {
  constexpr int kChains = 16;  // > sdot latency x throughput on current cores (a Neoverse V1: 3 x 4)
  int32x4_t acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = vdupq_n_s32(j);
  int8x16_t a = vdupq_n_s8(3), b = vdupq_n_s8(-1);
  __asm__("" : "+w"(a), "+w"(b));  // opaque operands: the chains cannot be folded
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kChains; ++j) acc[j] = vdotq_s32(acc[j], a, b);
  }
  int32x4_t s = acc[0];
  for (int j = 1; j < kChains; ++j) s = vaddq_s32(s, acc[j]);
  *sink = static_cast<float>(vaddvq_s32(s));
  return 2.0 * 16 * kChains * static_cast<double>(iters);
}

// Kernels::i8_epilogue: the portable loop's arithmetic four lanes at a time (scvtf rounds to nearest as the
// int -> float conversion does; a multiply, a multiply, then the adds: no fmla, the build is ISO C++ with
// -ffp-contract=off), the last nn % 4 outputs by that loop itself.
void neon_dotprod_i8_epilogue(const int32_t* c, int nn, int offset, const int32_t* colsum, float sa, const float* ws,
                              const float* bias, const float* res, float* out) {
  const int32x4_t off = vdupq_n_s32(offset);
  const float32x4_t vsa = vdupq_n_f32(sa);
  int j = 0;
  for (; j + 4 <= nn; j += 4) {
    const int32x4_t acc = vmlsq_s32(vld1q_s32(c + j), off, vld1q_s32(colsum + j));
    float32x4_t v = vmulq_f32(vcvtq_f32_s32(acc), vsa);
    v = vmulq_f32(v, vld1q_f32(ws + j));
    if (bias != nullptr) v = vaddq_f32(v, vld1q_f32(bias + j));
    if (res != nullptr) v = vaddq_f32(v, vld1q_f32(res + j));
    vst1q_f32(out + j, v);
  }
  for (; j < nn; ++j) {
    float v = static_cast<float>(c[j] - offset * colsum[j]) * sa;
    v = v * ws[j];
    if (bias != nullptr) v += bias[j];
    if (res != nullptr) v += res[j];
    out[j] = v;
  }
}

#if defined(LFDN_HAVE_NEON_I8MM_KERNELS)
// ---- The same INT32 sums with the Armv8.6 INT8 matrix multiply (FEAT_I8MM, smmla; HWCAP2_I8MM): only these
// functions are compiled for it (the pragma below), and the table uses them only when the CPU reports it.
// smmla d, n, m: d (2 x 2 int32, row-major) += n (2 x 8 int8: bytes 0-7 row 0, 8-15 row 1) x m^T (m: 2 x 8, bytes
// 0-7 column 0): two rows x two outputs x 8 k per instruction, twice an sdot's products. The operands are built in
// registers from the packed layouts: two k-quads of four outputs (two q loads) zip into the m operands of outputs
// (j, j+1) and (j+2, j+3); a row pair's two k-quads into the n operand. An accumulator holds (r, j), (r, j+1),
// (r+1, j), (r+1, j+1): 3 row pairs x 8 output pairs = 24 accumulators for 6 rows x 16 outputs. An odd row count
// pairs the last row with zeros, an odd k-quad count pairs the last quad with zeros (nothing is read beyond the
// row group or the block). Per two k-quads of 6 rows x 16 outputs: 24 smmla and 8 zips for the weights (sdot: 48).
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod+i8mm")
namespace {

inline int32x4_t zip_lo64(int32x4_t a, int32x4_t b) {
  return vreinterpretq_s32_s64(vzip1q_s64(vreinterpretq_s64_s32(a), vreinterpretq_s64_s32(b)));
}
inline int32x4_t zip_hi64(int32x4_t a, int32x4_t b) {
  return vreinterpretq_s32_s64(vzip2q_s64(vreinterpretq_s64_s32(a), vreinterpretq_s64_s32(b)));
}

// The n operand of row pair (r, r+1) at k-quads k, k+1 (TWO false: k+1 does not exist, zeros; r+1 == MR: zeros).
template <int MR, bool PA, bool TWO>
inline int8x16_t a_pair(const uint32_t* a, int64_t lda4, int64_t k, int r) {
  const uint32x2_t z = vdup_n_u32(0);
  const bool pair = r + 1 < MR;
  if (PA) {  // a[k*MR + r]: rows r, r+1 adjacent in each k-quad; a 2 x 2 dword transpose
    const uint32x2_t p0 = pair ? vld1_u32(a + k * MR + r) : vset_lane_u32(a[k * MR + r], z, 0);
    const uint32x2_t p1 = !TWO ? z : pair ? vld1_u32(a + (k + 1) * MR + r) : vset_lane_u32(a[(k + 1) * MR + r], z, 0);
    return vreinterpretq_s8_u32(vcombine_u32(vzip1_u32(p0, p1), vzip2_u32(p0, p1)));
  }
  // a[r*lda4 + k]: quads k, k+1 adjacent in each row
  const uint32x2_t lo = TWO ? vld1_u32(a + r * lda4 + k) : vset_lane_u32(a[r * lda4 + k], z, 0);
  const uint32x2_t hi = !pair ? z : TWO ? vld1_u32(a + (r + 1) * lda4 + k) : vset_lane_u32(a[(r + 1) * lda4 + k], z, 0);
  return vreinterpretq_s8_u32(vcombine_u32(lo, hi));
}

// One step of two k-quads (TWO) or of the last odd one: the row pairs' n operands, then for each group of four
// outputs its two m operands (zips of the two k-quads' weight rows) and their smmla for every row pair. 3 x 8
// accumulators + 3 n operands + 2 weight rows + 2 m operands = 31 of the 32 vector registers.
template <int MR, bool PA, bool TWO>
inline void step_mm(const uint32_t* a, int64_t lda4, const uint32_t* b, int64_t k, int32x4_t (*acc)[8]) {
  constexpr int RP = (MR + 1) / 2;
  int8x16_t an[RP];
#pragma GCC unroll 4
  for (int rp = 0; rp < RP; ++rp) an[rp] = a_pair<MR, PA, TWO>(a, lda4, k, 2 * rp);
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    const uint32x4_t b0 = vld1q_u32(b + k * kNR + 4 * q);
    const uint32x4_t b1 = TWO ? vld1q_u32(b + (k + 1) * kNR + 4 * q) : vdupq_n_u32(0);
    const int8x16_t m0 = vreinterpretq_s8_u32(vzip1q_u32(b0, b1));  // outputs 4q, 4q + 1: 8 k each
    const int8x16_t m1 = vreinterpretq_s8_u32(vzip2q_u32(b0, b1));  // outputs 4q + 2, 4q + 3
#pragma GCC unroll 4
    for (int rp = 0; rp < RP; ++rp) {
      acc[rp][2 * q] = vmmlaq_s32(acc[rp][2 * q], an[rp], m0);
      acc[rp][2 * q + 1] = vmmlaq_s32(acc[rp][2 * q + 1], an[rp], m1);
    }
  }
}

template <int MR, bool PA>
inline void ukr_mm(int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c, int accumulate) {
  constexpr int RP = (MR + 1) / 2;
  const int32x4_t z = vdupq_n_s32(0);
  int32x4_t acc[RP][8];  // [row pair][output pair]: (r, j), (r, j+1), (r+1, j), (r+1, j+1)
#pragma GCC unroll 4
  for (int rp = 0; rp < RP; ++rp) {
    const int r = 2 * rp;
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const int32x4_t c0 = accumulate ? vld1q_s32(c + r * kNR + 4 * q) : z;
      const int32x4_t c1 = accumulate && r + 1 < MR ? vld1q_s32(c + (r + 1) * kNR + 4 * q) : z;
      acc[rp][2 * q] = zip_lo64(c0, c1);
      acc[rp][2 * q + 1] = zip_hi64(c0, c1);
    }
  }
  int64_t k = 0;
  for (; k + 2 <= kc4; k += 2) step_mm<MR, PA, true>(a, lda4, b, k, acc);
  if (k < kc4) step_mm<MR, PA, false>(a, lda4, b, k, acc);
#pragma GCC unroll 4
  for (int rp = 0; rp < RP; ++rp) {
    const int r = 2 * rp;
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      vst1q_s32(c + r * kNR + 4 * q, zip_lo64(acc[rp][2 * q], acc[rp][2 * q + 1]));
      if (r + 1 < MR) vst1q_s32(c + (r + 1) * kNR + 4 * q, zip_hi64(acc[rp][2 * q], acc[rp][2 * q + 1]));
    }
  }
}

template <bool PA>
void gemm_mm(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c, int accumulate) {
  switch (mr) {
    case 1: ukr_mm<1, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 2: ukr_mm<2, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 3: ukr_mm<3, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 4: ukr_mm<4, PA>(kc4, a, lda4, b, c, accumulate); break;
    case 5: ukr_mm<5, PA>(kc4, a, lda4, b, c, accumulate); break;
    default: ukr_mm<kMRMax, PA>(kc4, a, lda4, b, c, accumulate); break;
  }
}

}  // namespace

void neon_i8mm_gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                       int accumulate);
void neon_i8mm_gemm_i8_pa(int mr, int64_t kc4, const uint32_t* a, const uint32_t* b, int32_t* c, int accumulate);
double neon_i8mm_dot_loop(int64_t iters, float* sink);

void neon_i8mm_gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                       int accumulate) {
  gemm_mm<false>(mr, kc4, a, lda4, b, c, accumulate);
}

void neon_i8mm_gemm_i8_pa(int mr, int64_t kc4, const uint32_t* a, const uint32_t* b, int32_t* c, int accumulate) {
  gemm_mm<true>(mr, kc4, a, 0, b, c, accumulate);
}

// The probe of the smmla kernels (the table's i8_dot_loop where they are used): independent smmla chains, 2 ops per
// byte product (32 per instruction).
double neon_i8mm_dot_loop(int64_t iters, float* sink) {
  constexpr int kChains = 16;
  int32x4_t acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = vdupq_n_s32(j);
  int8x16_t a = vdupq_n_s8(3), b = vdupq_n_s8(-1);
  __asm__("" : "+w"(a), "+w"(b));  // opaque operands: the chains cannot be folded
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kChains; ++j) acc[j] = vmmlaq_s32(acc[j], a, b);
  }
  int32x4_t s = acc[0];
  for (int j = 1; j < kChains; ++j) s = vaddq_s32(s, acc[j]);
  *sink = static_cast<float>(vaddvq_s32(s));
  return 2.0 * 32 * kChains * static_cast<double>(iters);
}
#pragma GCC pop_options
#endif  // LFDN_HAVE_NEON_I8MM_KERNELS

}  // namespace cpu
}  // namespace lfdn
