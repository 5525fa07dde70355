// CpuEngine: packs the weights into the CPU panel layout once, generates the fixed noise with op 1 and
// sizes the workspace for max_batch; score() is one call of op 4.
#include <cstring>

#include "cpu/team.h"
#include "lfdn/engine.h"
#include "lfdn/linear.h"
#include "lfdn/noise.h"

namespace lfdn {

int CpuEngine::create(const EngineSpec& s, int64_t max_batch, int threads, std::unique_ptr<CpuEngine>* out) {
  int rc = check_engine_spec(s);
  if (rc != kOk) return rc;
  if (max_batch < 1 || threads < 0) return kBadSize;
  if (out == nullptr) return kNullPointer;
  std::unique_ptr<CpuEngine> e(new CpuEngine());
  e->max_batch_ = max_batch;
  e->threads_ = cpu::resolve_threads(threads);
  const int64_t C = s.in_dim, W = s.width, D = s.depth;

  // weights: inp, (fc1, fc2) per block, out -- one 64-byte aligned buffer of packed panels
  const size_t b_inp = cpu::align_up(packed_linear_cpu_bytes(C, W, s.wtype));
  const size_t b_blk = cpu::align_up(packed_linear_cpu_bytes(W, W, s.wtype));
  const size_t b_out = cpu::align_up(packed_linear_cpu_bytes(W, C, s.wtype));
  e->weight_bytes_ = b_inp + 2 * b_blk * static_cast<size_t>(D) + b_out;
  e->weights_ = aligned_alloc_bytes(e->weight_bytes_);
  if (!e->weights_) return kBadSize;
  char* wp = e->weights_.get();
  std::memset(wp, 0, e->weight_bytes_);
  const void* inp_w = wp;
  if ((rc = pack_linear_cpu(s.inp_w, s.wtype, C, W, wp)) != kOk) return rc;
  wp += b_inp;
  std::vector<const void*> fc1(D), fc2(D);
  for (int64_t i = 0; i < D; ++i) {
    fc1[i] = wp;
    if ((rc = pack_linear_cpu(s.fc1_w[i], s.wtype, W, W, wp)) != kOk) return rc;
    wp += b_blk;
    fc2[i] = wp;
    if ((rc = pack_linear_cpu(s.fc2_w[i], s.wtype, W, W, wp)) != kOk) return rc;
    wp += b_blk;
  }
  const void* out_w = wp;
  if ((rc = pack_linear_cpu(s.out_w, s.wtype, W, C, wp)) != kOk) return rc;

  // small FP32 arrays, copied into one vector (offsets first, pointers once it no longer grows)
  std::vector<float>& sm = e->small_;
  auto put = [&sm](const float* src, int64_t n) {
    const size_t off = sm.size();
    sm.insert(sm.end(), src, src + n);
    return off;
  };
  const size_t o_inp_b = put(s.inp_b, W);
  std::vector<size_t> o_blk(static_cast<size_t>(D) * 5);
  for (int64_t i = 0; i < D; ++i) {
    o_blk[i * 5 + 0] = put(s.gn1_g[i], W);
    o_blk[i * 5 + 1] = put(s.gn1_b[i], W);
    o_blk[i * 5 + 2] = put(s.gn2_g[i], W);
    o_blk[i * 5 + 3] = put(s.gn2_b[i], W);
    o_blk[i * 5 + 4] = put(s.fc2_b[i], W);
  }
  const size_t o_fc1_bias = D > 0 ? put(s.fc1_bias, static_cast<int64_t>(s.steps) * D * W) : 0;
  const size_t o_out_g = put(s.out_g, W), o_out_b = put(s.out_b, W), o_out_bias = put(s.out_bias, C);
  // noise: eps = Philox stream 0, the eta noise of DDIM update s = stream s + 1 (image key 0)
  const size_t o_eps = sm.size();
  sm.resize(sm.size() + static_cast<size_t>(C) * s.steps);
  for (int32_t st = 0; st < s.steps; ++st) {
    NoiseParams np;
    np.out = sm.data() + o_eps + static_cast<size_t>(st) * C;
    np.rows = 1;
    np.dim = C;
    np.seed = s.seed;
    np.stream = static_cast<uint32_t>(st);
    np.a = 0.0f;
    np.b = 1.0f;
    if ((rc = noise_inject_cpu(np)) != kOk) return rc;
  }
  const float* base = sm.data();

  e->blocks_.resize(D);
  for (int64_t i = 0; i < D; ++i) {
    LfdnBlockView& b = e->blocks_[i];
    b.fc1_w = fc1[i];
    b.fc2_w = fc2[i];
    b.gn1_g = base + o_blk[i * 5 + 0];
    b.gn1_b = base + o_blk[i * 5 + 1];
    b.gn2_g = base + o_blk[i * 5 + 2];
    b.gn2_b = base + o_blk[i * 5 + 3];
    b.fc2_b = base + o_blk[i * 5 + 4];
  }
  e->coef_ = s.coef;
  e->offsets_ = s.stage_offsets;
  LfdnModelView& v = e->view_;
  v.in_dim = C;
  v.width = W;
  v.depth = D;
  v.wtype = s.wtype;
  v.inp_w = inp_w;
  v.inp_b = base + o_inp_b;
  v.blocks = e->blocks_.data();
  v.fc1_bias = D > 0 ? base + o_fc1_bias : nullptr;
  v.out_g = base + o_out_g;
  v.out_b = base + o_out_b;
  v.out_w = out_w;
  v.out_bias = base + o_out_bias;
  v.gn_eps = s.gn_eps;
  v.steps = s.steps;
  v.q_a = s.q_a;
  v.q_b = s.q_b;
  v.eps = base + o_eps;
  v.step_noise = s.steps > 1 ? base + o_eps + C : nullptr;
  v.coef = e->coef_.data();
  v.num_stages = static_cast<int32_t>(e->offsets_.size() - 1);
  v.stage_offsets = e->offsets_.data();
  v.cos_eps = s.cos_eps;
  if ((rc = check_model_view(v)) != kOk) return rc;

  e->workspace_bytes_ = score_pass_cpu_workspace_bytes(v, max_batch, e->threads_);
  e->workspace_ = aligned_alloc_bytes(e->workspace_bytes_);
  if (!e->workspace_) return kBadSize;
  *out = std::move(e);
  return kOk;
}

int CpuEngine::score(const float* z0, int64_t rows, float* mse, float* mfsim, float* stage_cos,
                     float* recon) const {
  std::lock_guard<std::mutex> lock(mutex_);
  ScorePassParams p;
  p.model = &view_;
  p.z0 = z0;
  p.rows = rows;
  p.mse = mse;
  p.mfsim = mfsim;
  p.stage_cos = stage_cos;
  p.recon = recon;
  p.workspace = workspace_.get();
  p.workspace_bytes = workspace_bytes_;
  p.workspace_rows = max_batch_;
  p.threads = threads_;
  return score_pass_cpu(p);
}

}  // namespace lfdn
