// Selection of a CUDA tactic for one fused-linear problem on the device (lfdn/cuda_tactics.h): every
// candidate runs on the same inputs, is checked against the reference kernel with the FP16 tolerance rule
// and, when it passes, timed with cudaEvents (median of `iters` runs). Host code only (the reference kernel
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

std::string why(int rc) {
  return rc == kCudaError ? cuda_last_error() : std::string(status_message(rc));
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
  std::vector<float> h_ref(n_out), h_bound(n_out), h_y(n_out);
  LFDN_CUDA_TRY(cudaMemcpyAsync(h_ref.data(), ref.p, sizeof(float) * n_out, cudaMemcpyDeviceToHost, s));
  LFDN_CUDA_TRY(cudaMemcpyAsync(h_bound.data(), bound.p, sizeof(float) * n_out, cudaMemcpyDeviceToHost, s));
  LFDN_CUDA_TRY(cudaStreamSynchronize(s));
  const double tol_rel = cuda_tactic_tolerance(p.in_dim);

  std::vector<cudaEvent_t> ev(2 * static_cast<size_t>(iters), nullptr);
  struct EventsFree {
    std::vector<cudaEvent_t>* e;
    ~EventsFree() {
      for (cudaEvent_t x : *e)
        if (x) cudaEventDestroy(x);
    }
  } ev_free{&ev};
  for (auto& e : ev) LFDN_CUDA_TRY(cudaEventCreate(&e));

  int n = 0;
  const LinearTactic* table = cuda_linear_tactics(&n);
  double best_us = std::numeric_limits<double>::infinity();
  for (int i = 0; i < n; ++i) {
    const LinearTactic& t = table[i];
    if (t.test_only && !contains(test_only, t.name)) continue;
    if (!only.empty() && !contains(only, t.name)) continue;
    CudaTacticRecord r;
    r.name = t.name;
    r.applies = t.applies(p);
    if (!r.applies) {
      r.error = "does not apply (device, architecture compiled, rows or library)";
      records->push_back(r);
      continue;
    }
    // NaN-fill the output: a tactic that leaves outputs unwritten fails
    LFDN_CUDA_TRY(cudaMemsetAsync(p.out, 0xFF, sizeof(float) * n_out, s));
    r.status = t.run(p);
    if (r.status == kOk) r.status = cuda::record(cudaStreamSynchronize(s), "cudaStreamSynchronize(tactic)");
    if (r.status != kOk) {
      r.error = why(r.status);
      records->push_back(r);
      continue;
    }
    LFDN_CUDA_TRY(cudaMemcpy(h_y.data(), p.out, sizeof(float) * n_out, cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (size_t k = 0; k < n_out; ++k) {
      const double y = h_y[k], yr = h_ref[k];
      if (!std::isfinite(yr)) {  // non-finite reference: the tactic must propagate it
        if (std::isfinite(y)) ++bad;
        continue;
      }
      const double tol = tol_rel * h_bound[k] + 1e-30;
      const double err = std::isfinite(y) ? std::fabs(y - yr) : std::numeric_limits<double>::infinity();
      const double ratio = err / tol;
      if (err > r.max_abs_err) r.max_abs_err = err;
      if (ratio > r.worst_ratio || k == 0) {
        r.worst_ratio = ratio;
        r.tolerance = tol;
      }
      if (!(err <= tol)) ++bad;
    }
    r.passed = bad == 0;
    if (!r.passed) {
      r.error = std::to_string(bad) + " of " + std::to_string(n_out) + " outputs outside the tolerance";
      records->push_back(r);
      continue;
    }
    // timing: one more warm-up, then `iters` runs each between two events
    if ((r.status = t.run(p)) == kOk) {
      for (int it = 0; it < iters && r.status == kOk; ++it) {
        LFDN_CUDA_TRY(cudaEventRecord(ev[2 * it], s));
        r.status = t.run(p);
        LFDN_CUDA_TRY(cudaEventRecord(ev[2 * it + 1], s));
      }
    }
    if (r.status == kOk) r.status = cuda::record(cudaStreamSynchronize(s), "cudaStreamSynchronize(timing)");
    if (r.status != kOk) {
      r.passed = false;
      r.error = why(r.status);
      records->push_back(r);
      continue;
    }
    std::vector<double> us(static_cast<size_t>(iters));
    for (int it = 0; it < iters; ++it) {
      float ms = 0.0f;
      LFDN_CUDA_TRY(cudaEventElapsedTime(&ms, ev[2 * it], ev[2 * it + 1]));
      us[it] = 1000.0 * ms;
    }
    std::nth_element(us.begin(), us.begin() + iters / 2, us.end());
    r.median_us = us[iters / 2];
    if (r.median_us < best_us) {
      best_us = r.median_us;
      *best = static_cast<int>(records->size());
    }
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
