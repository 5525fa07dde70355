// Noise injection x_t = a * z0 + b * eps, eps from the counter-based generator (philox.h).
#pragma once
#include <cstdint>

namespace lfdn {

struct NoiseParams {
  const float* z0 = nullptr;         // (rows, dim) row-major, may be null when only eps is wanted
  float* out = nullptr;              // (rows, dim) row-major
  const uint64_t* image_keys = nullptr;  // (rows,) or null: image key 0 for every row
  int64_t rows = 0;
  int64_t dim = 0;
  uint64_t seed = 0;
  uint32_t stream = 0;
  float a = 0.0f;                    // out = a * z0 + b * eps (z0 null: out = b * eps)
  float b = 1.0f;
};

// Returns 0 on success or a negative error code (see status_message).
int noise_inject_cpu(const NoiseParams& p);
const char* status_message(int code);

}  // namespace lfdn
