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
  } else if (wtype == WeightType::kI8) {
    // the reference's scale is sum_k |w_k| x the row's quantization step (amax / 127): rounding each activation
    // to its step moves an output by at most half of it; 1 % on top for the FP32 prologue and epilogue
    t.rtol = 1e-5;
    t.atol = 1e-5;
    t.srel = 0.5 * 1.01;
  } else {
    t.rtol = 1e-4;
    t.atol = 1e-4;
    t.srel = 0.0;
  }
  return t;
}

double tactic_error_ratio(const float* got, const TacticReference& ref, int64_t* worst) {
  const double kInf = std::numeric_limits<double>::infinity();
  double w = 0.0;
  int64_t wi = -1;
  for (int64_t i = 0; i < ref.n; ++i) {
    const double g = got[i], r = ref.ref[i];
    if (!std::isfinite(r)) {  // the reference signals NaN or an infinity: the output must signal the same
      const bool same = std::isnan(r) ? std::isnan(g) : g == r;
      if (same) continue;
      if (worst) *worst = i;
      return kInf;
    }
    if (!std::isfinite(g)) {
      if (worst) *worst = i;
      return kInf;
    }
    double allowed = ref.tol.atol + ref.tol.rtol * std::fabs(r) + (ref.scale ? ref.tol.srel * ref.scale[i] : 0.0);
    if (!(allowed >= 0.0)) allowed = kInf;  // a NaN bound: no finite limit to hold the output to
    const double q = allowed == kInf ? 0.0 : std::fabs(g - r) / allowed;
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
  return select_tactic_cases(table, n, problem, std::vector<TacticReference>{ref}, runner, opt, out);
}

int select_tactic_cases(const LinearTactic* table, int n, const FusedLinearParams& problem,
                        const std::vector<TacticReference>& refs, const TacticRunner& runner,
                        const TacticSelectOptions& opt, TacticSelection* out) {
  if (out == nullptr || (table == nullptr && n > 0) || refs.empty()) return kNullPointer;
  if (!runner.run || !runner.fetch || !runner.time) return kNullPointer;
  if (refs.size() > 1 && !runner.prepare) return kNullPointer;
  for (const TacticReference& ref : refs) {
    if (ref.ref == nullptr) return kNullPointer;
    if (ref.n != problem.rows * problem.out_dim) return kBadSize;
  }
  const TacticReference& ref = refs[0];
  auto event = [&](const char* what, const TacticCandidateResult& r) {
    if (opt.on_event) opt.on_event(what, r);
  };
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
  std::vector<int> timed, table_index, inners;  // results index, table index and runs per sample of the timed
  for (int i = 0; i < n; ++i) {
    const LinearTactic& t = table[i];
    if (forcing && opt.forced != t.name) continue;
    if (t.test_only && !named(opt.test_only, t.name) && !forcing) continue;
    if (opt.filter && !opt.filter(t)) continue;
    TacticCandidateResult r;
    r.name = t.name;
    r.test_only = t.test_only;
    if (named(opt.exclude, t.name)) {
      r.note = "excluded";
      out->results.push_back(r);
      continue;
    }
    r.applies = t.applies(problem);
    if (!r.applies) {
      r.note = "does not apply";
      out->results.push_back(r);
      continue;
    }
    event("start", r);
    // verification: one run per case on the shared inputs, output poisoned first so that a tactic writing
    // nothing fails; the worst case decides
    r.max_err_ratio = 0.0;
    std::string failed_case;
    for (size_t c = 0; c < refs.size() && r.status == kOk; ++c) {
      if (runner.poison) runner.poison();
      if (runner.prepare) r.status = runner.prepare(static_cast<int>(c));
      if (r.status == kOk) r.status = runner.run(t);
      if (r.status == kOk) r.status = runner.fetch(got.data(), refs[c].n);
      if (r.status != kOk) {
        failed_case = refs[c].label;
        break;
      }
      int64_t wi = -1;
      const double q = tactic_error_ratio(got.data(), refs[c], &wi);
      if (!(q <= r.max_err_ratio)) {  // (also NaN, which the rule never returns)
        r.max_err_ratio = q;
        r.worst_index = wi;
        r.worst_case = static_cast<int>(c);
        if (q > 1.0) failed_case = refs[c].label;
      }
    }
    const std::string in_case = failed_case.empty() ? std::string() : " (case: " + failed_case + ")";
    if (r.status != kOk) {
      r.note = "run failed with status " + std::to_string(r.status) + in_case;
      out->results.push_back(r);
      event("done", r);
      if (opt.fatal_status != 0 && r.status == opt.fatal_status) {
        out->error = "candidate " + r.name + " failed with status " + std::to_string(r.status) + "; selection stopped";
        return r.status;
      }
      continue;
    }
    r.passed = r.max_err_ratio <= 1.0;
    if (!r.passed) {
      r.note = (std::isfinite(r.max_err_ratio) ? "output outside the tolerance (max error " +
                                                     std::to_string(r.max_err_ratio) + " x the allowed)"
                                               : std::string("output not finite where the reference is, or the "
                                                             "reverse")) + in_case;
      out->results.push_back(r);
      event("done", r);
      continue;
    }
    // timing, round 1 (on case 0): warm-up, then samples of `inner` runs, median per run
    int status = runner.prepare ? runner.prepare(0) : kOk;
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
    const int n1 = opt.first_samples > 0 ? opt.first_samples : std::max(1, opt.samples);
    for (int s = 0; s < n1 && status == kOk; ++s) {
      double sec = 0.0;
      status = runner.time(t, inner, &sec);
      r.samples_s.push_back(sec / inner);
    }
    if (status != kOk) {
      r.passed = false;
      r.status = status;
      r.note = "timing run failed with status " + std::to_string(status);
      out->results.push_back(r);
      event("done", r);
      if (opt.fatal_status != 0 && status == opt.fatal_status) {
        out->error = "candidate " + r.name + " failed with status " + std::to_string(status) + "; selection stopped";
        return status;
      }
      continue;
    }
    r.median_s = median(r.samples_s);
    out->results.push_back(r);
    event("done", r);
    inners.push_back(inner);
    timed.push_back(static_cast<int>(out->results.size()) - 1);
    table_index.push_back(i);
  }
  // round 2: the finalists (and the baseline) get more samples
  if (opt.first_samples > 0 && !timed.empty()) {
    std::vector<size_t> order(timed.size());
    for (size_t j = 0; j < order.size(); ++j) order[j] = j;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return out->results[timed[a]].median_s < out->results[timed[b]].median_s;
    });
    std::vector<bool> final(timed.size(), false);
    for (size_t j = 0; j < order.size() && static_cast<int>(j) < std::max(1, opt.finalists); ++j) final[order[j]] = true;
    for (size_t j = 0; j < timed.size(); ++j)
      if (!opt.baseline.empty() && opt.baseline == table[table_index[j]].name) final[j] = true;
    for (size_t j = 0; j < timed.size(); ++j) {
      TacticCandidateResult& r = out->results[timed[j]];
      if (!final[j]) {
        r.note = "pruned after " + std::to_string(r.samples_s.size()) + " samples";
        continue;
      }
      const LinearTactic& t = table[table_index[j]];
      event("start", r);
      int status = runner.prepare ? runner.prepare(0) : kOk;
      for (int s = 0; s < std::max(1, opt.samples) && status == kOk; ++s) {
        double sec = 0.0;
        status = runner.time(t, inners[j], &sec);
        r.samples_s.push_back(sec / inners[j]);
      }
      if (status != kOk) {
        r.passed = false;
        r.status = status;
        r.note = "timing run failed with status " + std::to_string(status);
        event("done", r);
        if (opt.fatal_status != 0 && status == opt.fatal_status) {
          out->error = "candidate " + r.name + " failed with status " + std::to_string(status) + "; selection stopped";
          return status;
        }
        continue;
      }
      r.median_s = median(r.samples_s);
      r.note = "finalist";
      event("done", r);
    }
  }
  for (size_t j = 0; j < timed.size(); ++j) {
    const TacticCandidateResult& r = out->results[timed[j]];
    if (!r.passed) continue;
    const bool pruned = r.note.rfind("pruned", 0) == 0;
    const int i = table_index[j];
    if (!opt.baseline.empty() && opt.baseline == table[i].name) {
      base_i = i;
      base_time = r.median_s;
    }
    if (!pruned && r.median_s < best) {
      best = r.median_s;
      best_i = i;
    }
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
