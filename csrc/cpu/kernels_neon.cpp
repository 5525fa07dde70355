// AArch64 Advanced SIMD (NEON) kernels: FP32 FMA (fmla), FP16 weights widened in registers (fcvtl, base
// ARMv8.0). Advanced SIMD is part of the AArch64 base architecture, so this file needs no extra compiler flags;
// dispatch.cpp still selects it only when HWCAP reports FP and ASIMD. Built only for AArch64 targets
// (CMakeLists.txt). Everything is in the anonymous namespace (kernels_isa.inl included): nothing here is shared
// with other translation units. INT8 entries (sdot; smmla where the CPU also has I8MM) come from
// kernels_neon_dotprod.cpp and exist only where HWCAP reports the dot-product extension.
#include <arm_neon.h>

#include <math.h>  // C functions only
#if defined(__linux__)
#include <sys/auxv.h>
#endif

#include "cpu/kernels.h"

namespace lfdn {
namespace cpu {
namespace {

constexpr int kMRNeon = 6;  // 6 rows x 16 outputs = 24 accumulators + 4 weight registers of the 32

// The vector ops of kernels_isa.inl: 4-lane q registers, four per 16-output weight row.
struct Neon {
  using vec = float32x4_t;
  static constexpr int kLanes = 4;
  static constexpr int kMomentAccs = 2;  // 8 elements per step
  static constexpr bool kMaskedTail = false;
  static constexpr int kF16Step = 8;
  static constexpr int kFmaChains = 16;
  static vec zero() { return vdupq_n_f32(0.0f); }
  static vec set1(float f) { return vdupq_n_f32(f); }
  static vec load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, vec v) { vst1q_f32(p, v); }
  static vec add(vec a, vec b) { return vaddq_f32(a, b); }
  static vec sub(vec a, vec b) { return vsubq_f32(a, b); }
  static vec mul(vec a, vec b) { return vmulq_f32(a, b); }
  static vec div(vec a, vec b) { return vdivq_f32(a, b); }
  static vec min(vec a, vec b) { return vminq_f32(a, b); }
  static vec max(vec a, vec b) { return vmaxq_f32(a, b); }
  static vec neg(vec v) { return vnegq_f32(v); }
  static vec fmadd(vec a, vec b, vec c) { return vfmaq_f32(c, a, b); }
  static vec fnmadd(vec a, vec b, vec c) { return vfmsq_f32(c, a, b); }
  static vec round_nearest(vec v) { return vrndnq_f32(v); }
  static vec pow2i(vec n) {
    return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23));
  }
  static float hsum(vec v) { return vaddvq_f32(v); }
  static void load_b(const float* b, vec* v) {
    v[0] = vld1q_f32(b);
    v[1] = vld1q_f32(b + 4);
    v[2] = vld1q_f32(b + 8);
    v[3] = vld1q_f32(b + 12);
  }
  static void load_b(const uint16_t* b, vec* v) {
    const float16x8_t lo = vreinterpretq_f16_u16(vld1q_u16(b));
    const float16x8_t hi = vreinterpretq_f16_u16(vld1q_u16(b + 8));
    v[0] = vcvt_f32_f16(vget_low_f16(lo));
    v[1] = vcvt_high_f32_f16(lo);
    v[2] = vcvt_f32_f16(vget_low_f16(hi));
    v[3] = vcvt_high_f32_f16(hi);
  }
  static void f16_block(const uint16_t* src, float* dst) {
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src));
    vst1q_f32(dst, vcvt_f32_f16(vget_low_f16(h)));
    vst1q_f32(dst + 4, vcvt_high_f32_f16(h));
  }
  static float f16_one(uint16_t h) {  // one lane through the same instruction
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
  }
};

#define LFDN_ISA_UNROLL_K 1  // as before the shared loops: no unrolling asked for the k loop
#include "cpu/kernels_isa.inl"
#undef LFDN_ISA_UNROLL_K

}  // namespace

#if defined(LFDN_HAVE_NEON_DOTPROD_KERNELS)
// kernels_neon_dotprod.cpp (compiled with -march=armv8.2-a+dotprod; only reached when cpu_has_neon_dotprod()):
// signed codes, i8_act_offset 0, up to kMRNeon rows per call.
void neon_dotprod_gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                          int accumulate);
void neon_dotprod_gemm_i8_pa(int mr, int64_t kc4, const uint32_t* a, const uint32_t* b, int32_t* c, int accumulate);
void neon_dotprod_quantize_i8(const float* x, int64_t n, uint32_t* dst, float* scale);
double neon_dotprod_dot_loop(int64_t iters, float* sink);
void neon_dotprod_i8_epilogue(const int32_t* c, int nn, int offset, const int32_t* colsum, float sa, const float* ws,
                              const float* bias, const float* res, float* out);
#endif
#if defined(LFDN_HAVE_NEON_I8MM_KERNELS)
// The same INT32 sums with smmla (FEAT_I8MM; kernels_neon_dotprod.cpp, compiled for it only there)
void neon_i8mm_gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                       int accumulate);
void neon_i8mm_gemm_i8_pa(int mr, int64_t kc4, const uint32_t* a, const uint32_t* b, int32_t* c, int accumulate);
double neon_i8mm_dot_loop(int64_t iters, float* sink);

// HWCAP2_I8MM (Linux): the CPU has the Armv8.6 INT8 matrix multiply (unless LFDN_EDGE_CPU_FEATURES_OFF names "i8mm":
// the sdot kernels then)
static bool neon_has_i8mm() {
#if defined(__linux__)
  return (getauxval(AT_HWCAP2) & (1UL << 13)) != 0 && !cpu_feature_off("i8mm");
#else
  return false;
#endif
}
#endif

const Kernels* neon_kernels() {
  static const Kernels k = [] {
    Kernels t{"neon",
              kMRNeon,
              isa_gemm_f32<Neon, kMRNeon>,
              nullptr,  // no packed-activation FP32 kernel on this table
              isa_gemm_f16<Neon, kMRNeon>,
              isa_f16_to_f32<Neon>,
              isa_moments<Neon>,
              isa_gn_silu<Neon>,
              isa_silu<Neon>,
              isa_fma_loop<Neon>};
#if defined(LFDN_HAVE_NEON_DOTPROD_KERNELS)
    if (cpu_has_neon_dotprod()) {  // the INT8 entries exist only where sdot does (not on Cortex-A53/A72 class cores)
      t.gemm_i8 = neon_dotprod_gemm_i8;
      t.gemm_i8_pa = neon_dotprod_gemm_i8_pa;
      t.quantize_i8 = neon_dotprod_quantize_i8;
      t.i8_act_offset = 0;
      t.i8_dot_loop = neon_dotprod_dot_loop;
      t.i8_epilogue = neon_dotprod_i8_epilogue;
#if defined(LFDN_HAVE_NEON_I8MM_KERNELS)
      if (neon_has_i8mm()) {  // twice sdot's products per instruction, the same INT32 sums
        t.gemm_i8 = neon_i8mm_gemm_i8;
        t.gemm_i8_pa = neon_i8mm_gemm_i8_pa;
        t.i8_dot_loop = neon_i8mm_dot_loop;  // the peak of the instruction the kernels use
      }
#endif
    }
#endif
    return t;
  }();
  return &k;
}

}  // namespace cpu
}  // namespace lfdn
