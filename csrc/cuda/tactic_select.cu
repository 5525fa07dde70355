// Selection of a CUDA tactic for one fused-linear problem on the device (lfdn/cuda_tactics.h): every
// candidate runs on the same inputs, is checked against the reference kernel with the FP16 tolerance rule
// and, when it passes, timed with cudaEvents (median of `iters` samples of back-to-back runs), through the
// device-agnostic select_tactic of lfdn/tactic_select.h. Host code only (the reference kernel
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

// Drives the device-agnostic select_tactic (lfdn/tactic_select.h, the same machinery as the CPU engine's)
// with a cudaEvent runner and the reference kernel's output as the reference.
int cuda_select_linear(const FusedLinearParams& p0, int iters, const std::vector<std::string>& test_only,
                       const std::vector<std::string>& only, std::vector<CudaTacticRecord>* records, int* best) {
  if (records == nullptr || best == nullptr) return kNullPointer;
  records->clear();
  *best = -1;
  int rc = check_fused_linear_params(p0);
  if (rc != kOk) return rc;
  if (p0.wtype != WeightType::kF16) return kBadArgument;
  if (p0.rows < 1) return kBadSize;
  if (p0.residual != nullptr && p0.residual == p0.out) return kBadArgument;  // repeated runs must not accumulate
  if (iters < 1) iters = 1;
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
  if ((rc = fused_linear_cuda_reference(p, static_cast<float*>(ref.p), static_cast<float*>(bound.p))) != kOk)
    return rc;
  std::vector<float> h_ref(n_out), h_bound(n_out);
  LFDN_CUDA_TRY(cudaMemcpyAsync(h_ref.data(), ref.p, sizeof(float) * n_out, cudaMemcpyDeviceToHost, s));
  LFDN_CUDA_TRY(cudaMemcpyAsync(h_bound.data(), bound.p, sizeof(float) * n_out, cudaMemcpyDeviceToHost, s));
  LFDN_CUDA_TRY(cudaStreamSynchronize(s));
  std::vector<double> d_ref(h_ref.begin(), h_ref.end()), d_scale(h_bound.begin(), h_bound.end());
  TacticReference tref;
  tref.ref = d_ref.data();
  tref.scale = d_scale.data();
  tref.n = static_cast<int64_t>(n_out);
  tref.tol.rtol = 0.0;
  tref.tol.atol = 1e-30;  // (outputs whose bound is 0 must be exact)
  tref.tol.srel = cuda_tactic_tolerance(p.in_dim);

  cudaEvent_t e0 = nullptr, e1 = nullptr;
  struct EventsFree {
    cudaEvent_t *a, *b;
    ~EventsFree() {
      if (*a) cudaEventDestroy(*a);
      if (*b) cudaEventDestroy(*b);
    }
  } ev_free{&e0, &e1};
  LFDN_CUDA_TRY(cudaEventCreate(&e0));
  LFDN_CUDA_TRY(cudaEventCreate(&e1));
  TacticRunner runner;
  runner.poison = [&]() { cudaMemsetAsync(p.out, 0xFF, sizeof(float) * n_out, s); };  // NaN
  runner.run = [&](const LinearTactic& t) {
    const int r = t.run(p);
    return r != kOk ? r : cuda::record(cudaStreamSynchronize(s), "cudaStreamSynchronize(tactic)");
  };
  runner.fetch = [&](float* host, int64_t n) {
    return cuda::record(cudaMemcpy(host, p.out, sizeof(float) * static_cast<size_t>(n), cudaMemcpyDeviceToHost),
                        "cudaMemcpy(tactic output)");
  };
  runner.time = [&](const LinearTactic& t, int reps, double* seconds) {
    int r = cuda::record(cudaEventRecord(e0, s), "cudaEventRecord");
    for (int i = 0; i < reps && r == kOk; ++i) r = t.run(p);
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
  opt.inner = 0;           // back-to-back runs per sample until a sample lasts >= 0.5 ms (<= 1000 runs)
  opt.min_sample_s = 5e-4;
  opt.test_only = test_only;
  if (!only.empty()) opt.filter = [&](const LinearTactic& t) { return contains(only, t.name); };
  int n = 0;
  const LinearTactic* table = cuda_linear_tactics(&n);
  TacticSelection sel;
  rc = select_tactic(table, n, p, tref, runner, opt, &sel);
  if (rc != kOk && rc != kUnsupported) return rc;  // kUnsupported: none passed, the records say why
  for (const TacticCandidateResult& c : sel.results) {
    CudaTacticRecord r;
    r.name = c.name;
    r.applies = c.applies;
    r.status = c.status;
    r.passed = c.passed;
    r.worst_ratio = c.max_err_ratio;
    if (c.worst_index >= 0) {
      r.tolerance = tref.tol.atol + tref.tol.srel * d_scale[static_cast<size_t>(c.worst_index)];
      r.max_abs_err = std::isfinite(c.max_err_ratio) ? c.max_err_ratio * r.tolerance
                                                     : std::numeric_limits<double>::infinity();
    }
    r.median_us = c.median_s > 0 ? 1e6 * c.median_s : 0.0;
    r.error = c.passed ? std::string() : (c.status == kCudaError ? c.note + ": " + cuda_last_error() : c.note);
    if (sel.chosen >= 0 && sel.chosen_name == c.name) *best = static_cast<int>(records->size());
    records->push_back(r);
  }
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
