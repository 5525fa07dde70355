// The CUDA tactic table (lfdn/cuda_tactics.h): launchers, `applies` (checked against the device's compute
// capability and the architecture of the binary the runtime picked for it), the workspace layout and the
// reference kernel's launcher. Never run on a GPU; every launch here is captured (lfdn/cuda_launch.h) and
// replayed by the PTX interpreter in CI (tests/test_ptxsim_kernels.py).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>

#include "cuda/kernels/tactics.cuh"
#include "cuda/tactics_internal.h"
#include "cuda/util.cuh"
#include "lfdn/cuda_arch.h"
#include "lfdn/cuda_tactics.h"
#include "lfdn/half.h"

namespace lfdn {
namespace cuda {

namespace {

size_t up256(size_t n) { return (n + 255) / 256 * 256; }

struct Layout {
  size_t a, scale, partial, cublaslt, end;
};
Layout layout(int64_t rows, int64_t in_dim, int64_t out_dim) {
  const size_t kp = static_cast<size_t>(cuda_padded_in(in_dim)), np = static_cast<size_t>(cuda_padded_out(out_dim));
  const size_t r = static_cast<size_t>(rows);
  const size_t part_rows = std::max<size_t>(kMaxSplits * std::min<size_t>(r, kSplitMmaMaxRows), r);
  Layout l;
  l.a = up256(sizeof(int) * kCounterInts);
  l.scale = l.a + up256(2 * r * kp);
  l.partial = l.scale + up256(sizeof(float) * r);
  l.cublaslt = l.partial + up256(sizeof(float) * part_rows * np);
  l.end = l.cublaslt + kCublasLtWorkspaceBytes;
  return l;
}

// Per device: compute capability, SMs, and the architecture of the binary each arch-specific kernel runs as
struct DeviceCaps {
  int cc = 0, sms = 0, mma_ptx = 0, mma_binary = 0;
  bool ok = false;
};
DeviceCaps caps_of_current_device() {
  if (const LaunchCapture* cap = launch_capture()) {  // the capture's virtual device; no CUDA runtime call
    DeviceCaps c;
    c.cc = cap->device.cc;
    c.sms = cap->device.sms;
    c.mma_ptx = cap->device.mma_ptx;
    c.mma_binary = cap->device.mma_binary;
    c.ok = true;
    return c;
  }
  static std::mutex mu;
  static std::map<int, DeviceCaps> cache;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();
    return DeviceCaps();
  }
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(dev);
  if (it != cache.end()) return it->second;
  DeviceCaps c;
  int major = 0, minor = 0;
  cudaFuncAttributes attr;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&c.sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
      cudaFuncGetAttributes(&attr, tac::mma_kernel<64, false>) == cudaSuccess) {
    c.cc = major * 10 + minor;
    // binaryVersion: the architecture of the binary this device runs (for PTX JIT-compiled here: the device's
    // own); ptxVersion: the virtual architecture the code was generated from, i.e. the __CUDA_ARCH__ the
    // kernel body was compiled with. Both decide (lfdn/cuda_arch.h): compute_75 PTX JIT-compiled on an sm_80
    // device reports binary 80 but runs mma_kernel's __trap() body.
    c.mma_ptx = attr.ptxVersion;
    c.mma_binary = attr.binaryVersion;
    c.ok = true;
  }
  cudaGetLastError();
  cache[dev] = c;
  return c;
}

// FP16 tactics: FP16 weights, or the packed CUDA INT8 blob, whose FP16 copy (fp16(q * scale)) comes first at
// p.weight in exactly the FP16 layout (lfdn/cuda_tactics.h): an INT8 engine runs them where no INT8 tactic applies.
bool basic_ok(const FusedLinearParams& p) {
  return (p.wtype == WeightType::kF16 || p.wtype == WeightType::kI8) && p.rows >= 1 && p.in_dim >= 1 &&
         p.out_dim >= 1;
}

tac::EpilogueArgs epilogue_args(const FusedLinearParams& p, const TacticWorkspace& ws) {
  tac::EpilogueArgs e;
  e.out = p.out;
  e.residual = p.residual;
  e.bias = p.bias;
  e.scale = ws.scale;
  e.rows = p.rows;
  e.N = p.out_dim;
  return e;
}

// ---- weight streaming
template <int MAXR, int NW>
bool stream_applies(const FusedLinearParams& p) {
  if (!basic_ok(p) || p.rows > MAXR) return false;
  const DeviceCaps c = caps_of_current_device();
  return c.ok && stream_tactics_usable(c.mma_ptx, c.mma_binary, c.cc) &&
         cuda_padded_out(p.out_dim) / (4 * NW) <= kCounterInts;
}

// Split count from the shape and the device only (never from rows: a row's result does not depend on the batch)
void stream_split(int64_t kp, int64_t col_blocks, int sms, int64_t* ks, int* splits) {
  const int64_t steps = (kp + tac::kStreamKStep - 1) / tac::kStreamKStep;
  const int64_t target = 2 * static_cast<int64_t>(sms > 0 ? sms : 1);
  int64_t s = (target + col_blocks - 1) / col_blocks;
  if (s > kMaxSplits) s = kMaxSplits;
  if (s > steps) s = steps;
  if (s < 1) s = 1;
  const int64_t per = (steps + s - 1) / s;
  *ks = per * tac::kStreamKStep;
  *splits = static_cast<int>((kp + *ks - 1) / *ks);
}

template <int MAXR, int NW>
int stream_run(const FusedLinearParams& p) {
  int rc = check_tactic_params(p);
  if (rc != kOk || p.rows == 0) return rc;
  if (!stream_applies<MAXR, NW>(p)) return kUnsupported;
  const TacticWorkspace ws = tactic_workspace(p);
  if ((rc = launch_prologue(p, ws)) != kOk) return rc;
  tac::StreamArgs a;
  a.a = static_cast<const __half*>(ws.a);
  a.w = static_cast<const __half*>(p.weight);
  a.partial = ws.partial;
  a.counters = ws.counters;
  a.e = epilogue_args(p, ws);
  a.Kp = cuda_padded_in(p.in_dim);
  a.Np = cuda_padded_out(p.out_dim);
  const int64_t col_blocks = a.Np / (4 * NW);
  stream_split(a.Kp, col_blocks, caps_of_current_device().sms, &a.ks, &a.splits);
  return launch(tac::stream_kernel<MAXR, NW>,
                "lfdn::cuda::tac::stream_kernel<" + std::to_string(MAXR) + ", " + std::to_string(NW) + ">",
                dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(a.splits)), tac::kStreamThreads, 0,
                p.cuda_stream, a);
}

// ---- INT8 weight streaming (the packed CUDA INT8 blob's codes and scales; rows <= MAXR)
template <int MAXR, int NW>
bool i8_stream_applies(const FusedLinearParams& p) {
  if (p.wtype != WeightType::kI8 || p.rows < 1 || p.rows > MAXR || p.in_dim < 1 || p.out_dim < 1) return false;
  const DeviceCaps c = caps_of_current_device();
  return c.ok && stream_tactics_usable(c.mma_ptx, c.mma_binary, c.cc) &&
         cuda_padded_out(p.out_dim) / (4 * NW) <= kCounterInts;
}

// The streaming split rule with the INT8 k-step (512 codes per warp-wide load): from the shape and the SM count
void i8_stream_split(int64_t kp, int64_t col_blocks, int sms, int64_t* ks, int* splits) {
  const int64_t steps = (kp + tac::kI8KStep - 1) / tac::kI8KStep;
  const int64_t target = 2 * static_cast<int64_t>(sms > 0 ? sms : 1);
  int64_t s = (target + col_blocks - 1) / col_blocks;
  if (s > kMaxSplits) s = kMaxSplits;
  if (s > steps) s = steps;
  if (s < 1) s = 1;
  const int64_t per = (steps + s - 1) / s;
  *ks = per * tac::kI8KStep;
  *splits = static_cast<int>((kp + *ks - 1) / *ks);
}

template <int MAXR, int NW>
int i8_stream_run(const FusedLinearParams& p) {
  int rc = check_tactic_params(p);
  if (rc != kOk || p.rows == 0) return rc;
  if (!i8_stream_applies<MAXR, NW>(p)) return kUnsupported;
  const TacticWorkspace ws = tactic_workspace(p);
  if ((rc = launch_prologue(p, ws)) != kOk) return rc;
  tac::I8StreamArgs a;
  a.a = static_cast<const __half*>(ws.a);
  a.q = cuda_i8_codes(p.weight, p.in_dim, p.out_dim);
  a.wscale = cuda_i8_scales(p.weight, p.in_dim, p.out_dim);
  a.partial = ws.partial;
  a.counters = ws.counters;
  a.e = epilogue_args(p, ws);
  a.Kp = cuda_padded_in(p.in_dim);
  a.Np = cuda_padded_out(p.out_dim);
  const int64_t col_blocks = a.Np / (4 * NW);
  i8_stream_split(a.Kp, col_blocks, caps_of_current_device().sms, &a.ks, &a.splits);
  return launch(tac::i8_stream_kernel<MAXR, NW>,
                "lfdn::cuda::tac::i8_stream_kernel<" + std::to_string(MAXR) + ", " + std::to_string(NW) + ">",
                dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(a.splits)), tac::kStreamThreads, 0,
                p.cuda_stream, a);
}

// ---- mma.sync tiles
template <int BM, bool SPLIT>
bool mma_applies(const FusedLinearParams& p) {
  if (!basic_ok(p) || (p.rows + BM - 1) / BM > 65535) return false;
  if (SPLIT && (p.rows > kSplitMmaMaxRows ||
                (cuda_padded_out(p.out_dim) / tac::kMmaBN) * ((p.rows + BM - 1) / BM) > kCounterInts))
    return false;
  const DeviceCaps c = caps_of_current_device();
  // cp.async + mma.sync.m16n8k16 compiled (PTX >= compute_80) into the binary this device runs
  return c.ok && tensor_core_tactics_usable(c.mma_ptx, c.mma_binary, c.cc);
}

template <int BM, bool SPLIT>
int mma_run(const FusedLinearParams& p) {
  int rc = check_tactic_params(p);
  if (rc != kOk || p.rows == 0) return rc;
  if (!mma_applies<BM, SPLIT>(p)) return kUnsupported;
  const TacticWorkspace ws = tactic_workspace(p);
  if ((rc = launch_prologue(p, ws)) != kOk) return rc;
  tac::MmaArgs a;
  a.a = static_cast<const __half*>(ws.a);
  a.w = static_cast<const __half*>(p.weight);
  a.e = epilogue_args(p, ws);
  a.Kp = cuda_padded_in(p.in_dim);
  a.Np = cuda_padded_out(p.out_dim);
  a.partial = ws.partial;
  a.counters = ws.counters;
  const unsigned gx = static_cast<unsigned>(a.Np / tac::kMmaBN);
  const unsigned gy = static_cast<unsigned>((p.rows + BM - 1) / BM);
  const int kt_all = static_cast<int>(a.Kp / tac::kMmaBK);
  a.kt_per = kt_all;
  a.splits = 1;
  if (SPLIT) {  // from the shape and the device only (a row's result never depends on the batch)
    const int sms = caps_of_current_device().sms;
    int s = static_cast<int>((2 * static_cast<int64_t>(sms > 0 ? sms : 1) + gx - 1) / gx);
    s = std::max(1, std::min({s, kMaxSplits, std::max(1, kt_all / 2)}));
    a.kt_per = (kt_all + s - 1) / s;
    a.splits = (kt_all + a.kt_per - 1) / a.kt_per;
  }
  return launch(tac::mma_kernel<BM, SPLIT>,
                "lfdn::cuda::tac::mma_kernel<" + std::to_string(BM) + ", " + (SPLIT ? "true" : "false") + ">",
                dim3(gx, gy, static_cast<unsigned>(a.splits)), tac::kMmaThreads, 0, p.cuda_stream, a);
}

// ---- cuBLASLt
bool cublaslt_applies(const FusedLinearParams& p) { return basic_ok(p) && cublaslt_available(); }
int cublaslt_run(const FusedLinearParams& p) {
  int rc = check_tactic_params(p);
  if (rc != kOk || p.rows == 0) return rc;
  if (!cublaslt_applies(p)) return kUnsupported;
  const TacticWorkspace ws = tactic_workspace(p);
  if ((rc = launch_prologue(p, ws)) != kOk) return rc;
  if ((rc = cublaslt_gemm(p, ws.a, ws.partial, ws.cublaslt)) != kOk) return rc;
  return launch_epilogue(p, ws, ws.partial);
}

// ---- the first kernel, and the deliberately wrong test variant
bool legacy_applies(const FusedLinearParams& p) { return basic_ok(p) && (p.rows + 63) / 64 <= 65535; }
int legacy_run(const FusedLinearParams& p) { return fused_linear_cuda(p); }
int no_bias_run(const FusedLinearParams& p) {
  FusedLinearParams q = p;
  q.bias = nullptr;  // WRONG on purpose: verification must reject it
  return fused_linear_cuda(q);
}

const LinearTactic kTactics[] = {
    {"cuda.legacy_tile", legacy_run, legacy_applies, false},
    {"cuda.stream_r8", stream_run<8, 4>, stream_applies<8, 4>, false},
    {"cuda.stream_r32", stream_run<32, 2>, stream_applies<32, 2>, false},
    {"cuda.mma_m64", mma_run<64, false>, mma_applies<64, false>, false},
    {"cuda.mma_m32", mma_run<32, false>, mma_applies<32, false>, false},
    {"cuda.mma_splitk_m32", mma_run<32, true>, mma_applies<32, true>, false},
    {"cuda.cublaslt", cublaslt_run, cublaslt_applies, false},
    {"cuda.i8_stream_r8", i8_stream_run<8, 4>, i8_stream_applies<8, 4>, false},
    {"cuda.i8_stream_r16", i8_stream_run<16, 4>, i8_stream_applies<16, 4>, false},
    {"cuda.test_no_bias", no_bias_run, legacy_applies, true},
};

}  // namespace

size_t tactic_workspace_bytes(int64_t rows, int64_t in_dim, int64_t out_dim) {
  return layout(rows, in_dim, out_dim).end;
}

TacticWorkspace tactic_workspace(const FusedLinearParams& p) {
  const Layout l = layout(p.rows, p.in_dim, p.out_dim);
  char* b = static_cast<char*>(p.workspace);
  TacticWorkspace w;
  w.counters = reinterpret_cast<int*>(b);
  w.a = b + l.a;
  w.scale = reinterpret_cast<float*>(b + l.scale);
  w.partial = reinterpret_cast<float*>(b + l.partial);
  w.cublaslt = b + l.cublaslt;
  return w;
}

int check_tactic_params(const FusedLinearParams& p) {
  const int rc = check_cuda_linear_params(p);
  if (rc != kOk) return rc;
  if (p.wtype != WeightType::kF16 && p.wtype != WeightType::kI8) return kBadArgument;
  if (p.rows > 0x7FFFFFFFll) return kBadSize;
  if (p.rows == 0) return kOk;
  if (p.workspace == nullptr) return kNullPointer;
  if (p.workspace_bytes < tactic_workspace_bytes(p.rows, p.in_dim, p.out_dim)) return kWorkspaceTooSmall;
  return kOk;
}

int launch_prologue(const FusedLinearParams& p, const TacticWorkspace& ws) {
  tac::PrologueArgs a;
  a.x = p.x;
  a.gamma = p.gamma;
  a.beta = p.beta;
  a.a = static_cast<__half*>(ws.a);
  a.scale = ws.scale;
  a.gn_eps = p.gn_eps;
  a.mode = static_cast<int>(p.prologue);
  a.K = p.in_dim;
  a.Kp = cuda_padded_in(p.in_dim);
  return launch(tac::prologue_kernel, "lfdn::cuda::tac::prologue_kernel", static_cast<unsigned>(p.rows),
                tac::kPrologueThreads, 0, p.cuda_stream, a);
}

int launch_epilogue(const FusedLinearParams& p, const TacticWorkspace& ws, const float* d) {
  const int64_t total = p.rows * p.out_dim;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 4096));
  return launch(tac::epilogue_kernel, "lfdn::cuda::tac::epilogue_kernel", blocks, 256, 0, p.cuda_stream,
                epilogue_args(p, ws), d);
}

int load_tactic_kernels() {
  cudaFuncAttributes attr;
  int rc = record(cudaFuncGetAttributes(&attr, tac::prologue_kernel), "cudaFuncGetAttributes(prologue_kernel)");
  if (rc == kOk) rc = record(cudaFuncGetAttributes(&attr, tac::epilogue_kernel), "cudaFuncGetAttributes(epilogue)");
  if (rc == kOk) rc = record(cudaFuncGetAttributes(&attr, tac::stream_kernel<8, 4>), "cudaFuncGetAttributes(stream<8,4>)");
  if (rc == kOk) rc = record(cudaFuncGetAttributes(&attr, tac::stream_kernel<32, 2>), "cudaFuncGetAttributes(stream<32,2>)");
  if (rc == kOk) rc = record(cudaFuncGetAttributes(&attr, tac::i8_stream_kernel<8, 4>), "cudaFuncGetAttributes(i8_stream<8,4>)");
  if (rc == kOk) rc = record(cudaFuncGetAttributes(&attr, tac::i8_stream_kernel<16, 4>), "cudaFuncGetAttributes(i8_stream<16,4>)");
  if (rc == kOk) rc = record(cudaFuncGetAttributes(&attr, tac::mma_kernel<64, false>), "cudaFuncGetAttributes(mma<64>)");
  if (rc == kOk) rc = record(cudaFuncGetAttributes(&attr, tac::mma_kernel<32, false>), "cudaFuncGetAttributes(mma<32>)");
  if (rc == kOk) rc = record(cudaFuncGetAttributes(&attr, tac::mma_kernel<32, true>), "cudaFuncGetAttributes(mma<32,split>)");
  if (rc == kOk) rc = record(cudaFuncGetAttributes(&attr, tac::reference_kernel), "cudaFuncGetAttributes(reference)");
  return rc;
}

}  // namespace cuda

const LinearTactic* cuda_linear_tactics(int* n) {
  if (n) *n = static_cast<int>(sizeof(cuda::kTactics) / sizeof(cuda::kTactics[0]));
  return cuda::kTactics;
}

const LinearTactic* cuda_tactic_by_name(const std::string& name) {
  int n = 0;
  const LinearTactic* t = cuda_linear_tactics(&n);
  for (int i = 0; i < n; ++i)
    if (name == t[i].name) return &t[i];
  return nullptr;
}

size_t cuda_tactic_workspace_bytes(int64_t rows, int64_t in_dim, int64_t out_dim) {
  if (rows < 1 || in_dim < 1 || out_dim < 1) return 0;
  return cuda::tactic_workspace_bytes(rows, in_dim, out_dim);
}

int cuda_tactic_workspace_init(void* workspace, size_t bytes, Stream stream) {
  if (workspace == nullptr) return kNullPointer;
  if (LaunchCapture* cap = launch_capture()) {  // recorded, not enqueued
    CapturedCall c;
    c.kind = "memset";
    c.ptr = reinterpret_cast<uint64_t>(workspace);
    c.bytes = bytes;
    c.value = 0;
    cap->calls.push_back(std::move(c));
    return kOk;
  }
  return cuda::record(cudaMemsetAsync(workspace, 0, bytes, stream), "cudaMemsetAsync(tactic workspace)");
}

double cuda_tactic_tolerance(int64_t in_dim) {
  return 2.0 * (1.0 / 2048.0 + static_cast<double>(in_dim + 2) / 16777216.0);
}

double cuda_tactic_tolerance(int64_t in_dim, WeightType wtype) {
  if (wtype != WeightType::kI8) return cuda_tactic_tolerance(in_dim);
  return 2.0 * (2.0 / 2048.0 + static_cast<double>(in_dim + 2) / 16777216.0);
}

// ---- the packed CUDA INT8 blob (lfdn/cuda_tactics.h)
size_t packed_linear_cuda_i8_bytes(int64_t in_dim, int64_t out_dim) {
  if (in_dim < 1 || out_dim < 1) return 0;
  const size_t e = packed_linear_cuda_elems(in_dim, out_dim);
  return 3 * e + sizeof(float) * static_cast<size_t>(cuda_padded_out(out_dim));
}

const int8_t* cuda_i8_codes(const void* packed, int64_t in_dim, int64_t out_dim) {
  return reinterpret_cast<const int8_t*>(static_cast<const char*>(packed) +
                                         2 * packed_linear_cuda_elems(in_dim, out_dim));
}

const float* cuda_i8_scales(const void* packed, int64_t in_dim, int64_t out_dim) {
  return reinterpret_cast<const float*>(static_cast<const char*>(packed) +
                                        3 * packed_linear_cuda_elems(in_dim, out_dim));
}

int pack_linear_cuda_i8_host(const int8_t* q, const float* scale, int64_t in_dim, int64_t out_dim, void* dst) {
  if (q == nullptr || scale == nullptr || dst == nullptr) return kNullPointer;
  if (in_dim <= 0 || out_dim <= 0) return kBadSize;
  for (int64_t n = 0; n < out_dim; ++n)
    if (!(scale[n] > 0.0f && scale[n] <= 3.4e38f)) return kBadArgument;  // finite, > 0 (as check_engine_spec)
  for (int64_t i = 0; i < in_dim * out_dim; ++i)
    if (q[i] == -128) return kBadArgument;  // symmetric codes only: [-127, 127]
  const int64_t kp = cuda_padded_in(in_dim), np = cuda_padded_out(out_dim);
  uint16_t* h = static_cast<uint16_t*>(dst);
  int8_t* c = reinterpret_cast<int8_t*>(static_cast<char*>(dst) + 2 * np * kp);
  float* sc = reinterpret_cast<float*>(static_cast<char*>(dst) + 3 * np * kp);
  for (int64_t n = 0; n < np; ++n) {
    sc[n] = n < out_dim ? scale[n] : 0.0f;
    for (int64_t k = 0; k < kp; ++k) {
      const bool in = n < out_dim && k < in_dim;
      const int8_t v = in ? q[n * in_dim + k] : static_cast<int8_t>(0);
      c[n * kp + k] = v;
      // the FP16 copy: the INT8 model's weight q * scale (FP32 product), rounded to FP16 (FP16 tactics)
      h[n * kp + k] = in ? float_to_half(static_cast<float>(v) * scale[n]) : static_cast<uint16_t>(0);
    }
  }
  return kOk;
}

int check_cuda_linear_params(const FusedLinearParams& p) {
  if (p.wtype != WeightType::kI8) return check_fused_linear_params(p);
  FusedLinearParams q = p;
  q.wtype = WeightType::kF16;
  return check_fused_linear_params(q);
}

int fused_linear_cuda_reference(const FusedLinearParams& p, float* ref, float* bound) {
  int rc = check_cuda_linear_params(p);
  if (rc != kOk) return rc;
  if (p.wtype != WeightType::kF16 && p.wtype != WeightType::kI8) return kBadArgument;
  if (ref == nullptr || bound == nullptr) return kNullPointer;
  if (p.rows == 0) return kOk;
  cuda::tac::ReferenceArgs a;
  a.x = p.x;
  a.w = static_cast<const __half*>(p.weight);
  if (p.wtype == WeightType::kI8) {  // the INT8 model's weights q * scale, not the blob's FP16 copy
    a.q = cuda_i8_codes(p.weight, p.in_dim, p.out_dim);
    a.wscale = cuda_i8_scales(p.weight, p.in_dim, p.out_dim);
  }
  a.bias = p.bias;
  a.residual = p.residual;
  a.gamma = p.gamma;
  a.beta = p.beta;
  a.gn_eps = p.gn_eps;
  a.mode = static_cast<int>(p.prologue);
  a.rows = p.rows;
  a.K = p.in_dim;
  a.N = p.out_dim;
  a.Kp = cuda_padded_in(p.in_dim);
  a.ref = ref;
  a.bound = bound;
  const int64_t total = p.rows * p.out_dim;
  if ((total + 127) / 128 > 0x7FFFFFFFll) return kBadSize;
  return cuda::launch(cuda::tac::reference_kernel, "lfdn::cuda::tac::reference_kernel",
                      static_cast<unsigned>((total + 127) / 128), 128, 0, p.cuda_stream, a);
}

}  // namespace lfdn
