// Launch capture (tests and the PTX interpreter, tools/ptxsim): every CUDA kernel launch of the project goes
// through one helper (cuda::launch, csrc/cuda/util.cuh). While a LaunchCapture is installed on the calling
// thread, that helper records the launch (kernel name, grid, block, dynamic shared memory, each argument's
// bytes) instead of launching it, and the host code that would otherwise ask the CUDA runtime (the tactics'
// device capabilities, cuBLASLt, the tactic workspace's memset) uses the capture's virtual device and records
// what it would have enqueued. No CUDA runtime call is made under a capture, so the launch configuration of
// the real launchers can be replayed on a machine without a GPU. Host code only (no CUDA headers).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lfdn {

// The device the tactic code sees under a capture (caps_of_current_device in csrc/cuda/tactics_launch.cu):
// compute capability (major * 10 + minor), SM count, and the PTX / binary architecture that the
// arch-specific kernels (mma_kernel) would run as on it (cudaFuncAttributes::ptxVersion / binaryVersion).
struct VirtualCudaDevice {
  int cc = 90;
  int sms = 132;
  int mma_ptx = 80;
  int mma_binary = 90;
};

struct CapturedCall {
  std::string kind;  // "kernel", "cublaslt_gemm" or "memset"
  // kind "kernel": the demangled kernel name as c++filt prints its PTX entry without "void " and the parameter
  // list (e.g. "lfdn::cuda::tac::mma_kernel<64, false>"), the launch configuration and each argument's bytes
  // (in parameter order, sizeof(parameter type) bytes each: the kernel parameter's value as launched)
  std::string kernel;
  unsigned grid[3] = {1, 1, 1};
  unsigned block[3] = {1, 1, 1};
  size_t smem = 0;
  std::vector<std::vector<uint8_t>> args;
  // kind "cublaslt_gemm" (csrc/cuda/cublaslt.cu): D (rows, n) FP32 row-major = A (rows, kp) FP16 x W^T, where W
  // is the packed weight (Np, kp) FP16 with Np = cuda_padded_out(n) >= n rows; only its first n rows are used
  // (D's leading dimension is n, not Np)
  uint64_t a = 0, w = 0, d = 0;
  int64_t rows = 0, kp = 0, n = 0;
  // kind "memset": cudaMemsetAsync(ptr, value, bytes)
  uint64_t ptr = 0;
  size_t bytes = 0;
  int value = 0;
};

struct LaunchCapture {
  VirtualCudaDevice device;
  std::vector<CapturedCall> calls;
};

// Installs `c` for the calling thread (null: off, the default). Tests only. The capture is per thread, so
// launches from other threads (normal use running concurrently) are never captured; the caller keeps `c`
// alive until it installs null again.
void set_launch_capture(LaunchCapture* c);
// The calling thread's capture, or null.
LaunchCapture* launch_capture();

// Installs a capture for a scope, and removes it (restoring the previous one) at its end.
class LaunchCaptureScope {
 public:
  explicit LaunchCaptureScope(LaunchCapture* c) : prev_(launch_capture()) { set_launch_capture(c); }
  ~LaunchCaptureScope() { set_launch_capture(prev_); }
  LaunchCaptureScope(const LaunchCaptureScope&) = delete;
  LaunchCaptureScope& operator=(const LaunchCaptureScope&) = delete;

 private:
  LaunchCapture* prev_;
};

}  // namespace lfdn
