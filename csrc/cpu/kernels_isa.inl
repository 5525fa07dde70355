// The loops the SIMD kernel tables share, written once over a per-ISA vector-ops trait V: the FP32 / FP16
// micro-kernels and their row-count dispatch, FP16 widening, the GroupNorm moments, GroupNorm-SiLU and SiLU (with
// the vector exp), and the FMA probe. Each table's translation unit (kernels_avx2.cpp, kernels_avx512.cpp,
// kernels_neon.cpp) defines its trait and includes this file INSIDE ITS ANONYMOUS NAMESPACE, after its intrinsics
// header and <math.h>: every function here then has internal linkage in that object and is compiled with that
// file's ISA flags only. Nothing may be inline-shared between the ISA objects: the linker could keep one object's
// copy of a shared inline or template function for all of them and run AVX-512 code on a CPU without it
// (tests/test_native_build.py checks that each object exports only its own entry points and no weak symbol).
// Hence no #pragma once, no includes and no standard-library templates here.
//
// The trait V (static functions and constants; each maps to the instructions its table used before this file
// existed, so the results are those tables' own, bit for bit):
//   vec, kLanes                   the register type and its float lanes (kNR % kLanes == 0)
//   zero() set1(f) load(p) store(p, v) add sub mul div min max neg
//   fmadd(a, b, c)                a * b + c, fused
//   fnmadd(a, b, c)               c - a * b, fused
//   round_nearest(v)              to the nearest integer, ties to even
//   pow2i(n)                      2^n for integral n in [-127, 128], built in the exponent bits
//   hsum(v)                       the sum of the lanes, in the table's own order
//   load_b(const float*, vec*), load_b(const uint16_t*, vec*)   one packed weight row (kNR outputs; FP16 widened)
//   kMomentAccs                   accumulators of moments(): kMomentAccs * kLanes elements per step
//   kMaskedTail                   true: gn_silu / silu end with masked vector ops, tail_load(p, left) and
//                                 tail_store(p, left, v) (left < kLanes); false: with the scalar silu on expf
//   kF16Step, f16_block(src, dst), f16_one(h)   FP16 widening, kF16Step values per block, then one at a time
//   kFmaChains                    independent FMA chains of the machine probe (fma_loop)
// Loop unrolling: LFDN_ISA_UNROLL_K (defined by the including file) for the k loop of the micro-kernels; the loops
// over rows, registers and chains are unrolled in full.

#define LFDN_ISA_STR(x) #x
#define LFDN_ISA_PRAGMA(x) _Pragma(LFDN_ISA_STR(x))
#define LFDN_ISA_UNROLL(n) LFDN_ISA_PRAGMA(GCC unroll n)

// ------------------------------------------------------------------------------------------- micro-kernels
// MR rows x kNR outputs, B (one k-block of a weight panel) in FP32 or FP16. PA: the activations packed k-major
// per row group, a[k*MR + r]; else rows of lda, a[r*lda + k]. Every output is one FMA chain over k in increasing
// order whatever MR is (lanes are independent): a row's result does not depend on the group it is computed in, so
// a score does not depend on the batch the item is in. (Batch 1 has few chains in flight, but it is bound by
// memory bandwidth, not by FMA latency.)
template <class V, int MR, bool PA, class B>
inline void ukr(int64_t kc, const float* a, int64_t lda, const B* b, float* c, int accumulate) {
  constexpr int R = kNR / V::kLanes;  // registers per row
  typename V::vec acc[MR][R];
  LFDN_ISA_UNROLL(16)
  for (int r = 0; r < MR; ++r) {
    LFDN_ISA_UNROLL(16)
    for (int j = 0; j < R; ++j) acc[r][j] = accumulate ? V::load(c + r * kNR + j * V::kLanes) : V::zero();
  }
  LFDN_ISA_UNROLL(LFDN_ISA_UNROLL_K)
  for (int64_t k = 0; k < kc; ++k) {
    typename V::vec bv[R];
    V::load_b(b + k * kNR, bv);
    LFDN_ISA_UNROLL(16)
    for (int r = 0; r < MR; ++r) {
      const typename V::vec av = V::set1(PA ? a[k * MR + r] : a[r * lda + k]);
      LFDN_ISA_UNROLL(16)
      for (int j = 0; j < R; ++j) acc[r][j] = V::fmadd(av, bv[j], acc[r][j]);
    }
  }
  LFDN_ISA_UNROLL(16)
  for (int r = 0; r < MR; ++r) {
    LFDN_ISA_UNROLL(16)
    for (int j = 0; j < R; ++j) V::store(c + r * kNR + j * V::kLanes, acc[r][j]);
  }
}

// ukr with MR = mr for 1 <= mr < MRMax, MR = MRMax for every other mr (the callers pass 1..MRMax).
template <class V, int MRMax, bool PA, class B, int M = 1>
inline void gemm_rows(int mr, int64_t kc, const float* a, int64_t lda, const B* b, float* c, int accumulate) {
  if constexpr (M < MRMax) {
    if (mr == M) {
      ukr<V, M, PA>(kc, a, lda, b, c, accumulate);
      return;
    }
    gemm_rows<V, MRMax, PA, B, M + 1>(mr, kc, a, lda, b, c, accumulate);
  } else {
    ukr<V, MRMax, PA>(kc, a, lda, b, c, accumulate);
  }
}

// Kernels entries (kernels.h).
template <class V, int MRMax>
void isa_gemm_f32(int mr, int64_t kc, const float* a, int64_t lda, const float* b, float* c, int accumulate) {
  gemm_rows<V, MRMax, false>(mr, kc, a, lda, b, c, accumulate);
}

template <class V, int MRMax>
void isa_gemm_f32_pa(int mr, int64_t kc, const float* a, const float* b, float* c, int accumulate) {
  gemm_rows<V, MRMax, true>(mr, kc, a, 0, b, c, accumulate);
}

template <class V, int MRMax>
void isa_gemm_f16(int mr, int64_t kc, const float* a, int64_t lda, const uint16_t* b, float* c, int accumulate) {
  gemm_rows<V, MRMax, false>(mr, kc, a, lda, b, c, accumulate);
}

template <class V>
void isa_f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + V::kF16Step <= n; i += V::kF16Step) V::f16_block(src + i, dst + i);
  for (; i < n; ++i) dst[i] = V::f16_one(src[i]);
}

// ---------------------------------------------------------------------------------------- GroupNorm, SiLU
// mean and 1/sqrt(var + eps) in FP32, two passes (mean, then centred squares): kMomentAccs accumulators of kLanes
// lanes, added in order and reduced with hsum, then the scalar tail.
template <class V>
void isa_moments(const float* x, int64_t n, float eps, float* mean, float* rstd) {
  constexpr int A = V::kMomentAccs, S = V::kMomentAccs * V::kLanes;
  typename V::vec s[A];
  LFDN_ISA_UNROLL(16)
  for (int j = 0; j < A; ++j) s[j] = V::zero();
  int64_t i = 0;
  for (; i + S <= n; i += S) {
    LFDN_ISA_UNROLL(16)
    for (int j = 0; j < A; ++j) s[j] = V::add(s[j], V::load(x + i + j * V::kLanes));
  }
  typename V::vec st = s[0];
  LFDN_ISA_UNROLL(16)
  for (int j = 1; j < A; ++j) st = V::add(st, s[j]);
  float sum = V::hsum(st);
  for (; i < n; ++i) sum += x[i];
  const float m = sum / static_cast<float>(n);
  const typename V::vec mv = V::set1(m);
  typename V::vec q[A];
  LFDN_ISA_UNROLL(16)
  for (int j = 0; j < A; ++j) q[j] = V::zero();
  i = 0;
  for (; i + S <= n; i += S) {
    LFDN_ISA_UNROLL(16)
    for (int j = 0; j < A; ++j) {
      const typename V::vec d = V::sub(V::load(x + i + j * V::kLanes), mv);
      q[j] = V::fmadd(d, d, q[j]);
    }
  }
  typename V::vec qt = q[0];
  LFDN_ISA_UNROLL(16)
  for (int j = 1; j < A; ++j) qt = V::add(qt, q[j]);
  float sq = V::hsum(qt);
  for (; i < n; ++i) sq += (x[i] - m) * (x[i] - m);
  *mean = m;
  *rstd = 1.0f / sqrtf(sq / static_cast<float>(n) + eps);
}

// exp(x) for x in [-87, 88] (clamped): Cody-Waite reduction by ln 2 and a degree-6 polynomial (Cephes expf
// coefficients), about 1 ulp; 2^n is built in the exponent bits.
template <class V>
inline typename V::vec isa_exp(typename V::vec x) {
  x = V::min(V::max(x, V::set1(-87.0f)), V::set1(88.0f));
  const typename V::vec n = V::round_nearest(V::mul(x, V::set1(1.44269504088896341f)));
  typename V::vec r = V::fnmadd(n, V::set1(0.693359375f), x);
  r = V::fnmadd(n, V::set1(-2.12194440e-4f), r);
  typename V::vec p = V::set1(1.9875691500e-4f);
  p = V::fmadd(p, r, V::set1(1.3981999507e-3f));
  p = V::fmadd(p, r, V::set1(8.3334519073e-3f));
  p = V::fmadd(p, r, V::set1(4.1665795894e-2f));
  p = V::fmadd(p, r, V::set1(1.6666665459e-1f));
  p = V::fmadd(p, r, V::set1(5.0000001201e-1f));
  p = V::fmadd(p, V::mul(r, r), V::add(r, V::set1(1.0f)));
  return V::mul(p, V::pow2i(n));
}

template <class V>
inline typename V::vec isa_silu_v(typename V::vec v) {
  return V::div(v, V::add(V::set1(1.0f), isa_exp<V>(V::neg(v))));
}

inline float isa_silu1(float v) { return v / (1.0f + expf(-v)); }

// out = SiLU((x - mean) * rstd * g + b)
template <class V>
void isa_gn_silu(const float* x, int64_t n, float mean, float rstd, const float* g, const float* b, float* out) {
  const typename V::vec mv = V::set1(mean), rv = V::set1(rstd);
  int64_t i = 0;
  for (; i + V::kLanes <= n; i += V::kLanes) {
    const typename V::vec xn = V::mul(V::sub(V::load(x + i), mv), rv);
    V::store(out + i, isa_silu_v<V>(V::fmadd(xn, V::load(g + i), V::load(b + i))));
  }
  if constexpr (V::kMaskedTail) {
    if (i < n) {  // the same arithmetic on the last n - i lanes
      const int64_t left = n - i;
      const typename V::vec xn = V::mul(V::sub(V::tail_load(x + i, left), mv), rv);
      const typename V::vec v = V::fmadd(xn, V::tail_load(g + i, left), V::tail_load(b + i, left));
      V::tail_store(out + i, left, isa_silu_v<V>(v));
    }
  } else {
    for (; i < n; ++i) out[i] = isa_silu1((x[i] - mean) * rstd * g[i] + b[i]);
  }
}

// out = SiLU(x)
template <class V>
void isa_silu(const float* x, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + V::kLanes <= n; i += V::kLanes) V::store(out + i, isa_silu_v<V>(V::load(x + i)));
  if constexpr (V::kMaskedTail) {
    if (i < n) V::tail_store(out + i, n - i, isa_silu_v<V>(V::tail_load(x + i, n - i)));
  } else {
    for (; i < n; ++i) out[i] = isa_silu1(x[i]);
  }
}

// ------------------------------------------------------------------------------------------------- probe
// `iters` rounds of kFmaChains independent FMA chains in registers; the floating-point operations done.
template <class V>
double isa_fma_loop(int64_t iters, float* sink) {
  constexpr int kChains = V::kFmaChains;
  typename V::vec acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = V::set1(1.0f + 0.001f * j);
  const typename V::vec m = V::set1(0.9999999f), add = V::set1(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    LFDN_ISA_UNROLL(16)
    for (int j = 0; j < kChains; ++j) acc[j] = V::fmadd(acc[j], m, add);
  }
  typename V::vec s = acc[0];
  for (int j = 1; j < kChains; ++j) s = V::add(s, acc[j]);
  *sink = V::hsum(s);
  return 2.0 * V::kLanes * kChains * static_cast<double>(iters);
}

#undef LFDN_ISA_UNROLL
#undef LFDN_ISA_PRAGMA
#undef LFDN_ISA_STR
