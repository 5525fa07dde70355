#include <cstdlib>

#include "lfdn/engine.h"

namespace lfdn {

int check_engine_spec(const EngineSpec& s) {
  if (s.in_dim <= 0 || s.width <= 0 || s.depth < 0 || s.steps < 1) return kBadSize;
  if (s.wtype != WeightType::kF32 && s.wtype != WeightType::kF16) return kBadArgument;
  const size_t d = static_cast<size_t>(s.depth);
  if (s.fc1_w.size() != d || s.fc2_w.size() != d || s.gn1_g.size() != d || s.gn1_b.size() != d ||
      s.gn2_g.size() != d || s.gn2_b.size() != d || s.fc2_b.size() != d)
    return kBadSize;
  if (!s.inp_w || !s.inp_b || !s.out_g || !s.out_b || !s.out_w || !s.out_bias) return kNullPointer;
  if (d > 0 && !s.fc1_bias) return kNullPointer;
  for (size_t i = 0; i < d; ++i)
    if (!s.fc1_w[i] || !s.fc2_w[i] || !s.gn1_g[i] || !s.gn1_b[i] || !s.gn2_g[i] || !s.gn2_b[i] || !s.fc2_b[i])
      return kNullPointer;
  if (s.coef.size() != static_cast<size_t>(s.steps - 1)) return kBadSize;
  const size_t ns = s.stage_offsets.size();
  if (ns < 2 || ns - 1 > static_cast<size_t>(kMaxStages)) return kBadSize;
  if (s.stage_offsets.front() != 0 || s.stage_offsets.back() != s.in_dim) return kBadArgument;
  for (size_t i = 0; i + 1 < ns; ++i)
    if (s.stage_offsets[i + 1] <= s.stage_offsets[i]) return kBadArgument;
  for (const DdimCoefficients& c : s.coef)
    if (!(c.sqrt_1m_ab_cur > 0.0f)) return kBadArgument;
  if (!(s.gn_eps > 0.0f) || !(s.cos_eps >= 0.0f)) return kBadArgument;
  return kOk;
}

void AlignedFree::operator()(void* p) const { std::free(p); }

AlignedBuffer aligned_alloc_bytes(size_t bytes) {
  const size_t n = (bytes + 63) / 64 * 64;
  void* p = nullptr;
#if defined(_WIN32)
  p = std::malloc(n);  // MSVC has no aligned_alloc compatible with free(); kernels use unaligned loads
#else
  if (posix_memalign(&p, 64, n == 0 ? 64 : n) != 0) p = nullptr;
#endif
  return AlignedBuffer(static_cast<char*>(p));
}

}  // namespace lfdn
