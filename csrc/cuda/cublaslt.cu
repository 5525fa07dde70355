// cuBLASLt as a tactic (cuda.cublaslt): loaded at run time with dlopen, never a build-time dependency (no
// cuBLAS header, no link). The few entry points used are declared here from the documented C API
// (cublasLt.h, CUDA 11+). Lookup order: $LFDN_EDGE_CUBLASLT (a file); the sonames libcublasLt.so.13/.12/.11
// on the loader path (LD_LIBRARY_PATH, ld.so.cache, or already loaded by the process: a CUDA build of torch
// loads the nvidia-cublas wheel's copy, which dlopen then finds by soname); the directories in
// $LFDN_EDGE_CUBLASLT_DIRS (':'-separated, e.g. site-packages/nvidia/cublas/lib); the CUDA toolkit / JetPack
// directories (/usr/local/cuda/lib64, /usr/local/cuda/targets/*/lib, /usr/lib/*-linux-gnu).
// Each (device, rows, Kp, N) gets its descriptors, layouts and the heuristic's best algorithm once (a plan),
// with a workspace of NVIDIA's recommended size (32 MiB on Hopper, 4 MiB before) in the tactic workspace: a
// call then only enqueues the GEMM, so a timed or captured call measures what the CUDA graph will run, not
// descriptor creation and a heuristic query per call. The structs and enum values used are declared below from
// cublasLt.h (CUDA 11-13). Host code only (no kernel launches). COMPILED ONLY, NEVER RUN (no GPU here).
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <tuple>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/tactics_internal.h"
#include "cuda/util.cuh"
#include "lfdn/cuda_tactics.h"

namespace lfdn {
namespace cuda {

namespace {

// ---- the documented C API (cublasLt.h / cublas_api.h / library_types.h), declared here
using cublasStatus_t = int;              // CUBLAS_STATUS_SUCCESS = 0
using cublasLtHandle_t = void*;          // opaque pointers
using cublasLtMatmulDesc_t = void*;
using cublasLtMatrixLayout_t = void*;
constexpr int kCublasCompute32F = 68;    // cublasComputeType_t CUBLAS_COMPUTE_32F
constexpr int kCudaR16F = 2;             // cudaDataType_t CUDA_R_16F
constexpr int kCudaR32F = 0;             // CUDA_R_32F
constexpr int kDescTransA = 3;           // cublasLtMatmulDescAttributes_t CUBLASLT_MATMUL_DESC_TRANSA
constexpr int kDescTransB = 4;           // CUBLASLT_MATMUL_DESC_TRANSB
constexpr int32_t kOpN = 0, kOpT = 1;    // cublasOperation_t
constexpr int kPrefMaxWorkspaceBytes = 1;  // cublasLtMatmulPreferenceAttributes_t CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES (uint64_t)
using cublasLtMatmulPreference_t = void*;
struct cublasLtMatmulAlgo_t {            // opaque, 8 x uint64_t
  uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {  // cublasLt.h
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
};

struct Api {
  cublasStatus_t (*create)(cublasLtHandle_t*);
  cublasStatus_t (*desc_create)(cublasLtMatmulDesc_t*, int /*computeType*/, int /*scaleType*/);
  cublasStatus_t (*desc_set)(cublasLtMatmulDesc_t, int, const void*, size_t);
  cublasStatus_t (*desc_destroy)(cublasLtMatmulDesc_t);
  cublasStatus_t (*layout_create)(cublasLtMatrixLayout_t*, int /*type*/, uint64_t rows, uint64_t cols, int64_t ld);
  cublasStatus_t (*layout_destroy)(cublasLtMatrixLayout_t);
  cublasStatus_t (*matmul)(cublasLtHandle_t, cublasLtMatmulDesc_t, const void* alpha, const void* A,
                           cublasLtMatrixLayout_t, const void* B, cublasLtMatrixLayout_t, const void* beta,
                           const void* C, cublasLtMatrixLayout_t, void* D, cublasLtMatrixLayout_t,
                           const void* algo, void* workspace, size_t workspace_bytes, cudaStream_t);
  size_t (*get_version)();
  cublasStatus_t (*pref_create)(cublasLtMatmulPreference_t*);
  cublasStatus_t (*pref_set)(cublasLtMatmulPreference_t, int, const void*, size_t);
  cublasStatus_t (*pref_destroy)(cublasLtMatmulPreference_t);
  cublasStatus_t (*heuristic)(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                              cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatmulPreference_t, int,
                              cublasLtMatmulHeuristicResult_t*, int*);
};

// One prepared GEMM: descriptors, layouts and the heuristic's algorithm for (device, rows, Kp, N), built on the
// first call (outside any capture: the engine's warm-up pass, the selection's verification run) and reused.
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  cublasLtMatmulHeuristicResult_t heur{};
  uint64_t workspace_bytes = 0;  // offered to the heuristic and to cublasLtMatmul
  bool ok = false;
};

struct Lib {
  std::once_flag once;
  void* handle = nullptr;
  Api api{};
  bool ok = false;
  std::string info;
  std::mutex mu;  // handles and plans per device
  std::vector<std::pair<int, cublasLtHandle_t>> handles;
  std::map<std::tuple<int, uint64_t, uint64_t, uint64_t>, Plan> plans;  // (device, rows, Kp, N); never freed
};
Lib& lib() {
  static Lib l;
  return l;
}

std::vector<std::string> candidates() {
  std::vector<std::string> c;
  if (const char* f = std::getenv("LFDN_EDGE_CUBLASLT")) c.push_back(f);
  const char* sonames[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"};
  for (const char* s : sonames) c.push_back(s);  // loader path: LD_LIBRARY_PATH, ld.so.cache, already loaded
  std::vector<std::string> dirs = {"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
                                   "/usr/local/cuda/targets/aarch64-linux/lib", "/usr/lib/aarch64-linux-gnu",
                                   "/usr/lib/x86_64-linux-gnu"};
  if (const char* extra = std::getenv("LFDN_EDGE_CUBLASLT_DIRS")) {  // ':'-separated, e.g. .../nvidia/cublas/lib
    std::string s(extra);
    size_t start = 0;
    while (start <= s.size()) {
      const size_t end = s.find(':', start);
      const std::string d = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
      if (!d.empty()) dirs.insert(dirs.begin(), d);
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }
  for (const std::string& d : dirs)
    for (const char* s : sonames) c.push_back(d + "/" + s);
  return c;
}

template <typename F>
bool sym(void* h, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  return *out != nullptr;
}

void load() {
  Lib& l = lib();
  for (const std::string& path : candidates()) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) continue;
    Api a{};
    const bool all = sym(h, "cublasLtCreate", &a.create) && sym(h, "cublasLtMatmulDescCreate", &a.desc_create) &&
                     sym(h, "cublasLtMatmulDescSetAttribute", &a.desc_set) &&
                     sym(h, "cublasLtMatmulDescDestroy", &a.desc_destroy) &&
                     sym(h, "cublasLtMatrixLayoutCreate", &a.layout_create) &&
                     sym(h, "cublasLtMatrixLayoutDestroy", &a.layout_destroy) &&
                     sym(h, "cublasLtMatmul", &a.matmul) && sym(h, "cublasLtGetVersion", &a.get_version) &&
                     sym(h, "cublasLtMatmulPreferenceCreate", &a.pref_create) &&
                     sym(h, "cublasLtMatmulPreferenceSetAttribute", &a.pref_set) &&
                     sym(h, "cublasLtMatmulPreferenceDestroy", &a.pref_destroy) &&
                     sym(h, "cublasLtMatmulAlgoGetHeuristic", &a.heuristic);
    if (!all) {
      dlclose(h);
      continue;
    }
    l.handle = h;
    l.api = a;
    l.ok = true;
    l.info = path + " (cublasLt version " + std::to_string(a.get_version()) + ")";
    return;
  }
  l.info = "libcublasLt.so.{13,12,11} not found (set LFDN_EDGE_CUBLASLT to the file or LFDN_EDGE_CUBLASLT_DIRS)";
}

// The handle of the current device (created on first use; cublasLtCreate is not legal inside a capture, so
// the engine's warm-up pass, which runs before the capture, creates it).
cublasLtHandle_t handle_for_current_device() {
  Lib& l = lib();
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return nullptr;
  std::lock_guard<std::mutex> lock(l.mu);
  for (auto& h : l.handles)
    if (h.first == dev) return h.second;
  cublasLtHandle_t h = nullptr;
  if (l.api.create(&h) != 0) return nullptr;
  l.handles.emplace_back(dev, h);
  return h;
}

}  // namespace

int cublaslt_gemm(const FusedLinearParams& p, const void* a, float* d, void* workspace) {
  if (LaunchCapture* cap = launch_capture()) {  // recorded, not enqueued (no library, no CUDA runtime call)
    // The GEMM below: D (rows, n) FP32 row-major (leading dimension n = out_dim) = A (rows, kp) FP16 row-major x
    // W^T, W = p.weight, the packed (Np, kp) FP16 weight with Np = cuda_padded_out(out_dim) >= n: the GEMM
    // reads only W's first n rows (its padding rows, zeros, are never used) and writes rows x n floats to d.
    CapturedCall c;
    c.kind = "cublaslt_gemm";
    c.a = reinterpret_cast<uint64_t>(a);
    c.w = reinterpret_cast<uint64_t>(p.weight);
    c.d = reinterpret_cast<uint64_t>(d);
    c.rows = p.rows;
    c.kp = cuda_padded_in(p.in_dim);
    c.n = p.out_dim;
    cap->calls.push_back(std::move(c));
    return kOk;
  }
  Lib& l = lib();
  std::call_once(l.once, load);
  if (!l.ok) return kUnsupported;
  cublasLtHandle_t h = handle_for_current_device();
  if (h == nullptr) {
    record(cudaErrorUnknown, "cublasLtCreate failed");
    return kCudaError;
  }
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return record(cudaGetLastError(), "cudaGetDevice (cuBLASLt)");
  const uint64_t kp = static_cast<uint64_t>(cuda_padded_in(p.in_dim));
  const uint64_t n = static_cast<uint64_t>(p.out_dim), m = static_cast<uint64_t>(p.rows);
  Plan* plan = nullptr;
  {
    std::lock_guard<std::mutex> lock(l.mu);
    Plan& pl = l.plans[std::make_tuple(dev, m, kp, n)];
    if (!pl.ok) {
      int major = 0;
      if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
        return record(cudaGetLastError(), "cudaDeviceGetAttribute (cuBLASLt plan)");
      // NVIDIA's recommended workspace: 32 MiB on Hopper (cc 9.x), 4 MiB before (cuBLAS docs, cublasSetWorkspace)
      pl.workspace_bytes = major >= 9 ? kCublasLtWorkspaceBytes : (uint64_t{4} << 20);
      const uint64_t ws_bytes = pl.workspace_bytes;
      // Column-major view: D (n x m, ld n) = op(W) (n x kp) * A (kp x m), where W row-major (Np, Kp) is the
      // column-major kp x Np matrix with ld kp (transposed: op T), and A row-major (rows, Kp) is kp x m, ld kp.
      int st = pl.desc ? 0 : l.api.desc_create(&pl.desc, kCublasCompute32F, kCudaR32F);
      if (st == 0) st = l.api.desc_set(pl.desc, kDescTransA, &kOpT, sizeof(kOpT));
      if (st == 0) st = l.api.desc_set(pl.desc, kDescTransB, &kOpN, sizeof(kOpN));
      if (st == 0 && !pl.la) st = l.api.layout_create(&pl.la, kCudaR16F, kp, n, static_cast<int64_t>(kp));
      if (st == 0 && !pl.lb) st = l.api.layout_create(&pl.lb, kCudaR16F, kp, m, static_cast<int64_t>(kp));
      if (st == 0 && !pl.ld) st = l.api.layout_create(&pl.ld, kCudaR32F, n, m, static_cast<int64_t>(n));
      cublasLtMatmulPreference_t pref = nullptr;
      if (st == 0) st = l.api.pref_create(&pref);
      if (st == 0) st = l.api.pref_set(pref, kPrefMaxWorkspaceBytes, &ws_bytes, sizeof(ws_bytes));
      int found = 0;
      if (st == 0) st = l.api.heuristic(h, pl.desc, pl.la, pl.lb, pl.ld, pl.ld, pref, 1, &pl.heur, &found);
      if (pref) l.api.pref_destroy(pref);
      if (st != 0 || found < 1) {
        record(cudaErrorUnknown, ("cuBLASLt plan (descriptors / heuristic) status " + std::to_string(st) +
                                  ", algorithms found " + std::to_string(found)).c_str());
        return kCudaError;
      }
      pl.ok = true;
    }
    plan = &pl;  // std::map nodes are stable; a plan is never modified once ok
  }
  const float alpha = 1.0f, beta = 0.0f;
  const int st = l.api.matmul(h, plan->desc, &alpha, p.weight, plan->la, a, plan->lb, &beta, d, plan->ld, d, plan->ld,
                              &plan->heur.algo, workspace, workspace ? plan->workspace_bytes : 0,
                              reinterpret_cast<cudaStream_t>(p.cuda_stream));
  if (st != 0) {
    record(cudaErrorUnknown, ("cublasLtMatmul status " + std::to_string(st)).c_str());
    return kCudaError;
  }
  return kOk;
}

}  // namespace cuda

bool cublaslt_available() {
  if (launch_capture() != nullptr) return true;  // under a capture cuBLASLt calls are recorded (cublaslt_gemm)
  cuda::Lib& l = cuda::lib();
  std::call_once(l.once, cuda::load);
  return l.ok;
}

std::string cublaslt_info() {
  cublaslt_available();
  return cuda::lib().info;
}

}  // namespace lfdn
