// Philox-4x32-10 counter-based generator and Box-Muller, shared by the CPU and (later) CUDA kernels.
// Bit-exact with lfdn_edge/noise.py: counter = (index, stream, key_lo, key_hi), key = (seed_lo, seed_hi);
// n = sqrt(-2 ln u1) cos(2 pi u2), u1 = (x0 + 1) / 2^32, u2 = x1 / 2^32, in double, rounded to float.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define LFDN_HD __host__ __device__ __forceinline__
#else
#define LFDN_HD inline
#endif

namespace lfdn {

struct Philox4 {
  uint32_t v[4];
};

LFDN_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  *lo = static_cast<uint32_t>(p);
}

LFDN_HD Philox4 philox4x32_10(Philox4 c, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(0xD2511F53u, c.v[0], &hi0, &lo0);
    mulhilo32(0xCD9E8D57u, c.v[2], &hi1, &lo1);
    Philox4 n;
    n.v[0] = hi1 ^ c.v[1] ^ k0;
    n.v[1] = lo1;
    n.v[2] = hi0 ^ c.v[3] ^ k1;
    n.v[3] = lo0;
    c = n;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c;
}

LFDN_HD float gaussian_at(uint64_t seed, uint32_t stream, uint64_t image_key, uint32_t index) {
  Philox4 c{{index, stream, static_cast<uint32_t>(image_key), static_cast<uint32_t>(image_key >> 32)}};
  const Philox4 o = philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const double u1 = (static_cast<double>(o.v[0]) + 1.0) * (1.0 / 4294967296.0);
  const double u2 = static_cast<double>(o.v[1]) * (1.0 / 4294967296.0);
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925286766559 * u2));
}

}  // namespace lfdn
