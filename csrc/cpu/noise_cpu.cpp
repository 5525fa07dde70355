#include "cpu/ops_internal.h"
#include "cpu/team.h"
#include "lfdn/noise.h"
#include "lfdn/philox.h"

namespace lfdn {

int check_noise_params(const NoiseParams& p) {
  if (p.rows < 0 || p.dim < 0 || p.dim > 0xFFFFFFFFll) return kBadSize;
  if (p.rows > 0 && p.dim > 0 && p.out == nullptr) return kNullPointer;
  return kOk;
}

namespace cpu {

namespace {

void noise_rows(const NoiseParams& p, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    float* o = p.out + r * p.dim;
    const float* z = p.z0 ? p.z0 + r * p.dim : nullptr;
    if (p.eps_row != nullptr) {
      for (int64_t i = 0; i < p.dim; ++i) o[i] = (z ? p.a * z[i] : 0.0f) + p.b * p.eps_row[i];
      continue;
    }
    const uint64_t key = p.image_keys ? p.image_keys[r] : 0;
    for (int64_t i = 0; i < p.dim; ++i) {
      const float eps = gaussian_at(p.seed, p.stream, key, static_cast<uint32_t>(i));
      o[i] = (z ? p.a * z[i] : 0.0f) + p.b * eps;
    }
  }
}

}  // namespace

void run_noise(const NoiseParams& p, Runner& r) {
  r.phase(p.rows, r.chunk_for(p.rows), [&](int64_t r0, int64_t r1) { noise_rows(p, r0, r1); });
}

}  // namespace cpu

int noise_inject_cpu(const NoiseParams& p) {
  const int rc = check_noise_params(p);
  if (rc != kOk) return rc;
  // Generating noise is compute-bound (Philox + log/cos in double): worth threads from a few rows on.
  const int nt = p.eps_row == nullptr && p.rows * p.dim >= 4096 ? cpu::default_threads() : 1;
  cpu::team_run(nt, 1, [&](cpu::Runner& r) { cpu::run_noise(p, r); });
  return kOk;
}

}  // namespace lfdn
