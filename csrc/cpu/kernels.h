// Internal to the CPU backend: the inner kernels, one table per instruction set, picked at run time.
// The AVX2 table lives in its own translation unit compiled with -mavx2 -mfma -mf16c and is used only
// when the CPU reports those features, so the rest of the library stays at the portable baseline.
#pragma once
#include <cstddef>
#include <cstdint>

#include "lfdn/linear.h"

namespace lfdn {
namespace cpu {

constexpr int kNR = kCpuPanel;  // outputs per packed weight panel
constexpr int kMR = 6;          // rows per micro-kernel call
constexpr int64_t kKC = 256;    // k-block: a 16 x 256 FP32 weight block (16 KiB) stays in L1 across row groups
constexpr int64_t kMC = 96;     // row block: bounds the activation slab a thread re-reads per panel

struct Kernels {
  const char* name;
  // c[r*kNR + j] (+)= sum_{k < kc} a[r*lda + k] * b[k*kNR + j], r < mr <= kMR; accumulate: add to c, else set.
  void (*gemm_f32)(int mr, int64_t kc, const float* a, int64_t lda, const float* b, float* c, int accumulate);
  // Same with FP16 weights converted on the fly; null: the caller converts blocks with f16_to_f32 first.
  void (*gemm_f16)(int mr, int64_t kc, const float* a, int64_t lda, const uint16_t* b, float* c, int accumulate);
  void (*f16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  // mean and 1/sqrt(var + eps) of x[0..n) in FP32 (two passes: mean, then centred squares)
  void (*moments)(const float* x, int64_t n, float eps, float* mean, float* rstd);
  // out = SiLU((x - mean) * rstd * g + b)
  void (*gn_silu)(const float* x, int64_t n, float mean, float rstd, const float* g, const float* b, float* out);
  // out = SiLU(x)
  void (*silu)(const float* x, int64_t n, float* out);
};

const Kernels& scalar_kernels();
const Kernels* avx2_kernels();  // null when not compiled in (non-x86 builds)

// The active table: AVX2+FMA+F16C when the CPU has them, else scalar; LFDN_EDGE_CPU_ISA=scalar forces scalar.
const Kernels& kernels();
// Select "auto", "avx2" or "scalar"; false when that table is unavailable on this build/CPU.
bool select_isa(const char* name);
bool cpu_has_avx2_fma_f16c();

}  // namespace cpu
}  // namespace lfdn
