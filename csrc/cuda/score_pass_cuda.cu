// Op 4 (CUDA): the scoring pass as a sequence of launches on one stream (capturable into a CUDA graph).
// score_pass_cuda runs cuda.legacy_tile for every layer; score_pass_cuda_plan the tactic of each layer kind
// (lfdn/cuda_tactics.h), chosen per batch bucket by the engine.
#include "cuda/util.cuh"
#include "lfdn/cuda_tactics.h"
#include "lfdn/linear.h"
#include "lfdn/noise.h"
#include "lfdn/score_pass.h"

namespace lfdn {

namespace {

size_t buf_bytes(int64_t rows, int64_t dim) { return (sizeof(float) * rows * dim + 255) / 256 * 256; }

int linear(const LfdnModelView& m, Stream s, const LinearTactic* t, const CudaPassPlan& plan, const float* x,
           float* out, int64_t rows, int64_t in_dim, int64_t out_dim, const void* w, const float* bias, Prologue pro,
           const float* g, const float* b, const float* residual) {
  FusedLinearParams p = layer_linear_params(m, x, out, rows, in_dim, out_dim, w, bias, pro, g, b, residual);
  p.cuda_stream = s;
  p.wtype = plan.wtype;  // kI8: the weights are packed CUDA INT8 blobs (lfdn/cuda_tactics.h)
  if (t == nullptr) return fused_linear_cuda(p);
  p.workspace = plan.workspace;
  p.workspace_bytes = plan.workspace_bytes;
  return t->run(p);
}

}  // namespace

size_t score_pass_cuda_workspace_bytes(const LfdnModelView& m, int64_t max_rows) {
  return 2 * buf_bytes(max_rows, m.in_dim) + 2 * buf_bytes(max_rows, m.width);
}

int score_pass_cuda(const ScorePassParams& p) { return score_pass_cuda_plan(p, CudaPassPlan()); }

int score_pass_cuda_plan(const ScorePassParams& p, const CudaPassPlan& plan) {
  if (p.model == nullptr) return kNullPointer;
  const LfdnModelView& m = *p.model;
  int rc = check_model_view(m);
  if (rc != kOk) return rc;
  if (m.wtype != WeightType::kF16) return kBadArgument;  // (an INT8 engine's view: the blobs' FP16 copies)
  if (plan.wtype != WeightType::kF16 && plan.wtype != WeightType::kI8) return kBadArgument;
  if (p.rows <= 0) return kBadSize;
  if (p.rows > p.workspace_rows) return kBatchAboveWorkspace;
  if (!p.z0 || !p.mse || !p.mfsim || !p.stage_cos || !p.workspace) return kNullPointer;
  if (p.workspace_bytes < score_pass_cuda_workspace_bytes(m, p.workspace_rows)) return kWorkspaceTooSmall;
  const int64_t M = p.rows, C = m.in_dim, W = m.width, R = p.workspace_rows;
  char* base = static_cast<char*>(p.workspace);
  float* x = reinterpret_cast<float*>(base);
  float* y = reinterpret_cast<float*>(base + buf_bytes(R, C));
  float* h = reinterpret_cast<float*>(base + 2 * buf_bytes(R, C));
  float* u = reinterpret_cast<float*>(base + 2 * buf_bytes(R, C) + buf_bytes(R, W));
  const Stream s = p.cuda_stream;

  NoiseParams np;
  np.z0 = p.z0;
  np.out = x;
  np.eps_row = m.eps;
  np.rows = M;
  np.dim = C;
  np.a = m.q_a;
  np.b = m.q_b;
  np.cuda_stream = s;
  if ((rc = noise_inject_cuda(np)) != kOk) return rc;

  for (int st = 0; st < m.steps; ++st) {
    if ((rc = linear(m, s, plan.inp, plan, x, h, M, C, W, m.inp_w, m.inp_b, Prologue::kSilu, nullptr, nullptr, nullptr)) != kOk)
      return rc;
    for (int64_t i = 0; i < m.depth; ++i) {
      const LfdnBlockView& b = m.blocks[i];
      const float* bias1 = m.fc1_bias + (static_cast<int64_t>(st) * m.depth + i) * W;
      if ((rc = linear(m, s, plan.fc1, plan, h, u, M, W, W, b.fc1_w, bias1, Prologue::kGroupNormSilu, b.gn1_g, b.gn1_b,
                       nullptr)) != kOk)
        return rc;
      if ((rc = linear(m, s, plan.fc2, plan, u, h, M, W, W, b.fc2_w, b.fc2_b, Prologue::kGroupNormSilu, b.gn2_g, b.gn2_b, h)) !=
          kOk)
        return rc;
    }
    float* out = (st + 1 == m.steps && p.recon != nullptr) ? p.recon : y;
    if ((rc = linear(m, s, plan.out, plan, h, out, M, W, C, m.out_w, m.out_bias, Prologue::kGroupNormSilu, m.out_g, m.out_b,
                     nullptr)) != kOk)
      return rc;
    DdimScoreParams dp = step_ddim_params(m, p, st, x, out);
    dp.cuda_stream = s;
    if ((rc = ddim_score_cuda(dp)) != kOk) return rc;
  }
  return kOk;
}

}  // namespace lfdn
