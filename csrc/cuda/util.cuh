// CUDA helpers of the launchers: error capture (text kept per thread for cuda_last_error()) and sizes.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "lfdn/common.h"
#include "lfdn/cuda_launch.h"

namespace lfdn {
namespace cuda {

// Record err (with where) as the thread's last CUDA error; returns kCudaError, or kOk for cudaSuccess.
int record(cudaError_t err, const char* where);
// Set the thread's last error text (cuda_last_error()) to `what` (errors that are not CUDA errors).
void set_error(const std::string& what);

// After kernel launches: the launch error, if any.
inline int check_launch(const char* where) { return record(cudaGetLastError(), where); }

// The untyped part of launch() (util.cu): with a capture installed on this thread, appends a "kernel" call
// (args[i]: sizes[i] bytes each, copied) and returns kOk without any CUDA runtime call; otherwise
// cudaLaunchKernel(func, grid, block, args, smem, s) and the launch error (check_launch(name)).
int launch_args(const void* func, const std::string& name, dim3 grid, dim3 block, size_t smem, Stream s,
                void** args, const size_t* sizes, size_t n);

template <typename Tuple, size_t... I>
int launch_tuple(const void* func, const std::string& name, dim3 grid, dim3 block, size_t smem, Stream s,
                 Tuple& t, std::index_sequence<I...>) {
  void* ptrs[] = {static_cast<void*>(&std::get<I>(t))..., nullptr};
  const size_t sizes[] = {sizeof(std::get<I>(t))..., 0};
  return launch_args(func, name, grid, block, smem, s, ptrs, sizes, sizeof...(I));
}

// THE way every kernel of the project is launched (kernel<<<grid, block, smem, s>>>(args...) otherwise):
// each argument is converted to its kernel parameter's type (as <<<>>> does), then either launched with
// cudaLaunchKernel (returns kOk, or kCudaError with the error recorded under `name`) or, while a launch
// capture is installed on this thread (lfdn/cuda_launch.h), recorded with its configuration and argument bytes.
// name: the kernel's demangled name as c++filt prints its PTX entry, without "void " and the parameter list
// (e.g. "lfdn::cuda::tac::stream_kernel<8, 4>").
template <typename... P, typename... A>
int launch(void (*kernel)(P...), const std::string& name, dim3 grid, dim3 block, size_t smem, Stream s,
           A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "one argument per kernel parameter");
  std::tuple<typename std::decay<P>::type...> vals(std::forward<A>(args)...);
  return launch_tuple(reinterpret_cast<const void*>(kernel), name, grid, block, smem, s, vals,
                      std::index_sequence_for<P...>());
}

inline unsigned int blocks_for(int64_t n, int threads) {
  return static_cast<unsigned int>((n + threads - 1) / threads);
}

// Hazard "current device switched and never restored": the engine's entry points run on the caller's
// thread, whose current device belongs to the caller (torch keeps its own). Sets `device` for the scope and
// restores the device that was current on entry. ok() is false when either call failed (error recorded).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (record(cudaGetDevice(&saved_), "cudaGetDevice") != kOk) return;
    restore_ = true;
    ok_ = saved_ == device || record(cudaSetDevice(device), "cudaSetDevice") == kOk;
  }
  ~DeviceGuard() {
    if (restore_) cudaSetDevice(saved_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  bool ok() const { return ok_; }

 private:
  int saved_ = 0;
  bool restore_ = false, ok_ = false;
};

// Hazard "kernels first loaded inside graph capture": with lazy module loading (the default from CUDA 12.2)
// a kernel's module is loaded at its first launch, and loading during stream capture fails on drivers
// before 12.3. Each launcher file forces its kernels to load (cudaFuncGetAttributes) with these; the
// engine calls load_all_kernels() at creation, before any capture. kOk or kCudaError (recorded).
int load_noise_kernels();
int load_fused_linear_kernels();
int load_ddim_score_kernels();
int load_tactic_kernels();  // tactics_launch.cu
inline int load_all_kernels() {
  int rc = load_noise_kernels();
  if (rc == kOk) rc = load_fused_linear_kernels();
  if (rc == kOk) rc = load_ddim_score_kernels();
  if (rc == kOk) rc = load_tactic_kernels();
  return rc;
}

// Why no device can be used: "" when cudaGetDeviceCount succeeds with >= 1 device, else the CUDA error and
// what it means here (no driver, a driver older than this runtime, no device). *count gets the count (0 on
// error).
std::string device_status(int* count);

}  // namespace cuda
}  // namespace lfdn

#define LFDN_CUDA_TRY(expr)                                                  \
  do {                                                                       \
    const int lfdn_rc_ = ::lfdn::cuda::record((expr), #expr);                \
    if (lfdn_rc_ != ::lfdn::kOk) return lfdn_rc_;                            \
  } while (0)
