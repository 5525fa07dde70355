// CpuEngine: packs the weights into the CPU panel layout once, generates the fixed noise with op 1 and
// sizes the workspace for max_batch; score() is one call of op 4.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "cpu/kernels.h"
#include "cpu/ops_internal.h"
#include "cpu/team.h"
#include "lfdn/engine.h"
#include "lfdn/linear.h"
#include "lfdn/noise.h"
#include "lfdn/tactics.h"

namespace lfdn {

int CpuEngine::create(const EngineSpec& s, int64_t max_batch, int threads, std::unique_ptr<CpuEngine>* out) {
  int rc = check_engine_spec(s);
  if (rc != kOk) return rc;
  if (max_batch < 1 || threads < 0) return kBadSize;
  if (out == nullptr) return kNullPointer;
  if (s.wtype == WeightType::kBF16 && cpu::kernels().gemm_bf16 == nullptr) return kUnsupported;
  if (s.wtype == WeightType::kI8 && cpu::kernels().gemm_i8 == nullptr) return kUnsupported;
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
  // INT8 weights are packed with their per-output-channel scales (the blob is self-contained)
  auto pack = [&s](const void* src, const float* scales, int64_t in, int64_t outd, void* dst) {
    if (s.wtype == WeightType::kI8) return pack_linear_cpu_i8(static_cast<const int8_t*>(src), scales, in, outd, dst);
    return pack_linear_cpu(src, s.wtype, in, outd, dst);
  };
  const bool i8 = s.wtype == WeightType::kI8;
  pw.inp = wp;
  if ((rc = pack(s.inp_w, s.inp_ws, C, W, wp)) != kOk) return rc;
  wp += b_inp;
  pw.fc1.resize(D);
  pw.fc2.resize(D);
  for (int64_t i = 0; i < D; ++i) {
    pw.fc1[i] = wp;
    if ((rc = pack(s.fc1_w[i], i8 ? s.fc1_ws[i] : nullptr, W, W, wp)) != kOk) return rc;
    wp += b_blk;
    pw.fc2[i] = wp;
    if ((rc = pack(s.fc2_w[i], i8 ? s.fc2_ws[i] : nullptr, W, W, wp)) != kOk) return rc;
    wp += b_blk;
  }
  pw.out = wp;
  if ((rc = pack(s.out_w, s.out_ws, W, C, wp)) != kOk) return rc;

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
  e->isa_ = cpu::kernels().name;
  e->tactics_.assign(static_cast<size_t>(tactic_bucket(max_batch)) + 1, {-1, -1, -1});
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
  const int bucket = rows >= 1 && rows <= max_batch_ ? tactic_bucket(rows) : 0;
  return cpu::score_pass_cpu_tactics(p, tactics_[static_cast<size_t>(bucket)].data());
}

int CpuEngine::tactic(int bucket, int kind) const {
  if (bucket < 0 || bucket >= num_buckets() || kind < 0 || kind >= kLayerKinds) return kBadArgument;
  return tactics_[static_cast<size_t>(bucket)][static_cast<size_t>(kind)];
}

int CpuEngine::set_tactic(int bucket, int kind, int index, bool allow_test_only) {
  if (bucket < 0 || bucket >= num_buckets() || kind < 0 || kind >= kLayerKinds) return kBadArgument;
  if (kind == 1 && view_.depth == 0) return kBadArgument;  // no block layers
  if (index != -1) {
    int n = 0;
    const LinearTactic* t = cpu_linear_tactics(&n);
    if (index < 0 || index >= n) return kBadArgument;
    if (t[index].test_only && !allow_test_only) return kBadArgument;
    if (std::strcmp(cpu_tactic_isa(index), isa_) != 0) return kBadArgument;
    if (!t[index].applies(tactic_problem(bucket, kind))) return kBadArgument;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  tactics_[static_cast<size_t>(bucket)][static_cast<size_t>(kind)] = index;
  return kOk;
}

FusedLinearParams CpuEngine::tactic_problem(int bucket, int kind) const {
  const LfdnModelView& m = view_;
  const int64_t bound = tactic_bucket_bound(bucket);
  const int64_t rows = bound < max_batch_ ? bound : max_batch_;
  FusedLinearParams p;
  p.wtype = m.wtype;
  p.gn_eps = m.gn_eps;
  p.rows = rows;
  p.threads = threads_;
  if (kind == 0) {
    p.in_dim = m.in_dim;
    p.out_dim = m.width;
    p.weight = m.inp_w;
    p.bias = m.inp_b;
    p.prologue = Prologue::kSilu;
  } else if (kind == 1) {
    p.in_dim = m.width;
    p.out_dim = m.width;
    p.weight = m.blocks[0].fc1_w;
    p.bias = m.fc1_bias;
    p.gamma = m.blocks[0].gn1_g;
    p.beta = m.blocks[0].gn1_b;
    p.prologue = Prologue::kGroupNormSilu;
  } else {
    p.in_dim = m.width;
    p.out_dim = m.in_dim;
    p.weight = m.out_w;
    p.bias = m.out_bias;
    p.gamma = m.out_g;
    p.beta = m.out_b;
    p.prologue = Prologue::kGroupNormSilu;
  }
  return p;
}

namespace {

// Bytes a cache flush reads: twice the last-level cache as sysconf reports it, between 16 and 64 MiB. The cap:
// in VMs and on many-core servers sysconf reports the whole socket's L3 (e.g. 320 MiB), while the cores a process
// runs on share one slice of it (32 MiB per Zen 4 core complex); edge CPUs have 2-8 MiB. Where a core's share of
// the last-level cache is above 32 MiB, the timings are partly warm.
size_t flush_bytes() {
  long l3 = -1;
#if defined(_SC_LEVEL3_CACHE_SIZE)
  l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
  size_t b = l3 > 0 ? 2 * static_cast<size_t>(l3) : size_t{64} << 20;
  if (b < (size_t{16} << 20)) b = size_t{16} << 20;
  if (b > (size_t{64} << 20)) b = size_t{64} << 20;
  return b;
}

volatile uint64_t g_flush_sink = 0;

// Reads the whole buffer (one load per 64-byte line); the sum goes to a volatile so that the loop stays.
void flush_caches(const std::vector<uint64_t>& buf) {
  uint64_t s = 0;
  for (size_t i = 0; i < buf.size(); i += 8) s += buf[i];
  g_flush_sink = g_flush_sink + s;
}

}  // namespace

int CpuEngine::select(int bucket, int kind, const TacticSelectOptions& opt, TacticSelection* out,
                      const std::function<int(const LinearTactic&, int, double*)>& time, bool cold_cache) const {
  if (out == nullptr) return kNullPointer;
  if (bucket < 0 || bucket >= num_buckets() || kind < 0 || kind >= kLayerKinds) return kBadArgument;
  if (kind == 1 && view_.depth == 0) return kBadArgument;  // no block layers
  FusedLinearParams p = tactic_problem(bucket, kind);
  // deterministic inputs: standard normal (Philox, a stream no pass uses) scaled to the residual stream's range
  std::vector<float> x(static_cast<size_t>(p.rows * p.in_dim)), y(static_cast<size_t>(p.rows * p.out_dim));
  NoiseParams np;
  np.out = x.data();
  np.rows = p.rows;
  np.dim = p.in_dim;
  np.seed = 0x7AC71C5ULL;
  np.stream = 0xFFFFu;
  np.a = 0.0f;
  np.b = 1.0f;
  int rc = noise_inject_cpu(np);
  if (rc != kOk) return rc;
  const size_t ws_bytes = cpu::linear_workspace_bytes(p.rows, p.in_dim, cpu::resolve_threads(p.threads));
  AlignedBuffer ws = aligned_alloc_bytes(ws_bytes);
  if (!ws) return kBadSize;
  p.x = x.data();
  p.out = y.data();
  p.workspace = ws.get();
  p.workspace_bytes = ws_bytes;
  std::vector<double> ref(y.size()), scale(y.size());
  if ((rc = fused_linear_cpu_reference(p, ref.data(), scale.data())) != kOk) return rc;
  TacticReference tr;
  tr.ref = ref.data();
  tr.scale = scale.data();
  tr.n = static_cast<int64_t>(y.size());
  tr.tol = tactic_tolerance(p.wtype);
  TacticRunner runner;
  runner.poison = [&] { std::fill(y.begin(), y.end(), std::nanf("")); };
  runner.run = [&](const LinearTactic& t) { return t.run(p); };
  runner.fetch = [&](float* host, int64_t n) {
    if (n != static_cast<int64_t>(y.size())) return static_cast<int>(kBadSize);
    std::memcpy(host, y.data(), sizeof(float) * y.size());
    return static_cast<int>(kOk);
  };
  std::vector<uint64_t> flush;
  if (time) {
    runner.time = time;
  } else if (cold_cache) {
    flush.assign(flush_bytes() / sizeof(uint64_t), 1);
    runner.time = [&](const LinearTactic& t, int reps, double* seconds) {
      double total = 0.0;
      for (int i = 0; i < reps; ++i) {
        flush_caches(flush);
        const auto t0 = std::chrono::steady_clock::now();
        const int r = t.run(p);
        total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r != kOk) return r;
      }
      *seconds = total;
      return static_cast<int>(kOk);
    };
  } else {
    runner.time = [&](const LinearTactic& t, int reps, double* seconds) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) {
        const int r = t.run(p);
        if (r != kOk) return r;
      }
      *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return static_cast<int>(kOk);
    };
  }
  TacticSelectOptions o = opt;
  if (cold_cache && !time) o.inner = 1;  // one cold run per sample
  const std::string isa = isa_;
  const LinearTactic* table0 = nullptr;
  int n = 0;
  table0 = cpu_linear_tactics(&n);
  o.filter = [&, table0](const LinearTactic& t) {
    const int idx = static_cast<int>(&t - table0);
    return isa == cpu_tactic_isa(idx) && (!opt.filter || opt.filter(t));
  };
  if (o.baseline.empty()) {
    const int d = cpu_default_tactic(isa_);
    if (d >= 0) o.baseline = table0[d].name;
  }
  // (selection runs its own team runs: serialised with score calls by the team's process-wide lock)
  return select_tactic(table0, n, p, tr, runner, o, out);
}

}  // namespace lfdn
