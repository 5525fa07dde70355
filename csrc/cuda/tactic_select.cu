// Selection of a CUDA tactic for one fused-linear problem on the device (lfdn/cuda_tactics.h): every
// candidate runs on the same inputs in every verification case (residual modes, extreme rows), is checked
// against the reference kernel with the FP16 tolerance rule and, when it passes, timed with cudaEvents around
// replays of a CUDA graph of back-to-back runs (median of `iters` samples), through the device-agnostic
// select_tactic_cases of lfdn/tactic_select.h. Host code only (the reference kernel
// is launched by tactics_launch.cu). COMPILED ONLY, NEVER RUN (no GPU on the development machine).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cuda/tactics_internal.h"
#include "cuda/util.cuh"
#include "lfdn/cuda_tactics.h"
#include "lfdn/engine.h"
#include "lfdn/tactic_select.h"

namespace lfdn {

namespace {

struct DeviceBuffer {
  void* p = nullptr;
  ~DeviceBuffer() {
    if (p) cudaFree(p);
  }
};

bool contains(const std::vector<std::string>& v, const char* s) {
  return std::find(v.begin(), v.end(), std::string(s)) != v.end();
}

}  // namespace

std::vector<std::string> cuda_forced_tactics() {
  std::vector<std::string> out;
  const char* env = std::getenv("LFDN_EDGE_TACTIC");
  if (env == nullptr) return out;
  std::string s(env);
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(',', start);
    std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    if (item.rfind("cuda.", 0) == 0) out.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

// Drives the device-agnostic select_tactic_cases (lfdn/tactic_select.h, the same machinery as the CPU
// engine's) with a CUDA-graph runner and the reference kernel's output as the reference of each case.
int cuda_select_linear(const CudaSelectRequest& req, std::vector<CudaTacticRecord>* records, int* best) {
  if (records == nullptr || best == nullptr) return kNullPointer;
  records->clear();
  *best = -1;
  const FusedLinearParams& p0 = req.p;
  int rc = check_cuda_linear_params(p0);
  if (rc != kOk) return rc;
  if (p0.wtype != WeightType::kF16 && p0.wtype != WeightType::kI8) return kBadArgument;
  if (p0.rows < 1 || req.modes.empty()) return kBadSize;
  if (p0.residual != nullptr && p0.residual == p0.out) return kBadArgument;  // the values must stay intact
  for (ResidualMode m : req.modes)
    if (m != ResidualMode::kNone && p0.residual == nullptr) return kNullPointer;
  const int iters = req.iters < 1 ? 1 : req.iters;
  FusedLinearParams p = p0;
  const cudaStream_t s = reinterpret_cast<cudaStream_t>(p.cuda_stream);
  const size_t n_out = static_cast<size_t>(p.rows * p.out_dim);
  DeviceBuffer ref, bound, ws;
  LFDN_CUDA_TRY(cudaMalloc(&ref.p, sizeof(float) * n_out));
  LFDN_CUDA_TRY(cudaMalloc(&bound.p, sizeof(float) * n_out));
  if (p.workspace == nullptr) {
    p.workspace_bytes = cuda_tactic_workspace_bytes(p.rows, p.in_dim, p.out_dim);
    LFDN_CUDA_TRY(cudaMalloc(&ws.p, p.workspace_bytes));
    p.workspace = ws.p;
    if ((rc = cuda_tactic_workspace_init(p.workspace, p.workspace_bytes, p.cuda_stream)) != kOk) return rc;
  }

  // the verification cases: every residual mode with each input set; references from the reference kernel
  // (the residual always from its separate buffer: the reference never runs in place)
  struct Case {
    ResidualMode mode;
    const float* x;
    std::vector<double> ref, scale;
  };
  std::vector<Case> cases;
  std::vector<const float*> inputs{p0.x};
  if (req.x_extreme != nullptr) inputs.push_back(req.x_extreme);
  for (const float* x : inputs)
    for (ResidualMode m : req.modes) cases.push_back(Case{m, x, {}, {}});
  std::vector<float> h_ref(n_out), h_bound(n_out);
  std::vector<TacticReference> refs;
  for (Case& c : cases) {
    FusedLinearParams q = p;
    q.x = c.x;
    q.residual = c.mode == ResidualMode::kNone ? nullptr : p0.residual;
    if ((rc = fused_linear_cuda_reference(q, static_cast<float*>(ref.p), static_cast<float*>(bound.p))) != kOk)
      return rc;
    LFDN_CUDA_TRY(cudaMemcpyAsync(h_ref.data(), ref.p, sizeof(float) * n_out, cudaMemcpyDeviceToHost, s));
    LFDN_CUDA_TRY(cudaMemcpyAsync(h_bound.data(), bound.p, sizeof(float) * n_out, cudaMemcpyDeviceToHost, s));
    LFDN_CUDA_TRY(cudaStreamSynchronize(s));
    c.ref.assign(h_ref.begin(), h_ref.end());
    c.scale.assign(h_bound.begin(), h_bound.end());
  }
  for (const Case& c : cases) {
    TacticReference tref;
    tref.ref = c.ref.data();
    tref.scale = c.scale.data();
    tref.n = static_cast<int64_t>(n_out);
    tref.tol.rtol = 0.0;
    tref.tol.atol = 1e-30;  // (outputs whose bound is 0 must be exact)
    tref.tol.srel = cuda_tactic_tolerance(p.in_dim, p.wtype);  // kI8: + the FP16 copy's weight rounding
    tref.label = std::string(c.mode == ResidualMode::kNone       ? "no residual"
                             : c.mode == ResidualMode::kSeparate ? "separate residual"
                                                                 : "in-place residual") +
                 (c.x == req.x_extreme ? ", extreme rows" : "");
    refs.push_back(tref);
  }

  cudaEvent_t e0 = nullptr, e1 = nullptr;
  struct Cleanup {
    cudaEvent_t *a, *b;
    std::vector<cudaGraphExec_t> graphs;
    ~Cleanup() {
      for (cudaGraphExec_t g : graphs) cudaGraphExecDestroy(g);
      if (*a) cudaEventDestroy(*a);
      if (*b) cudaEventDestroy(*b);
    }
  } cleanup{&e0, &e1, {}};
  LFDN_CUDA_TRY(cudaEventCreate(&e0));
  LFDN_CUDA_TRY(cudaEventCreate(&e1));
  // the case the problem is set up as (inputs, residual aliasing); the output is prefilled for in-place
  int poison_rc = kOk;
  auto setup = [&](int c) -> int {
    if (poison_rc != kOk) {  // the output could not be poisoned: this run's verification would not be sound
      const int r = poison_rc;
      poison_rc = kOk;
      return r;
    }
    const Case& cs = cases[static_cast<size_t>(c)];
    p.x = cs.x;
    if (cs.mode == ResidualMode::kInPlace) {
      p.residual = p.out;
      return cuda::record(cudaMemcpyAsync(p.out, p0.residual, sizeof(float) * n_out, cudaMemcpyDeviceToDevice, s),
                          "cudaMemcpyAsync(in-place residual)");
    }
    p.residual = cs.mode == ResidualMode::kSeparate ? p0.residual : nullptr;
    return kOk;
  };
  TacticRunner runner;
  runner.poison = [&]() {  // NaN: a tactic that leaves outputs unwritten fails (a failed memset fails the run)
    poison_rc = cuda::record(cudaMemsetAsync(p.out, 0xFF, sizeof(float) * n_out, s), "cudaMemsetAsync(poison)");
  };
  runner.prepare = setup;
  runner.run = [&](const LinearTactic& t) {
    const int r = t.run(p);
    return r != kOk ? r : cuda::record(cudaStreamSynchronize(s), "cudaStreamSynchronize(tactic)");
  };
  runner.fetch = [&](float* host, int64_t n) {
    return cuda::record(cudaMemcpy(host, p.out, sizeof(float) * static_cast<size_t>(n), cudaMemcpyDeviceToHost),
                        "cudaMemcpy(tactic output)");
  };
  // Timing as the engine runs it: `reps` runs captured once into a graph (per candidate and reps), each sample
  // one graph launch between two events. Capture failures are recorded like any CUDA error.
  std::string graph_of;
  int graph_reps = 0;
  cudaGraphExec_t exec = nullptr;
  runner.time = [&](const LinearTactic& t, int reps, double* seconds) {
    if (exec == nullptr || graph_of != t.name || graph_reps != reps) {
      LFDN_CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      int r = kOk;
      for (int i = 0; i < reps && r == kOk; ++i) r = t.run(p);
      cudaGraph_t graph = nullptr;
      const int end_rc = cuda::record(cudaStreamEndCapture(s, &graph), "cudaStreamEndCapture(tactic timing)");
      if (r != kOk || end_rc != kOk) {
        if (graph) cudaGraphDestroy(graph);
        if (r == kOk) return end_rc;
        cuda::set_error("capturing " + std::string(t.name) + " into a CUDA graph failed: " + cuda_last_error());
        return r;
      }
      cudaGraphExec_t g = nullptr;
      const int inst = cuda::record(cudaGraphInstantiateWithFlags(&g, graph, 0), "cudaGraphInstantiateWithFlags");
      cudaGraphDestroy(graph);
      if (inst != kOk) return inst;
      cleanup.graphs.push_back(g);
      exec = g;
      graph_of = t.name;
      graph_reps = reps;
    }
    int r = cuda::record(cudaEventRecord(e0, s), "cudaEventRecord");
    if (r == kOk) r = cuda::record(cudaGraphLaunch(exec, s), "cudaGraphLaunch(tactic timing)");
    if (r == kOk) r = cuda::record(cudaEventRecord(e1, s), "cudaEventRecord");
    if (r == kOk) r = cuda::record(cudaEventSynchronize(e1), "cudaEventSynchronize");
    float ms = 0.0f;
    if (r == kOk) r = cuda::record(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
    *seconds = 1e-3 * ms;
    return r;
  };
  TacticSelectOptions opt;
  opt.warmup = 2;
  opt.samples = iters;
  opt.inner = 0;           // runs per sample (per graph) until a sample lasts >= 0.5 ms (<= 1000 runs)
  opt.min_sample_s = 5e-4;
  opt.test_only = req.test_only;
  opt.exclude = req.exclude;
  opt.on_event = req.on_event;
  opt.fatal_status = kCudaError;
  if (!req.only.empty()) opt.filter = [&](const LinearTactic& t) { return contains(req.only, t.name); };
  int n = 0;
  const LinearTactic* table = cuda_linear_tactics(&n);
  TacticSelection sel;
  rc = select_tactic_cases(table, n, p, refs, runner, opt, &sel);
  for (const TacticCandidateResult& c : sel.results) {
    CudaTacticRecord r;
    r.name = c.name;
    r.applies = c.applies;
    r.status = c.status;
    r.passed = c.passed;
    r.worst_ratio = c.max_err_ratio;
    if (c.worst_index >= 0) {  // the tolerance at the worst output, in the case where it was found
      const size_t wc = static_cast<size_t>(c.worst_case >= 0 ? c.worst_case : 0);
      r.tolerance = refs[wc].tol.atol + refs[wc].tol.srel * cases[wc].scale[static_cast<size_t>(c.worst_index)];
      r.max_abs_err = std::isfinite(c.max_err_ratio) ? c.max_err_ratio * r.tolerance
                                                     : std::numeric_limits<double>::infinity();
    }
    r.median_us = c.median_s > 0 ? 1e6 * c.median_s : 0.0;
    r.error = c.passed ? std::string() : (c.status == kCudaError ? c.note + ": " + cuda_last_error() : c.note);
    if (sel.chosen >= 0 && sel.chosen_name == c.name) *best = static_cast<int>(records->size());
    records->push_back(r);
  }
  if (rc == kCudaError) return rc;                  // a candidate's CUDA error: its record says which
  if (rc != kOk && rc != kUnsupported) return rc;   // kUnsupported: none passed, the records say why
  return kOk;
}

int cuda_current_device_info(CudaDeviceInfo* info) {
  if (info == nullptr) return kNullPointer;
  int dev = 0;
  LFDN_CUDA_TRY(cudaGetDevice(&dev));
  cudaDeviceProp prop;
  LFDN_CUDA_TRY(cudaGetDeviceProperties(&prop, dev));
  info->name = prop.name;
  info->major = prop.major;
  info->minor = prop.minor;
  info->sms = prop.multiProcessorCount;
  LFDN_CUDA_TRY(cudaDriverGetVersion(&info->driver));
  LFDN_CUDA_TRY(cudaRuntimeGetVersion(&info->runtime));
  return kOk;
}

}  // namespace lfdn
