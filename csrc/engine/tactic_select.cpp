// select_tactic (lfdn/tactic_select.h): verify, time, choose. Device-agnostic: the device is behind the runner.
#include "lfdn/tactic_select.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace lfdn {

TacticTolerance tactic_tolerance(WeightType wtype) {
  TacticTolerance t;
  if (wtype == WeightType::kBF16) {
    t.rtol = 0.0;
    t.atol = 1e-5;
    t.srel = 1.01 / 128.0;  // 2^-7 x 1.01 of sum |a w|
  } else {
    t.rtol = 1e-4;
    t.atol = 1e-4;
    t.srel = 0.0;
  }
  return t;
}

double tactic_error_ratio(const float* got, const TacticReference& ref, int64_t* worst) {
  double w = 0.0;
  int64_t wi = -1;
  for (int64_t i = 0; i < ref.n; ++i) {
    const double g = got[i];
    if (!std::isfinite(g)) {
      if (worst) *worst = i;
      return std::numeric_limits<double>::infinity();
    }
    const double allowed = ref.tol.atol + ref.tol.rtol * std::fabs(ref.ref[i]) +
                           (ref.scale ? ref.tol.srel * ref.scale[i] : 0.0);
    const double q = std::fabs(g - ref.ref[i]) / allowed;
    if (q > w || wi < 0) {
      w = q;
      wi = i;
    }
  }
  if (worst) *worst = wi;
  return w;
}

int tactic_bucket(int64_t rows) {
  if (rows <= 1) return 0;
  int b = 0;
  while (tactic_bucket_bound(b) < rows) ++b;
  return b;
}

int64_t tactic_bucket_bound(int bucket) {
  static const int64_t first[] = {1, 8, 64, 256};
  if (bucket < 0) return 0;
  if (bucket < 4) return first[bucket];
  int64_t v = 256;
  for (int b = 3; b < bucket && v < (int64_t{1} << 40); ++b) v *= 4;
  return v;
}

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

bool named(const std::vector<std::string>& names, const char* name) {
  return std::find(names.begin(), names.end(), std::string(name)) != names.end();
}

}  // namespace

int select_tactic(const LinearTactic* table, int n, const FusedLinearParams& problem, const TacticReference& ref,
                  const TacticRunner& runner, const TacticSelectOptions& opt, TacticSelection* out) {
  if (out == nullptr || (table == nullptr && n > 0) || ref.ref == nullptr) return kNullPointer;
  if (!runner.run || !runner.fetch || !runner.time) return kNullPointer;
  if (ref.n != problem.rows * problem.out_dim) return kBadSize;
  *out = TacticSelection();
  const bool forcing = !opt.forced.empty();
  if (forcing) {
    int fi = -1;
    for (int i = 0; i < n; ++i)
      if (opt.forced == table[i].name) fi = i;
    if (fi < 0) {
      out->error = "tactic '" + opt.forced + "' is not in the tactic table";
      return kBadArgument;
    }
    if (opt.filter && !opt.filter(table[fi])) {
      out->error = "tactic '" + opt.forced + "' is not offered for this engine (another numerics class / ISA)";
      return kBadArgument;
    }
    if (!table[fi].applies(problem)) {
      out->error = "tactic '" + opt.forced + "' does not apply to this problem on this machine";
      return kBadArgument;
    }
  }
  std::vector<float> got(static_cast<size_t>(ref.n));
  double best = std::numeric_limits<double>::infinity(), base_time = -1.0;
  int best_i = -1, base_i = -1;
  for (int i = 0; i < n; ++i) {
    const LinearTactic& t = table[i];
    if (forcing && opt.forced != t.name) continue;
    if (t.test_only && !named(opt.test_only, t.name) && !forcing) continue;
    if (opt.filter && !opt.filter(t)) continue;
    TacticCandidateResult r;
    r.name = t.name;
    r.test_only = t.test_only;
    r.applies = t.applies(problem);
    if (!r.applies) {
      r.note = "does not apply";
      out->results.push_back(r);
      continue;
    }
    // verification: one run on the shared inputs, output poisoned first so that a tactic writing nothing fails
    if (runner.poison) runner.poison();
    r.status = runner.run(t);
    if (r.status == kOk) r.status = runner.fetch(got.data(), ref.n);
    if (r.status != kOk) {
      r.note = "run failed with status " + std::to_string(r.status);
      out->results.push_back(r);
      continue;
    }
    r.max_err_ratio = tactic_error_ratio(got.data(), ref, &r.worst_index);
    r.passed = r.max_err_ratio <= 1.0;
    if (!r.passed) {
      r.note = std::isfinite(r.max_err_ratio) ? "output outside the tolerance (max error " +
                                                    std::to_string(r.max_err_ratio) + " x the allowed)"
                                              : "output not finite";
      out->results.push_back(r);
      continue;
    }
    // timing: warm-up, then samples of `inner` runs, median per run
    int status = kOk;
    for (int w = 0; w < opt.warmup && status == kOk; ++w) status = runner.run(t);
    int inner = opt.inner;
    if (status == kOk && inner <= 0) {
      double s1 = 0.0;
      status = runner.time(t, 1, &s1);
      inner = 1;
      if (s1 > 0.0 && s1 < opt.min_sample_s) {
        const double k = std::ceil(opt.min_sample_s / s1);
        inner = k > 1000 ? 1000 : static_cast<int>(k);
      }
    }
    for (int s = 0; s < std::max(1, opt.samples) && status == kOk; ++s) {
      double sec = 0.0;
      status = runner.time(t, inner, &sec);
      r.samples_s.push_back(sec / inner);
    }
    if (status != kOk) {
      r.passed = false;
      r.note = "timing run failed with status " + std::to_string(status);
      out->results.push_back(r);
      continue;
    }
    r.median_s = median(r.samples_s);
    if (!opt.baseline.empty() && opt.baseline == t.name) {
      base_i = i;
      base_time = r.median_s;
    }
    if (r.median_s < best) {
      best = r.median_s;
      best_i = i;
    }
    out->results.push_back(r);
  }
  if (best_i < 0) {
    out->error = forcing ? "forced tactic '" + opt.forced + "' failed verification" : "no tactic passed verification";
    return forcing ? kBadArgument : kUnsupported;
  }
  // the previous fixed choice stays unless another tactic is faster by more than the margin
  if (base_i >= 0 && best_i != base_i && best > base_time * (1.0 - opt.baseline_margin)) best_i = base_i;
  out->chosen = best_i;
  out->chosen_name = table[best_i].name;
  return kOk;
}

}  // namespace lfdn
