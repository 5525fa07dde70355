// Op 4 on the CPU: the whole scoring pass as one team run (team.h): the ops are consecutive phases, so a
// batch wakes the worker threads once, and a phase ends when its work is done.
#include "cpu/kernels.h"
#include "cpu/ops_internal.h"
#include "cpu/team.h"
#include "lfdn/score_pass.h"

namespace lfdn {

namespace {

struct PassWs {
  float *x, *h, *u, *y;
  void* linear;
};

size_t buf_bytes(int64_t rows, int64_t dim) { return cpu::align_up(sizeof(float) * rows * dim); }

PassWs carve(const LfdnModelView& m, void* ws, int64_t rows) {
  char* p = static_cast<char*>(ws);
  PassWs w;
  w.x = reinterpret_cast<float*>(p);
  p += buf_bytes(rows, m.in_dim);
  w.y = reinterpret_cast<float*>(p);
  p += buf_bytes(rows, m.in_dim);
  w.h = reinterpret_cast<float*>(p);
  p += buf_bytes(rows, m.width);
  w.u = reinterpret_cast<float*>(p);
  p += buf_bytes(rows, m.width);
  w.linear = p;
  return w;
}


}  // namespace

size_t score_pass_cpu_workspace_bytes(const LfdnModelView& m, int64_t max_rows, int threads) {
  const int64_t kmax = m.in_dim > m.width ? m.in_dim : m.width;
  return 2 * buf_bytes(max_rows, m.in_dim) + 2 * buf_bytes(max_rows, m.width) +
         cpu::linear_workspace_bytes(max_rows, kmax, cpu::resolve_threads(threads));
}

int score_pass_cpu(const ScorePassParams& p) { return cpu::score_pass_cpu_tactics(p, nullptr); }

int cpu::score_pass_cpu_tactics(const ScorePassParams& p, const int32_t* tactics) {
  if (p.model == nullptr) return kNullPointer;
  const LfdnModelView& m = *p.model;
  int rc = check_model_view(m);
  if (rc != kOk) return rc;
  if (p.rows <= 0) return kBadSize;
  if (p.rows > p.workspace_rows) return kBatchAboveWorkspace;
  if (p.z0 == nullptr || p.mse == nullptr || p.mfsim == nullptr || p.stage_cos == nullptr ||
      p.workspace == nullptr)
    return kNullPointer;
  // BF16 runs only on a table with the BF16 dot product (avx512 on a CPU with AVX512_BF16): no other arithmetic
  if (m.wtype == WeightType::kBF16 && cpu::kernels().gemm_bf16 == nullptr) return kUnsupported;
  // INT8 likewise only on a table with an INT8 dot product (or the scalar reference table, chosen explicitly)
  if (m.wtype == WeightType::kI8 && cpu::kernels().gemm_i8 == nullptr) return kUnsupported;
  const int nt = cpu::resolve_threads(p.threads);
  if (p.workspace_bytes < score_pass_cpu_workspace_bytes(m, p.workspace_rows, nt)) return kWorkspaceTooSmall;

  // per layer kind (inp, block, out) the blocking of its tactic, null: the default of the active table
  cpu::LinearConfig cfg_store[3];
  const cpu::LinearConfig* cfg[3] = {nullptr, nullptr, nullptr};
  for (int i = 0; i < 3 && tactics != nullptr; ++i)
    if (tactics[i] >= 0) {
      cfg[i] = cpu::tactic_config(tactics[i], &cfg_store[i]);
      if (cfg[i] == nullptr) return kBadArgument;
    }

  const int64_t M = p.rows, C = m.in_dim, W = m.width;
  // Carve with the workspace's own row count so that buffers keep their places for any batch size.
  const PassWs w = carve(m, p.workspace, p.workspace_rows);

  NoiseParams np;  // x = q_a * z0 + q_b * eps
  np.z0 = p.z0;
  np.out = w.x;
  np.eps_row = m.eps;
  np.rows = M;
  np.dim = C;
  np.a = m.q_a;
  np.b = m.q_b;

  auto lin = [&](const float* x, float* out, int64_t in_dim, int64_t out_dim, const void* wt, const float* bias,
                 Prologue pro, const float* g, const float* b, const float* residual) {
    return layer_linear_params(m, x, out, M, in_dim, out_dim, wt, bias, pro, g, b, residual);
  };
  auto ddim = [&](int s, float* y) { return step_ddim_params(m, p, s, w.x, y); };
  // phases: noise, then per step: inp (2), 2 per block layer (prologue + GEMM), out (2), DDIM/scores (1)
  const int phases = 1 + m.steps * (2 + 4 * static_cast<int>(m.depth) + 2 + 1);

  cpu::team_run(nt, phases, [&](cpu::Runner& r) {
    cpu::run_noise(np, r);
    for (int s = 0; s < m.steps; ++s) {
      cpu::run_fused_linear(lin(w.x, w.h, C, W, m.inp_w, m.inp_b, Prologue::kSilu, nullptr, nullptr, nullptr),
                            w.linear, r, cfg[0]);
      for (int64_t i = 0; i < m.depth; ++i) {
        const LfdnBlockView& b = m.blocks[i];
        const float* bias1 = m.fc1_bias + (static_cast<int64_t>(s) * m.depth + i) * W;
        cpu::run_fused_linear(lin(w.h, w.u, W, W, b.fc1_w, bias1, Prologue::kGroupNormSilu, b.gn1_g, b.gn1_b,
                                  nullptr),
                              w.linear, r, cfg[1]);
        cpu::run_fused_linear(lin(w.u, w.h, W, W, b.fc2_w, b.fc2_b, Prologue::kGroupNormSilu, b.gn2_g, b.gn2_b,
                                  w.h),
                              w.linear, r, cfg[1]);
      }
      float* y = (s + 1 == m.steps && p.recon != nullptr) ? p.recon : w.y;
      cpu::run_fused_linear(lin(w.h, y, W, C, m.out_w, m.out_bias, Prologue::kGroupNormSilu, m.out_g, m.out_b,
                                nullptr),
                            w.linear, r, cfg[2]);
      cpu::run_ddim_score(ddim(s, y), r);
    }
  });
  return kOk;
}

}  // namespace lfdn
