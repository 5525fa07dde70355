// The current CUDA device for the scope of one op-level entry point (host code, no CUDA headers needed).
//
// The op-level entry points (lfdn_edge.native_core -> csrc/bindings/bind_cuda.cpp) get raw device pointers and
// a stream; CUDA launches on, looks tactic capabilities up for, and allocates on whatever device is current on
// the calling thread. So each entry point makes the device of its tensors current for the call and restores
// the caller's device afterwards (torch keeps its own notion of the current device). Implemented in
// csrc/cuda/util.cu; the device API is replaceable by a recording stand-in so that the tests can check, on a
// machine without a GPU, that every entry point sets the right device and restores the previous one.
#pragma once

namespace lfdn {

struct CudaDeviceApi {
  int (*get)(int* device);  // 0 on success (cudaGetDevice)
  int (*set)(int device);   // 0 on success (cudaSetDevice)
};
// null: the CUDA runtime (the default); otherwise the given table until replaced (tests only).
void set_cuda_device_api(const CudaDeviceApi* api);

class CudaDeviceScope {
 public:
  // device < 0: the caller's current device is used as it is (nothing is set or restored).
  explicit CudaDeviceScope(int device);
  ~CudaDeviceScope();
  CudaDeviceScope(const CudaDeviceScope&) = delete;
  CudaDeviceScope& operator=(const CudaDeviceScope&) = delete;
  int status() const { return status_; }  // kOk, or kCudaError (cuda_last_error() says why)

 private:
  int saved_ = -1;
  bool restore_ = false;
  int status_ = 0;
};

}  // namespace lfdn
