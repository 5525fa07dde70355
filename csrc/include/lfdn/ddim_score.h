// Op 3, the DDIM update and the score reductions, fused into one pass over each row:
//   update (optional):  eps_hat = (x - sqrt_ab_cur * x0_hat) / sqrt_1m_ab_cur
//                       x <- c_x0 * x0_hat + c_eps * eps_hat + sigma * noise      (noise: one row, broadcast)
//   scores (optional):  mse = mean (z0 - x0_hat)^2
//                       stage_cos[m] = cos(z0_m, x0_hat_m)  over stage slices [offsets[m], offsets[m+1])
//                       mfsim = -sum_m w_m stage_cos[m]   (w: stage_weights, default 1/num_stages each)
//   score_update:       the scores compare z0 with the UPDATED x (the DDIM sample) instead of x0_hat; the
//                       updated x goes to x_out (default x, in place). This is how a reconstruction that is
//                       a DDIM sample (the authors' convention) is scored; the project's reconstruction, the
//                       last x0 prediction, is the row c_x0 = 1, c_eps = 0, sigma = 0 or plain `scores`.
// Cosine as torch.nn.functional.cosine_similarity: dot / (max(|a|, eps) * max(|b|, eps)).
#pragma once
#include "lfdn/common.h"

namespace lfdn {

constexpr int kMaxStages = 64;

struct DdimScoreParams {
  float* x = nullptr;               // (rows, dim) x_t, updated in place when `update`
  const float* x0_hat = nullptr;    // (rows, dim) the model's x0 prediction
  const float* z0 = nullptr;        // (rows, dim) clean features, needed when `scores`
  const float* noise = nullptr;     // (dim) eta noise of this update, needed when update && sigma != 0
  int64_t rows = 0;
  int64_t dim = 0;
  bool update = false;
  float sqrt_ab_cur = 1.0f, sqrt_1m_ab_cur = 1.0f, c_x0 = 1.0f, c_eps = 0.0f, sigma = 0.0f;
  bool scores = false;
  int32_t num_stages = 0;            // 1..kMaxStages
  const int32_t* stage_offsets = nullptr;  // (num_stages + 1) host pointer, offsets[0] = 0, offsets[M] = dim
  float cos_eps = 1e-8f;
  float* mse = nullptr;             // (rows)
  float* mfsim = nullptr;           // (rows)
  float* stage_cos = nullptr;       // (rows, num_stages)
  const float* stage_weights = nullptr;  // (num_stages) host array, finite, >= 0; null: 1/num_stages each
  bool score_update = false;        // with update && scores: score the updated x, written to x_out
  float* x_out = nullptr;           // (rows, dim) where the updated x goes when score_update; null: x
  Stream cuda_stream = nullptr;     // CUDA only
};

int check_ddim_score_params(const DdimScoreParams& p);
int ddim_score_cpu(const DdimScoreParams& p);
int ddim_score_cuda(const DdimScoreParams& p);  // device pointers except stage_offsets (host)

}  // namespace lfdn
