// Op 1, noise injection: out = a * z0 + b * eps, eps from the counter-based generator of philox.h
// (Philox-4x32-10 + Box-Muller keyed by seed, stream, image key and feature index; bit-exact with
// lfdn_edge/noise.py). The scoring pass uses image key 0 for every row, so it generates eps once per engine
// (rows = 1) and passes it back as `eps_row`, which skips the generator.
#pragma once
#include "lfdn/common.h"

namespace lfdn {

struct NoiseParams {
  const float* z0 = nullptr;             // (rows, dim) row-major, or null: out = b * eps
  float* out = nullptr;                  // (rows, dim) row-major; may alias z0
  const uint64_t* image_keys = nullptr;  // (rows,) or null: image key 0 for every row
  const float* eps_row = nullptr;        // (dim,) precomputed eps broadcast to every row, or null: generate
  int64_t rows = 0;
  int64_t dim = 0;                       // <= 2^32 (the feature index is the 32-bit counter word)
  uint64_t seed = 0;
  uint32_t stream = 0;                   // Philox stream: 0 forward noise, s >= 1 the eta noise of DDIM update s
  float a = 0.0f;
  float b = 1.0f;
  Stream cuda_stream = nullptr;          // CUDA launcher only
};

int noise_inject_cpu(const NoiseParams& p);
int noise_inject_cuda(const NoiseParams& p);  // device pointers; kUnsupported in a CPU-only build

// Shared argument check of both backends (kOk or the error code).
int check_noise_params(const NoiseParams& p);

}  // namespace lfdn
