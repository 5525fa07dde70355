// Op 2 launcher (CUDA) and the FP16 weight packing for it.
#include <cuda_fp16.h>

#include <string>

#include "cuda/kernels/fused_linear.cuh"
#include "cuda/util.cuh"
#include "lfdn/cuda_tactics.h"
#include "lfdn/half.h"
#include "lfdn/linear.h"

namespace lfdn {

int64_t cuda_padded_in(int64_t in_dim) { return (in_dim + cuda::kBK - 1) / cuda::kBK * cuda::kBK; }
int64_t cuda_padded_out(int64_t out_dim) { return (out_dim + cuda::kTileN - 1) / cuda::kTileN * cuda::kTileN; }

size_t packed_linear_cuda_elems(int64_t in_dim, int64_t out_dim) {
  return static_cast<size_t>(cuda_padded_out(out_dim)) * static_cast<size_t>(cuda_padded_in(in_dim));
}

int pack_linear_cuda_host(const void* src, WeightType wtype, int64_t in_dim, int64_t out_dim, uint16_t* dst) {
  if (src == nullptr || dst == nullptr) return kNullPointer;
  if (in_dim <= 0 || out_dim <= 0) return kBadSize;
  if (wtype != WeightType::kF32 && wtype != WeightType::kF16) return kBadArgument;
  const int64_t kp = cuda_padded_in(in_dim), np = cuda_padded_out(out_dim);
  for (int64_t n = 0; n < np; ++n)
    for (int64_t k = 0; k < kp; ++k) {
      uint16_t h = 0;
      if (n < out_dim && k < in_dim) {
        const int64_t i = n * in_dim + k;
        h = wtype == WeightType::kF16 ? static_cast<const uint16_t*>(src)[i]
                                      : float_to_half(static_cast<const float*>(src)[i]);
      }
      dst[n * kp + k] = h;
    }
  return kOk;
}

namespace {
template <int BM, int BN, int WM, int WN>
int launch_linear(dim3 grid, Stream s, const cuda::LinearArgs& a) {
  return cuda::launch(cuda::fused_linear_kernel<BM, BN, WM, WN>,
                      "lfdn::cuda::fused_linear_kernel<" + std::to_string(BM) + ", " + std::to_string(BN) + ", " +
                          std::to_string(WM) + ", " + std::to_string(WN) + ">",
                      grid, cuda::kThreadsLinear, 0, s, a);
}
}  // namespace

size_t fused_linear_cuda_workspace_bytes(int64_t, int64_t, int64_t) { return 0; }  // statistics live in smem

int fused_linear_cuda(const FusedLinearParams& p) {
  int rc = check_cuda_linear_params(p);
  if (rc != kOk) return rc;
  // the CUDA path packs FP16 (pack_linear_cuda_host); a kI8 problem's weight is the packed CUDA INT8 blob, whose
  // FP16 copy comes first in this layout (lfdn/cuda_tactics.h)
  if (p.wtype != WeightType::kF16 && p.wtype != WeightType::kI8) return kBadArgument;
  if (p.rows == 0) return kOk;
  if ((p.rows + 63) / 64 > 65535) return kBadSize;  // grid.y limit
  cuda::LinearArgs a;
  a.x = p.x;
  a.out = p.out;
  a.residual = p.residual;
  a.w = static_cast<const __half*>(p.weight);
  a.bias = p.bias;
  a.gamma = p.gamma;
  a.beta = p.beta;
  a.gn_eps = p.gn_eps;
  a.mode = static_cast<int>(p.prologue);
  a.rows = p.rows;
  a.K = p.in_dim;
  a.N = p.out_dim;
  a.Kp = cuda_padded_in(p.in_dim);
  constexpr int BN = 64;
  const unsigned int gx = static_cast<unsigned int>(cuda_padded_out(p.out_dim) / BN);
  if (p.rows <= 16)  // small batches: one 16-row strip, four warps side by side over n
    return launch_linear<16, BN, 16, 16>(dim3(gx, 1), p.cuda_stream, a);
  const unsigned int gy = static_cast<unsigned int>((p.rows + 63) / 64);
  return launch_linear<64, BN, 32, 32>(dim3(gx, gy), p.cuda_stream, a);
}

namespace cuda {
int load_fused_linear_kernels() {  // every instantiation fused_linear_cuda launches
  cudaFuncAttributes attr;
  int rc = record(cudaFuncGetAttributes(&attr, fused_linear_kernel<16, 64, 16, 16>),
                  "cudaFuncGetAttributes(fused_linear_kernel<16, 64, 16, 16>)");
  if (rc == kOk)
    rc = record(cudaFuncGetAttributes(&attr, fused_linear_kernel<64, 64, 32, 32>),
                "cudaFuncGetAttributes(fused_linear_kernel<64, 64, 32, 32>)");
  return rc;
}
}  // namespace cuda

}  // namespace lfdn
