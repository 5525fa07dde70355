#include "lfdn/noise.h"
#include "lfdn/philox.h"

namespace lfdn {

int noise_inject_cpu(const NoiseParams& p) {
  if (p.out == nullptr) return -1;
  if (p.rows < 0 || p.dim < 0 || p.dim > 0xFFFFFFFFll) return -2;
  for (int64_t r = 0; r < p.rows; ++r) {
    const uint64_t key = p.image_keys ? p.image_keys[r] : 0;
    float* o = p.out + r * p.dim;
    const float* z = p.z0 ? p.z0 + r * p.dim : nullptr;
    for (int64_t i = 0; i < p.dim; ++i) {
      const float eps = gaussian_at(p.seed, p.stream, key, static_cast<uint32_t>(i));
      o[i] = (z ? p.a * z[i] : 0.0f) + p.b * eps;
    }
  }
  return 0;
}

const char* status_message(int code) {
  switch (code) {
    case 0: return "ok";
    case -1: return "null output pointer";
    case -2: return "negative size or dim above 2^32";
    default: return "unknown error";
  }
}

}  // namespace lfdn
