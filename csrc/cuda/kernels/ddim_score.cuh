// Op 3 kernel (CUDA): one CTA per row; DDIM update of x and/or the MSE + per-stage cosine reductions.
#pragma once
#include <cstdint>

#include "lfdn/ddim_score.h"

namespace lfdn {
namespace cuda {

constexpr int kThreadsDdim = 128;

struct DdimArgs {
  float* x;
  const float* x0_hat;
  const float* z0;
  const float* noise;
  int64_t rows, dim;
  int update, scores, score_update;
  float sqrt_ab_cur, sqrt_1m_ab_cur, c_x0, c_eps, sigma;
  int num_stages;
  int32_t offsets[kMaxStages + 1];  // by value: no device copy of the layout needed
  float cos_eps;
  float weights[kMaxStages];        // MFsim weight of each stage (1/num_stages each unless given)
  float* x_out;                     // score_update: where the updated x goes (may be x or x0_hat)
  float* mse;
  float* mfsim;
  float* stage_cos;
};

// Sum of v over the CTA (kThreadsDdim threads); every thread gets the total.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read from the previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = 0.0f;
#pragma unroll
  for (int w = 0; w < kThreadsDdim / 32; ++w) t += scratch[w];
  return t;
}

__global__ void __launch_bounds__(kThreadsDdim) ddim_score_kernel(DdimArgs a) {
  __shared__ float scratch[kThreadsDdim / 32];
  const int64_t r = blockIdx.x;
  if (r >= a.rows) return;
  const float* y = a.x0_hat + r * a.dim;
  if (a.scores) {
    const float* z = a.z0 + r * a.dim;
    const float* xr = a.x + r * a.dim;
    float* out = a.x_out + r * a.dim;
    float se_total = 0.0f, cos_total = 0.0f;
    for (int m = 0; m < a.num_stages; ++m) {
      float dot = 0.0f, nz = 0.0f, ny = 0.0f, se = 0.0f;
      for (int64_t i = a.offsets[m] + threadIdx.x; i < a.offsets[m + 1]; i += kThreadsDdim) {
        float yi = y[i];
        if (a.score_update) {  // the scored value is the updated x (sigma 0, checked by the host)
          const float eps_hat = __fdiv_rn(xr[i] - a.sqrt_ab_cur * yi, a.sqrt_1m_ab_cur);
          yi = a.c_x0 * yi + a.c_eps * eps_hat;
          out[i] = yi;
        }
        const float zi = z[i], d = zi - yi;
        dot += zi * yi;
        nz += zi * zi;
        ny += yi * yi;
        se += d * d;
      }
      dot = block_sum(dot, scratch);
      nz = block_sum(nz, scratch);
      ny = block_sum(ny, scratch);
      se_total += block_sum(se, scratch);
      const float c = dot / (fmaxf(sqrtf(nz), a.cos_eps) * fmaxf(sqrtf(ny), a.cos_eps));
      if (threadIdx.x == 0) a.stage_cos[r * a.num_stages + m] = c;
      cos_total += a.weights[m] * c;
    }
    if (threadIdx.x == 0) {
      a.mse[r] = se_total / static_cast<float>(a.dim);
      a.mfsim[r] = -cos_total;
    }
  }
  if (a.update && !a.score_update) {
    float* x = a.x + r * a.dim;
    for (int64_t i = threadIdx.x; i < a.dim; i += kThreadsDdim) {
      const float eps_hat = __fdiv_rn(x[i] - a.sqrt_ab_cur * y[i], a.sqrt_1m_ab_cur);
      float v = a.c_x0 * y[i] + a.c_eps * eps_hat;
      if (a.sigma != 0.0f) v = v + a.sigma * a.noise[i];
      x[i] = v;
    }
  }
}

}  // namespace cuda
}  // namespace lfdn
