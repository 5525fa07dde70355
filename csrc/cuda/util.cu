#include <string>

#include "cuda/util.cuh"
#include "lfdn/engine.h"

namespace lfdn {

namespace {
thread_local std::string g_last_error;
}

namespace cuda {

int record(cudaError_t err, const char* where) {
  if (err == cudaSuccess) return kOk;
  g_last_error = std::string(where) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
  cudaGetLastError();  // clear a sticky launch error state where possible
  return kCudaError;
}

}  // namespace cuda

std::string cuda_last_error() { return g_last_error.empty() ? std::string("no CUDA error recorded") : g_last_error; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace lfdn
