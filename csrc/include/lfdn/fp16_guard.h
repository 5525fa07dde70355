// FP16 range guard of the CUDA GEMM's activations (shared by the kernel and the CPU reference/tests).
//
// The CUDA fused linear rounds its activations A = prologue(x) to FP16 for the tensor cores, where the CPU
// keeps them in FP32. Without a guard a finite |a| >= 65520 rounds to inf in FP16 and the product with a
// zero-padded weight (inf * 0) becomes NaN, where the CPU stays finite: the input layer (SiLU of the noised
// standardised features, unbounded for far-out-of-distribution inputs) is where it happens first. So every
// row of A is multiplied by a power of two, scale = fp16_row_scale(max_k |a[r, k]|), before the rounding,
// and the FP32 accumulator of that row is divided by it in the epilogue (exact: powers of two). Rows with
// max |a| <= 2^15 get scale 1, i.e. exactly the unguarded result; larger rows are brought into (2^14, 2^15],
// which leaves them a factor 2 below the FP16 maximum (65504) and loses only the elements below
// max|a| * 2^-25 of that row (FP16 subnormal range) -- terms that do not change an FP32 sum of them anyway.
// NaN and +-inf rows get scale 1, so they propagate as they do on the CPU.
#pragma once

#if !defined(__CUDACC_RTC__)
#include <math.h>
#endif

#if defined(__CUDACC__)
#define LFDN_GUARD_HD __host__ __device__ __forceinline__
#else
#define LFDN_GUARD_HD inline
#endif

namespace lfdn {

constexpr float kFp16RowLimit = 32768.0f;  // 2^15: rows up to this magnitude are left unscaled

LFDN_GUARD_HD float fp16_row_scale(float max_abs) {
  // !(x > limit): in range or NaN; !(x <= FLT_MAX): +inf
  if (!(max_abs > kFp16RowLimit) || !(max_abs <= 3.402823466e38f)) return 1.0f;
  int e = 0;
  frexpf(max_abs, &e);             // max_abs = m * 2^e, m in [0.5, 1): max_abs < 2^e
  return ldexpf(1.0f, 15 - e);     // max_abs * scale in [2^14, 2^15)
}

}  // namespace lfdn
