// AVX2 + FMA + F16C kernels. This file is compiled with -mavx2 -mfma -mf16c (CMakeLists.txt) and must not
// define or instantiate anything inline that other files could share (no STL; everything in the anonymous
// namespace, kernels_isa.inl included): the table is only reached after the run-time CPU check in dispatch.cpp.
#include <immintrin.h>

#include <math.h>  // C functions only: no inline C++ wrappers compiled with AVX2 flags

#include "cpu/kernels.h"

namespace lfdn {
namespace cpu {
namespace {

// The vector ops of kernels_isa.inl: 8-lane ymm registers, two per 16-output weight row.
struct Avx2 {
  using vec = __m256;
  static constexpr int kLanes = 8;
  static constexpr int kMomentAccs = 2;  // 16 elements per step, reduced as (lanes 0-7) + (lanes 8-15)
  static constexpr bool kMaskedTail = false;
  static constexpr int kF16Step = 8;
  static constexpr int kFmaChains = 12;
  static vec zero() { return _mm256_setzero_ps(); }
  static vec set1(float f) { return _mm256_set1_ps(f); }
  static vec load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
  static vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static vec sub(vec a, vec b) { return _mm256_sub_ps(a, b); }
  static vec mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
  static vec div(vec a, vec b) { return _mm256_div_ps(a, b); }
  static vec min(vec a, vec b) { return _mm256_min_ps(a, b); }
  static vec max(vec a, vec b) { return _mm256_max_ps(a, b); }
  static vec neg(vec v) { return _mm256_sub_ps(_mm256_setzero_ps(), v); }
  static vec fmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static vec fnmadd(vec a, vec b, vec c) { return _mm256_fnmadd_ps(a, b, c); }
  static vec round_nearest(vec v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static vec pow2i(vec n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
  static float hsum(vec v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static void load_b(const float* b, vec* v) {
    v[0] = _mm256_loadu_ps(b);
    v[1] = _mm256_loadu_ps(b + 8);
  }
  static void load_b(const uint16_t* b, vec* v) {  // F16C
    v[0] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
    v[1] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 8)));
  }
  static void f16_block(const uint16_t* src, float* dst) {
    _mm256_storeu_ps(dst, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src))));
  }
  static float f16_one(uint16_t h) { return _cvtsh_ss(h); }
};

#define LFDN_ISA_UNROLL_K 4
#include "cpu/kernels_isa.inl"
#undef LFDN_ISA_UNROLL_K

}  // namespace

const Kernels* avx2_kernels() {
  static const Kernels k = [] {
    Kernels t{"avx2",
              kMR,
              isa_gemm_f32<Avx2, kMR>,
              isa_gemm_f32_pa<Avx2, kMR>,
              isa_gemm_f16<Avx2, kMR>,
              isa_f16_to_f32<Avx2>,
              isa_moments<Avx2>,
              isa_gn_silu<Avx2>,
              isa_silu<Avx2>,
              isa_fma_loop<Avx2>};
#if defined(LFDN_HAVE_AVXVNNI_KERNELS)
    if (cpu_has_avx_vnni()) {  // the INT8 entries exist only where vpdpbusd (VEX) does
      t.gemm_i8 = avxvnni_gemm_i8;
      t.gemm_i8_pa = avxvnni_gemm_i8_pa;
      t.quantize_i8 = avxvnni_quantize_i8;
      t.i8_act_offset = 128;
      t.i8_dot_loop = avxvnni_dot_loop;
      t.i8_epilogue = avxvnni_i8_epilogue;
    }
#endif
    return t;
  }();
  return &k;
}

}  // namespace cpu
}  // namespace lfdn
