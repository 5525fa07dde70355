// AVX-512 (F/BW/VL/DQ) + FMA + F16C kernels. Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq
// -mfma -mf16c (CMakeLists.txt) and reached only after the run-time CPU check in dispatch.cpp; like
// kernels_avx2.cpp it defines nothing inline that other files could share (no STL; everything in the anonymous
// namespace, kernels_isa.inl included).
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

constexpr int kMRMax = 12;  // accumulators per call; 12 zmm + the weight row + headroom of the 32
constexpr int kMR2P = 14;   // two-panel calls: 28 zmm accumulators + 2 weight rows + a broadcast of the 32

// The vector ops of kernels_isa.inl: 16-lane zmm registers, one per 16-output weight row.
struct Avx512 {
  using vec = __m512;
  static constexpr int kLanes = 16;
  static constexpr int kMomentAccs = 1;
  static constexpr bool kMaskedTail = true;
  static constexpr int kF16Step = 16;
  static constexpr int kFmaChains = 16;  // > FMA latency x throughput on current cores
  static vec zero() { return _mm512_setzero_ps(); }
  static vec set1(float f) { return _mm512_set1_ps(f); }
  static vec load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static vec sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
  static vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  static vec div(vec a, vec b) { return _mm512_div_ps(a, b); }
  static vec min(vec a, vec b) { return _mm512_min_ps(a, b); }
  static vec max(vec a, vec b) { return _mm512_max_ps(a, b); }
  static vec neg(vec v) { return _mm512_sub_ps(_mm512_setzero_ps(), v); }
  static vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static vec fnmadd(vec a, vec b, vec c) { return _mm512_fnmadd_ps(a, b, c); }
  static vec round_nearest(vec v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static vec pow2i(vec n) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
  // Sum of the 16 lanes as (lo 8 + hi 8) and then the same 8-lane reduction as the AVX2 table.
  static float hsum(vec v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static __mmask16 mask(int64_t left) { return static_cast<__mmask16>((1u << left) - 1u); }
  static vec tail_load(const float* p, int64_t left) { return _mm512_maskz_loadu_ps(mask(left), p); }
  static void tail_store(float* p, int64_t left, vec v) { _mm512_mask_storeu_ps(p, mask(left), v); }
  static void load_b(const float* b, vec* v) { v[0] = _mm512_loadu_ps(b); }
  static void load_b(const uint16_t* b, vec* v) {
    v[0] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)));
  }
  static void f16_block(const uint16_t* src, float* dst) {
    _mm512_storeu_ps(dst, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))));
  }
  static float f16_one(uint16_t h) { return _cvtsh_ss(h); }
};

#define LFDN_ISA_UNROLL_K 4
#include "cpu/kernels_isa.inl"
#undef LFDN_ISA_UNROLL_K

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
    case 12: ukr2<12, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    case 13: ukr2<13, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
    default: ukr2<kMR2P, PA>(kc, a, lda, b, bs, c, cs, accumulate); break;
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

}  // namespace

const Kernels* avx512_kernels() {
  static const Kernels k = [] {
    Kernels t{"avx512",
              kMRMax,
              isa_gemm_f32<Avx512, kMRMax>,
              isa_gemm_f32_pa<Avx512, kMRMax>,
              isa_gemm_f16<Avx512, kMRMax>,
              isa_f16_to_f32<Avx512>,
              isa_moments<Avx512>,
              isa_gn_silu<Avx512>,
              isa_silu<Avx512>,
              isa_fma_loop<Avx512>};
    t.gemm_f32_2p = gemm_f32_2p;
    t.gemm_f32_2p_pa = gemm_f32_2p_pa;
    t.mr_max_2p = kMR2P;
#if defined(LFDN_HAVE_AVX512BF16_KERNELS)
    if (cpu_has_avx512_bf16()) {  // the BF16 entries exist only where vdpbf16ps does
      t.gemm_bf16 = avx512bf16_gemm;
      t.gemm_bf16_pa = avx512bf16_gemm_pa;
      t.f32_to_bf16 = avx512bf16_f32_to_bf16;
      t.bf16_dot_loop = avx512bf16_dot_loop;
    }
#endif
#if defined(LFDN_HAVE_AVX512VNNI_KERNELS)
    if (cpu_has_avx512_vnni()) {  // the INT8 entries exist only where vpdpbusd does
      t.gemm_i8 = avx512vnni_gemm_i8;
      t.gemm_i8_pa = avx512vnni_gemm_i8_pa;
      t.quantize_i8 = avx512vnni_quantize_i8;
      t.i8_act_offset = 128;
      t.i8_dot_loop = avx512vnni_dot_loop;
      t.i8_epilogue = avx512vnni_i8_epilogue;
#if defined(LFDN_HAVE_AVX512AMX_KERNELS)
      if (avx512amx_usable()) {  // tiles take the VNNI path's codes: only with it
        t.gemm_i8_tile = avx512amx_gemm_i8;
        t.mr_max_i8_tile = 16;
        t.gemm_i8_tile_2p = avx512amx_gemm_i8_2p;
        t.mr_max_i8_tile_2p = 32;
        t.i8_tile_dot_loop = avx512amx_dot_loop;
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
