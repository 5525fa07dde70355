// Op 1 kernel: out = a * z0 + b * eps, one thread per element; eps from philox.h or a broadcast row.
#pragma once
#include <cstdint>

#include "lfdn/philox.h"

namespace lfdn {
namespace cuda {

// Hazard "__restrict__ on pointers the API allows to alias": NoiseParams lets out alias z0 (in-place
// noising), so neither carries __restrict__ (each element is read, then written, by the same thread, which
// is correct for in-place use). keys and eps_row are read-only inputs that the API never lets alias out.
__global__ void noise_kernel(const float* z0, float* out, const uint64_t* __restrict__ keys,
                             const float* __restrict__ eps_row, int64_t rows, int64_t dim, uint64_t seed,
                             uint32_t stream, float a, float b) {
  const int64_t n = rows * dim;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / dim, i = e - r * dim;
    float eps;
    if (eps_row != nullptr) {
      eps = eps_row[i];
    } else {
      eps = gaussian_at(seed, stream, keys ? keys[r] : 0ull, static_cast<uint32_t>(i));
    }
    out[e] = (z0 ? a * z0[e] : 0.0f) + b * eps;
  }
}

}  // namespace cuda
}  // namespace lfdn
