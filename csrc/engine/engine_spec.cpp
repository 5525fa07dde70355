#include <cstdlib>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#include "lfdn/engine.h"

namespace lfdn {

int check_engine_spec(const EngineSpec& s) {
  if (s.in_dim <= 0 || s.width <= 0 || s.depth < 0 || s.steps < 1) return kBadSize;
  if (s.wtype != WeightType::kF32 && s.wtype != WeightType::kF16 && s.wtype != WeightType::kBF16 &&
      s.wtype != WeightType::kI8)
    return kBadArgument;
  const size_t d = static_cast<size_t>(s.depth);
  if (s.fc1_w.size() != d || s.fc2_w.size() != d || s.gn1_g.size() != d || s.gn1_b.size() != d ||
      s.gn2_g.size() != d || s.gn2_b.size() != d || s.fc2_b.size() != d)
    return kBadSize;
  if (!s.inp_w || !s.inp_b || !s.out_g || !s.out_b || !s.out_w || !s.out_bias) return kNullPointer;
  if (d > 0 && !s.fc1_bias) return kNullPointer;
  for (size_t i = 0; i < d; ++i)
    if (!s.fc1_w[i] || !s.fc2_w[i] || !s.gn1_g[i] || !s.gn1_b[i] || !s.gn2_g[i] || !s.gn2_b[i] || !s.fc2_b[i])
      return kNullPointer;
  if (s.wtype == WeightType::kI8) {  // every weight has its scales
    if (!s.inp_ws || !s.out_ws) return kNullPointer;
    if (s.fc1_ws.size() != d || s.fc2_ws.size() != d) return kBadSize;
    for (size_t i = 0; i < d; ++i)
      if (!s.fc1_ws[i] || !s.fc2_ws[i]) return kNullPointer;
    auto positive = [](const float* a, int64_t n) {
      for (int64_t i = 0; i < n; ++i)
        if (!(a[i] > 0.0f && a[i] <= 3.4e38f)) return false;
      return true;
    };
    if (!positive(s.inp_ws, s.width) || !positive(s.out_ws, s.in_dim)) return kBadArgument;
    for (size_t i = 0; i < d; ++i)
      if (!positive(s.fc1_ws[i], s.width) || !positive(s.fc2_ws[i], s.width)) return kBadArgument;
  }
  if (s.coef.size() != static_cast<size_t>(s.steps - 1) && s.coef.size() != static_cast<size_t>(s.steps))
    return kBadSize;
  if (s.coef.size() == static_cast<size_t>(s.steps) && s.coef.back().sigma != 0.0f) return kBadArgument;
  const size_t ns = s.stage_offsets.size();
  if (ns < 2 || ns - 1 > static_cast<size_t>(kMaxStages)) return kBadSize;
  if (s.stage_offsets.front() != 0 || s.stage_offsets.back() != s.in_dim) return kBadArgument;
  for (size_t i = 0; i + 1 < ns; ++i)
    if (s.stage_offsets[i + 1] <= s.stage_offsets[i]) return kBadArgument;
  for (const DdimCoefficients& c : s.coef)
    if (!(c.sqrt_1m_ab_cur > 0.0f)) return kBadArgument;
  if (!s.stage_weights.empty() && s.stage_weights.size() != ns - 1) return kBadSize;
  for (float w : s.stage_weights)
    if (!(w >= 0.0f && w <= 1.0f)) return kBadArgument;
  if (!(s.gn_eps > 0.0f) || !(s.cos_eps >= 0.0f)) return kBadArgument;
  return kOk;
}

void AlignedFree::operator()(void* p) const { std::free(p); }

AlignedBuffer aligned_alloc_bytes(size_t bytes) {
  size_t n = (bytes + 63) / 64 * 64;
  void* p = nullptr;
#if defined(_WIN32)
  p = std::malloc(n);  // MSVC has no aligned_alloc compatible with free(); kernels use unaligned loads
#else
  // Large buffers (packed weights, big workspaces) are 2 MiB aligned and, on Linux, advised as transparent huge
  // pages: a batch-1 pass streams every weight once, and with 4 KiB pages its speed depended on where the buffer
  // landed (two identical FP16 paper-size engines differed by 7 % at batch 1, measured 2026-12-02); with huge
  // pages the TLB covers the weights. Only advice: where THP is off or refused, 4 KiB pages as before.
  constexpr size_t kHuge = size_t{2} << 20;
  const bool huge = n >= 2 * kHuge;
  if (huge) n = (n + kHuge - 1) / kHuge * kHuge;
  if (posix_memalign(&p, huge ? kHuge : 64, n == 0 ? 64 : n) != 0) p = nullptr;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (p != nullptr && huge) (void)madvise(p, n, MADV_HUGEPAGE);
#endif
#endif
  return AlignedBuffer(static_cast<char*>(p));
}

SmallArrayOffsets pack_small_arrays(const EngineSpec& s, size_t align, std::vector<float>* out) {
  const int64_t C = s.in_dim, W = s.width, D = s.depth;
  const size_t a = align > 0 ? align : 1;
  auto put = [out, a](const float* src, int64_t n) {
    const size_t off = out->size();
    out->insert(out->end(), src, src + n);
    out->resize((out->size() + a - 1) / a * a, 0.0f);
    return off;
  };
  SmallArrayOffsets o;
  o.inp_b = put(s.inp_b, W);
  o.block.resize(static_cast<size_t>(D) * 5);
  for (int64_t i = 0; i < D; ++i) {
    o.block[i * 5 + 0] = put(s.gn1_g[i], W);
    o.block[i * 5 + 1] = put(s.gn1_b[i], W);
    o.block[i * 5 + 2] = put(s.gn2_g[i], W);
    o.block[i * 5 + 3] = put(s.gn2_b[i], W);
    o.block[i * 5 + 4] = put(s.fc2_b[i], W);
  }
  o.fc1_bias = D > 0 ? put(s.fc1_bias, static_cast<int64_t>(s.steps) * D * W) : 0;
  o.out_g = put(s.out_g, W);
  o.out_b = put(s.out_b, W);
  o.out_bias = put(s.out_bias, C);
  o.eps = out->size();
  out->resize(out->size() + static_cast<size_t>(C) * s.steps, 0.0f);
  return o;
}

void fill_model_view(const EngineSpec& s, WeightType wtype, const PackedWeights& w, const float* small,
                     const SmallArrayOffsets& o, const std::vector<DdimCoefficients>& coef,
                     const std::vector<int32_t>& offsets, std::vector<LfdnBlockView>* blocks, LfdnModelView* v) {
  const int64_t C = s.in_dim, D = s.depth;
  blocks->assign(static_cast<size_t>(D), LfdnBlockView{});
  for (int64_t i = 0; i < D; ++i) {
    LfdnBlockView& b = (*blocks)[i];
    b.fc1_w = w.fc1[i];
    b.fc2_w = w.fc2[i];
    b.gn1_g = small + o.block[i * 5 + 0];
    b.gn1_b = small + o.block[i * 5 + 1];
    b.gn2_g = small + o.block[i * 5 + 2];
    b.gn2_b = small + o.block[i * 5 + 3];
    b.fc2_b = small + o.block[i * 5 + 4];
  }
  *v = LfdnModelView{};
  v->in_dim = C;
  v->width = s.width;
  v->depth = D;
  v->wtype = wtype;
  v->inp_w = w.inp;
  v->inp_b = small + o.inp_b;
  v->blocks = blocks->data();
  v->fc1_bias = D > 0 ? small + o.fc1_bias : nullptr;
  v->out_g = small + o.out_g;
  v->out_b = small + o.out_b;
  v->out_w = w.out;
  v->out_bias = small + o.out_bias;
  v->gn_eps = s.gn_eps;
  v->steps = s.steps;
  v->q_a = s.q_a;
  v->q_b = s.q_b;
  v->eps = small + o.eps;
  v->step_noise = s.steps > 1 ? small + o.eps + C : nullptr;
  v->coef = coef.data();
  v->out_row = coef.size() == static_cast<size_t>(s.steps);
  v->num_weights = static_cast<int32_t>(s.stage_weights.size());
  for (size_t m = 0; m < s.stage_weights.size() && m < static_cast<size_t>(kMaxStages); ++m)
    v->stage_weights[m] = s.stage_weights[m];
  v->num_stages = static_cast<int32_t>(offsets.size() - 1);
  v->stage_offsets = offsets.data();
  v->cos_eps = s.cos_eps;
}

}  // namespace lfdn
