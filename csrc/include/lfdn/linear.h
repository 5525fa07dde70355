// Op 2, the fused residual-block path of the LFDN:
//     out = [residual +] Linear(prologue(x)) + bias
// with prologue one of: identity, SiLU, or GroupNorm(1 group, FP32 statistics) + affine + SiLU.
// One row of x is one feature vector; GroupNorm with one group normalises the whole row.
//
// Weights are packed per backend (pack_linear_cpu / pack_linear_cuda); the op reads them in that layout.
#pragma once
#include "lfdn/common.h"

namespace lfdn {

enum class Prologue : int32_t {
  kNone = 0,          // Linear(x)
  kSilu = 1,          // Linear(SiLU(x))
  kGroupNormSilu = 2, // Linear(SiLU(GN1(x) * gamma + beta))
};

struct FusedLinearParams {
  const float* x = nullptr;         // (rows, in_dim) FP32
  float* out = nullptr;             // (rows, out_dim) FP32
  const float* residual = nullptr;  // (rows, out_dim) or null; may alias out (in-place residual add)
  const void* weight = nullptr;     // packed weights (see pack_linear_*), storage `wtype`
  WeightType wtype = WeightType::kF32;
  const float* bias = nullptr;      // (out_dim) or null
  const float* gamma = nullptr;     // (in_dim) GroupNorm affine, kGroupNormSilu only
  const float* beta = nullptr;      // (in_dim)
  float gn_eps = 1e-5f;
  Prologue prologue = Prologue::kNone;
  int64_t rows = 0;
  int64_t in_dim = 0;
  int64_t out_dim = 0;
  void* workspace = nullptr;        // fused_linear_*_workspace_bytes(rows, in_dim, out_dim, threads) bytes
  size_t workspace_bytes = 0;
  int threads = 0;                  // CPU threads, 0: $LFDN_EDGE_NUM_THREADS or all hardware threads
  Stream cuda_stream = nullptr;     // CUDA only
};

int check_fused_linear_params(const FusedLinearParams& p);

// ---- CPU: weights in column panels of kCpuPanel outputs, [panel][k][kCpuPanel], zero-padded.
// BF16: k-pairs, [panel][k/2][kCpuPanel][2]. INT8: k-quads, [panel][k/4][kCpuPanel][4] int8 (k padded to a
// multiple of 4 with zeros), followed by the trailer: FP32 scale[panels * kCpuPanel], then INT32
// colsum[panels * kCpuPanel] (the sum over k of each output's int8 weights; x86 needs it, see cpu/kernels.h),
// both zero-padded; the packed blob is self-contained, so FusedLinearParams::weight points at it alone.
constexpr int kCpuPanel = 16;
size_t packed_linear_cpu_bytes(int64_t in_dim, int64_t out_dim, WeightType wtype);
// src: (out_dim, in_dim) row-major as in torch.nn.Linear.weight, FP32, FP16 or BF16 bits per wtype (kI8: use
// pack_linear_cpu_i8, which takes the scales; here kBadArgument).
int pack_linear_cpu(const void* src, WeightType wtype, int64_t in_dim, int64_t out_dim, void* dst);
// q: (out_dim, in_dim) int8 in [-127, 127] (kBadArgument for -128); scale: (out_dim) FP32, finite, > 0.
int pack_linear_cpu_i8(const int8_t* q, const float* scale, int64_t in_dim, int64_t out_dim, void* dst);
// The trailer of a packed INT8 blob (see above).
const float* packed_i8_scales(const void* packed, int64_t in_dim, int64_t out_dim);
const int32_t* packed_i8_colsums(const void* packed, int64_t in_dim, int64_t out_dim);
size_t fused_linear_cpu_workspace_bytes(int64_t rows, int64_t in_dim, int64_t out_dim, int threads);
int fused_linear_cpu(const FusedLinearParams& p);

// ---- CUDA: FP16 weights, row-major (out_dim_padded, in_dim_padded), both padded to multiples of 64 / 32.
size_t packed_linear_cuda_elems(int64_t in_dim, int64_t out_dim);
int64_t cuda_padded_in(int64_t in_dim);
int64_t cuda_padded_out(int64_t out_dim);
// Host-side packing (src FP32 or FP16 bits -> FP16, dst host memory of packed_linear_cuda_elems halves).
int pack_linear_cuda_host(const void* src, WeightType wtype, int64_t in_dim, int64_t out_dim, uint16_t* dst);
size_t fused_linear_cuda_workspace_bytes(int64_t rows, int64_t in_dim, int64_t out_dim);
int fused_linear_cuda(const FusedLinearParams& p);  // wtype must be kF16; device pointers

}  // namespace lfdn
