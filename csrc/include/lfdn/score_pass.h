// Op 4, a whole DLSR scoring pass for one batch as one call on preallocated workspace:
//   x = a * z0 + b * eps                                       (op 1, eps precomputed: image key 0)
//   for step s = 0..steps-1 (levels l_0 > ... > l_{k-1}):
//     h = inp(SiLU(x))                                          (op 2, prologue SiLU)
//     for each block i:  u = fc1_i(SiLU(GN(h))) + bias1[s][i]   (op 2; bias1 = fc1.bias + emb_i(l_s), folded)
//                        h = h + fc2_i(SiLU(GN(u)))              (op 2, residual)
//     x0_hat = out(SiLU(GN(h)))                                 (op 2)
//     s < k-1: DDIM update of x with step_noise[s];  s = k-1: scores of x0_hat vs z0   (op 3)
//     (out_row: s = k-1 also applies coef[k-1], sigma 0, and scores that DDIM sample instead: the
//      reconstruction of the authors' convention; MFsim weights per stage: stage_weights)
// The model view points at weights packed for the backend that runs the pass (CPU panels or CUDA FP16).
#pragma once
#include "lfdn/common.h"
#include "lfdn/ddim_score.h"
#include "lfdn/linear.h"

namespace lfdn {

struct LfdnBlockView {
  const void* fc1_w = nullptr;  // packed (width -> width)
  const void* fc2_w = nullptr;  // packed (width -> width)
  const float* gn1_g = nullptr; const float* gn1_b = nullptr;  // (width) GroupNorm before fc1
  const float* gn2_g = nullptr; const float* gn2_b = nullptr;  // (width) GroupNorm before fc2
  const float* fc2_b = nullptr;                                // (width)
};

struct DdimCoefficients {  // one DDIM update (see ddim_score.h)
  float sqrt_ab_cur, sqrt_1m_ab_cur, c_x0, c_eps, sigma;
};

struct LfdnModelView {
  int64_t in_dim = 0, width = 0, depth = 0;
  WeightType wtype = WeightType::kF32;
  const void* inp_w = nullptr; const float* inp_b = nullptr;   // in_dim -> width
  const LfdnBlockView* blocks = nullptr;                       // (depth) host array of views
  const float* fc1_bias = nullptr;                             // (steps, depth, width) folded biases
  const float* out_g = nullptr; const float* out_b = nullptr;  // (width) final GroupNorm
  const void* out_w = nullptr; const float* out_bias = nullptr; // width -> in_dim
  float gn_eps = 1e-5f;
  // diffusion: x = q_a * z0 + q_b * eps; DDIM update s uses coef[s] and step_noise + s * in_dim
  int32_t steps = 0;
  float q_a = 1.0f, q_b = 0.0f;
  const float* eps = nullptr;                 // (in_dim)
  const float* step_noise = nullptr;          // (steps - 1, in_dim), may be null when every sigma is 0
  const DdimCoefficients* coef = nullptr;     // (steps - 1), or (steps) when out_row, host array
  bool out_row = false;                       // coef[steps - 1] maps (x, x0_hat) to the reconstruction
  // scores
  int32_t num_stages = 0;
  const int32_t* stage_offsets = nullptr;     // (num_stages + 1) host array
  float cos_eps = 1e-8f;
  int32_t num_weights = 0;                    // 0: MFsim weights 1/num_stages; else == num_stages
  float stage_weights[kMaxStages] = {};       // MFsim weight of each stage (by value: no lifetime to manage)
};

struct ScorePassParams {
  const LfdnModelView* model = nullptr;
  const float* z0 = nullptr;     // (rows, in_dim)
  int64_t rows = 0;
  float* mse = nullptr;          // (rows)
  float* mfsim = nullptr;        // (rows)
  float* stage_cos = nullptr;    // (rows, num_stages)
  float* recon = nullptr;        // (rows, in_dim) or null: the final x0_hat (the reconstruction)
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  int64_t workspace_rows = 0;    // the batch the workspace was sized for; rows above it are refused
  int threads = 0;               // CPU only, 0: all
  Stream cuda_stream = nullptr;  // CUDA only
};

int check_model_view(const LfdnModelView& m);
// The op-3 parameters of DDIM step ``step`` of a pass (an update of x for all but the last step, the
// scores of x0_hat against p.z0 for the last), shared by the CPU and CUDA passes.
// The op-2 parameters of one layer of a pass (weights of the model view's type and GroupNorm eps).
FusedLinearParams layer_linear_params(const LfdnModelView& m, const float* x, float* out, int64_t rows,
                                      int64_t in_dim, int64_t out_dim, const void* weight, const float* bias,
                                      Prologue pro, const float* gamma, const float* beta, const float* residual);
DdimScoreParams step_ddim_params(const LfdnModelView& m, const ScorePassParams& p, int step, float* x,
                                 const float* x0_hat);
size_t score_pass_cpu_workspace_bytes(const LfdnModelView& m, int64_t max_rows, int threads);
int score_pass_cpu(const ScorePassParams& p);
size_t score_pass_cuda_workspace_bytes(const LfdnModelView& m, int64_t max_rows);
int score_pass_cuda(const ScorePassParams& p);  // device pointers (model views' arrays stay host arrays)

}  // namespace lfdn
