// Op 2 kernel (CUDA): out[r, n] = [residual[r, n] +] sum_k A[r, k] * W[n, k] + bias[n], where
// A = prologue(x) is formed while loading the A tile: GroupNorm statistics (FP32, the rule of lfdn/gn_stats.h,
// computed by the CTA for its own rows), affine, SiLU, then scaled per row by a power of two (the FP16 range
// guard of lfdn/fp16_guard.h; 1 for every row in range) and rounded to FP16 for the tensor cores.
// W: FP16, row-major (Np, Kp), zero-padded to the tile multiples (no bounds checks on W).
// Tensor cores through WMMA 16x16x16 FP16 -> FP32; all accumulation in FP32.
#pragma once
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>

#include "lfdn/fp16_guard.h"
#include "lfdn/gn_stats.h"

namespace lfdn {
namespace cuda {

constexpr int kBK = 32;           // k per tile (two WMMA k-steps)
constexpr int kPadK = kBK + 8;    // smem row pitch in halves (multiple of 8 for WMMA, staggers banks)
constexpr int kTileN = 64;        // padding unit of the packed weights' out dim
constexpr int kThreadsLinear = 128;

struct LinearArgs {
  const float* x;         // (rows, K)
  float* out;             // (rows, N)
  const float* residual;  // (rows, N) or null, may alias out
  const __half* w;        // (Np, Kp)
  const float* bias;      // (N) or null
  const float* gamma;     // (K) GN affine (mode 2)
  const float* beta;
  float gn_eps;
  int mode;               // 0 none, 1 SiLU, 2 GroupNorm + affine + SiLU
  int64_t rows, K, N, Kp;
};

__device__ __forceinline__ float silu_f(float v) { return v / (1.0f + __expf(-v)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}


__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = gn_nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// A[r, k] before the FP16 rounding: prologue of x[r, k] (mode 0 none, 1 SiLU, 2 GroupNorm + affine + SiLU)
__device__ __forceinline__ float prologue_f(const LinearArgs& a, float v, int64_t k, const GnStats& st) {
  if (a.mode == 2) v = gn_normalize(v, st) * a.gamma[k] + a.beta[k];
  if (a.mode >= 1) v = silu_f(v);
  return v;
}

// BM x BN tile per CTA of 4 warps arranged (BM / WM) x (BN / WN); each warp owns WM x WN outputs.
template <int BM, int BN, int WM, int WN>
__global__ void __launch_bounds__(kThreadsLinear) fused_linear_kernel(LinearArgs a) {
  using namespace nvcuda;
  static_assert((BM / WM) * (BN / WN) * 32 == kThreadsLinear, "4 warps per CTA");
  static_assert(BN <= kTileN && kTileN % BN == 0, "BN must divide the weight padding");
  constexpr int FM = WM / 16, FN = WN / 16;

  __shared__ __align__(32) __half sa[BM * kPadK];
  __shared__ __align__(32) __half sb[BN * kPadK];
  __shared__ __align__(32) float sc[BM * (BN + 4)];
  __shared__ float s_inv[BM], s_mean[BM], s_rstd[BM], s_scale[BM];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * BM;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * BN;

  // Per row of this CTA: GroupNorm(1) statistics (mean, then the centred sum of squares, FP32), then
  // max |A[r, :]| and the row's FP16 guard scale (lfdn/fp16_guard.h).
  for (int r = warp; r < BM; r += kThreadsLinear / 32) {
    const int64_t gr = row0 + r;
    GnStats st;
    float amax = 0.0f;
    if (gr < a.rows) {
      const float* xr = a.x + gr * a.K;
      if (a.mode == 2) {  // the shared rule of lfdn/gn_stats.h (max |x| first; rows above 2^32 rescaled)
        float s = 0.0f, mx = 0.0f;
        for (int64_t k = lane; k < a.K; k += 32) {
          s += xr[k];
          mx = gn_nan_max(mx, fabsf(xr[k]));
        }
        st.inv_scale = gn_input_scale(warp_max(mx));
        float sum = warp_sum(s);
        if (st.inv_scale != 1.0f) {  // warp-uniform (a butterfly reduction gives every lane the same value)
          s = 0.0f;
          for (int64_t k = lane; k < a.K; k += 32) s += xr[k] * st.inv_scale;
          sum = warp_sum(s);
        }
        st.mean = gn_mean(sum, a.K);
        float q = 0.0f;
        for (int64_t k = lane; k < a.K; k += 32) {
          const float d = xr[k] * st.inv_scale - st.mean;
          q += d * d;
        }
        st.rstd = gn_rstd(warp_sum(q), a.K, a.gn_eps, st.inv_scale);
      }
      for (int64_t k = lane; k < a.K; k += 32) amax = gn_nan_max(amax, fabsf(prologue_f(a, xr[k], k, st)));
      amax = warp_max(amax);
    }
    if (lane == 0) {
      s_inv[r] = st.inv_scale;
      s_mean[r] = st.mean;
      s_rstd[r] = st.rstd;
      s_scale[r] = fp16_row_scale(amax);
    }
  }
  __syncthreads();

  const int wm = warp / (BN / WN), wn = warp % (BN / WN);
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int64_t k0 = 0; k0 < a.Kp; k0 += kBK) {
    // A tile: BM x kBK floats -> prologue -> FP16 (zero outside rows x K)
    for (int e = tid; e < BM * kBK; e += kThreadsLinear) {
      const int r = e / kBK, c = e % kBK;
      const int64_t gr = row0 + r, gk = k0 + c;
      float v = 0.0f;
      if (gr < a.rows && gk < a.K) {
        GnStats st;
        st.inv_scale = s_inv[r];
        st.mean = s_mean[r];
        st.rstd = s_rstd[r];
        v = prologue_f(a, a.x[gr * a.K + gk], gk, st) * s_scale[r];
      }
      sa[r * kPadK + c] = __float2half_rn(v);
    }
    // B tile: BN rows of W, kBK halves each, 16-byte vector loads (Kp is a multiple of kBK)
    for (int e = tid; e < BN * (kBK / 8); e += kThreadsLinear) {
      const int n = e / (kBK / 8), c8 = (e % (kBK / 8)) * 8;
      const uint4 v = *reinterpret_cast<const uint4*>(a.w + (col0 + n) * a.Kp + k0 + c8);
      *reinterpret_cast<uint4*>(sb + n * kPadK + c8) = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa[FM];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb[FN];
#pragma unroll
      for (int i = 0; i < FM; ++i) wmma::load_matrix_sync(fa[i], sa + (wm * WM + i * 16) * kPadK + kk, kPadK);
#pragma unroll
      for (int j = 0; j < FN; ++j) wmma::load_matrix_sync(fb[j], sb + (wn * WN + j * 16) * kPadK + kk, kPadK);
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }

  // epilogue: fragments -> smem -> bias (+ residual) -> out, guarded to rows x N
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j)
      wmma::store_matrix_sync(sc + (wm * WM + i * 16) * (BN + 4) + wn * WN + j * 16, acc[i][j], BN + 4,
                              wmma::mem_row_major);
  __syncthreads();
  for (int e = tid; e < BM * BN; e += kThreadsLinear) {
    const int r = e / BN, c = e % BN;
    const int64_t gr = row0 + r, gn = col0 + c;
    if (gr < a.rows && gn < a.N) {
      float v = sc[r * (BN + 4) + c];
      if (s_scale[r] != 1.0f) v = v / s_scale[r];  // undo the row's guard scale (a power of two: exact)
      if (a.bias) v += a.bias[gn];
      if (a.residual) v += a.residual[gr * a.N + gn];
      a.out[gr * a.N + gn] = v;
    }
  }
}

}  // namespace cuda
}  // namespace lfdn
