// Checks of the model description shared by the CPU and CUDA scoring passes.
#include "lfdn/score_pass.h"

namespace lfdn {

int check_model_view(const LfdnModelView& m) {
  if (m.in_dim <= 0 || m.width <= 0 || m.depth < 0 || m.steps < 1) return kBadSize;
  if (m.in_dim > (int64_t{1} << 30) || m.width > (int64_t{1} << 30)) return kBadSize;
  if (m.wtype != WeightType::kF32 && m.wtype != WeightType::kF16 && m.wtype != WeightType::kBF16 &&
      m.wtype != WeightType::kI8)
    return kBadArgument;
  if (m.inp_w == nullptr || m.inp_b == nullptr || m.out_g == nullptr || m.out_b == nullptr ||
      m.out_w == nullptr || m.out_bias == nullptr || m.eps == nullptr || m.stage_offsets == nullptr)
    return kNullPointer;
  if (m.depth > 0 && (m.blocks == nullptr || m.fc1_bias == nullptr)) return kNullPointer;
  for (int64_t i = 0; i < m.depth; ++i) {
    const LfdnBlockView& b = m.blocks[i];
    if (!b.fc1_w || !b.fc2_w || !b.gn1_g || !b.gn1_b || !b.gn2_g || !b.gn2_b || !b.fc2_b) return kNullPointer;
  }
  if ((m.steps > 1 || m.out_row) && m.coef == nullptr) return kNullPointer;
  if (m.out_row && m.coef[m.steps - 1].sigma != 0.0f) return kBadArgument;
  for (int s = 0; s < m.steps - (m.out_row ? 0 : 1); ++s) {
    if (m.coef[s].sigma != 0.0f && m.step_noise == nullptr) return kNullPointer;
    if (!(m.coef[s].sqrt_1m_ab_cur > 0.0f)) return kBadArgument;
  }
  if (m.num_stages < 1 || m.num_stages > kMaxStages) return kBadSize;
  if (m.stage_offsets[0] != 0 || m.stage_offsets[m.num_stages] != m.in_dim) return kBadArgument;
  for (int i = 0; i < m.num_stages; ++i)
    if (m.stage_offsets[i + 1] <= m.stage_offsets[i]) return kBadArgument;
  if (!(m.gn_eps > 0.0f) || !(m.cos_eps >= 0.0f)) return kBadArgument;
  if (m.num_weights != 0 && m.num_weights != m.num_stages) return kBadSize;
  for (int i = 0; i < m.num_weights; ++i)
    if (!(m.stage_weights[i] >= 0.0f && m.stage_weights[i] <= 1.0f)) return kBadArgument;
  return kOk;
}

FusedLinearParams layer_linear_params(const LfdnModelView& m, const float* x, float* out, int64_t rows,
                                      int64_t in_dim, int64_t out_dim, const void* weight, const float* bias,
                                      Prologue pro, const float* gamma, const float* beta, const float* residual) {
  FusedLinearParams p;
  p.x = x;
  p.out = out;
  p.residual = residual;
  p.weight = weight;
  p.wtype = m.wtype;
  p.bias = bias;
  p.gamma = gamma;
  p.beta = beta;
  p.gn_eps = m.gn_eps;
  p.prologue = pro;
  p.rows = rows;
  p.in_dim = in_dim;
  p.out_dim = out_dim;
  return p;
}

DdimScoreParams step_ddim_params(const LfdnModelView& m, const ScorePassParams& p, int step, float* x,
                                 const float* x0_hat) {
  DdimScoreParams dp;
  dp.x = x;
  dp.x0_hat = x0_hat;
  dp.z0 = p.z0;
  dp.rows = p.rows;
  dp.dim = m.in_dim;
  const bool last = step + 1 == m.steps;
  if (!last || m.out_row) {  // the last step's row (out_row) is deterministic: sigma 0, no noise
    const DdimCoefficients& c = m.coef[step];
    dp.update = true;
    dp.sqrt_ab_cur = c.sqrt_ab_cur;
    dp.sqrt_1m_ab_cur = c.sqrt_1m_ab_cur;
    dp.c_x0 = c.c_x0;
    dp.c_eps = c.c_eps;
    dp.sigma = c.sigma;
    dp.noise = (!last && m.step_noise) ? m.step_noise + static_cast<int64_t>(step) * m.in_dim : nullptr;
  }
  if (last) {
    dp.score_update = m.out_row;
    dp.x_out = m.out_row ? p.recon : nullptr;  // the reconstruction (a DDIM sample) where the caller wants it
    dp.stage_weights = m.num_weights > 0 ? m.stage_weights : nullptr;
    dp.scores = true;
    dp.num_stages = m.num_stages;
    dp.stage_offsets = m.stage_offsets;
    dp.cos_eps = m.cos_eps;
    dp.mse = p.mse;
    dp.mfsim = p.mfsim;
    dp.stage_cos = p.stage_cos;
  }
  return dp;
}

}  // namespace lfdn
