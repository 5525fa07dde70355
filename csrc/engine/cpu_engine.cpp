// CpuEngine: packs the weights into the CPU panel layout once, generates the fixed noise with op 1 and
// sizes the workspace for max_batch; score() is one call of op 4.
#include <cstring>

#include "cpu/kernels.h"
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
  if (s.wtype == WeightType::kBF16 && cpu::kernels().gemm_bf16 == nullptr) return kUnsupported;
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
  PackedWeights pw;
  pw.inp = wp;
  if ((rc = pack_linear_cpu(s.inp_w, s.wtype, C, W, wp)) != kOk) return rc;
  wp += b_inp;
  pw.fc1.resize(D);
  pw.fc2.resize(D);
  for (int64_t i = 0; i < D; ++i) {
    pw.fc1[i] = wp;
    if ((rc = pack_linear_cpu(s.fc1_w[i], s.wtype, W, W, wp)) != kOk) return rc;
    wp += b_blk;
    pw.fc2[i] = wp;
    if ((rc = pack_linear_cpu(s.fc2_w[i], s.wtype, W, W, wp)) != kOk) return rc;
    wp += b_blk;
  }
  pw.out = wp;
  if ((rc = pack_linear_cpu(s.out_w, s.wtype, W, C, wp)) != kOk) return rc;

  // small FP32 arrays in one vector; the noise: eps = Philox stream 0, the eta noise of DDIM update s =
  // stream s + 1 (image key 0)
  std::vector<float>& sm = e->small_;
  const SmallArrayOffsets o = pack_small_arrays(s, 1, &sm);
  const size_t o_eps = o.eps;
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
  e->coef_ = s.coef;
  e->offsets_ = s.stage_offsets;
  LfdnModelView& v = e->view_;
  fill_model_view(s, s.wtype, pw, sm.data(), o, e->coef_, e->offsets_, &e->blocks_, &v);
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
