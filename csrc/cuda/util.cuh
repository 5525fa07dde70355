// CUDA helpers of the launchers: error capture (text kept per thread for cuda_last_error()) and sizes.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "lfdn/common.h"

namespace lfdn {
namespace cuda {

// Record err (with where) as the thread's last CUDA error; returns kCudaError, or kOk for cudaSuccess.
int record(cudaError_t err, const char* where);

// After kernel launches: the launch error, if any.
inline int check_launch(const char* where) { return record(cudaGetLastError(), where); }

inline unsigned int blocks_for(int64_t n, int threads) {
  return static_cast<unsigned int>((n + threads - 1) / threads);
}

}  // namespace cuda
}  // namespace lfdn

#define LFDN_CUDA_TRY(expr)                                                  \
  do {                                                                       \
    const int lfdn_rc_ = ::lfdn::cuda::record((expr), #expr);                \
    if (lfdn_rc_ != ::lfdn::kOk) return lfdn_rc_;                            \
  } while (0)
