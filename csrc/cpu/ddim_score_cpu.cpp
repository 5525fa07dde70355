// Op 3 on the CPU: one pass per row does the DDIM update of x and/or the MSE and per-stage cosine sums.
// The update mirrors lfdn_edge.diffusion.ddim_step operation by operation in FP32; reductions use double.
#include <cmath>

#include "cpu/ops_internal.h"
#include "cpu/team.h"
#include "lfdn/ddim_score.h"

namespace lfdn {

int check_ddim_score_params(const DdimScoreParams& p) {
  if (p.rows < 0 || p.dim <= 0) return kBadSize;
  if (!p.update && !p.scores) return kBadArgument;
  if (p.score_update && !(p.update && p.scores)) return kBadArgument;
  if (p.rows == 0) return kOk;
  if (p.x0_hat == nullptr) return kNullPointer;
  if (p.update) {
    if (p.x == nullptr) return kNullPointer;
    if (p.sigma != 0.0f && p.noise == nullptr) return kNullPointer;
    if (!(p.sqrt_1m_ab_cur > 0.0f)) return kBadArgument;
  }
  if (p.scores) {
    if (p.z0 == nullptr || p.mse == nullptr || p.mfsim == nullptr || p.stage_cos == nullptr ||
        p.stage_offsets == nullptr)
      return kNullPointer;
    if (p.num_stages < 1 || p.num_stages > kMaxStages) return kBadSize;
    if (p.stage_offsets[0] != 0 || p.stage_offsets[p.num_stages] != p.dim) return kBadArgument;
    for (int m = 0; m < p.num_stages; ++m)
      if (p.stage_offsets[m + 1] <= p.stage_offsets[m]) return kBadArgument;
    if (!(p.cos_eps >= 0.0f)) return kBadArgument;
    if (p.stage_weights != nullptr)
      for (int m = 0; m < p.num_stages; ++m)
        if (!(p.stage_weights[m] >= 0.0f && p.stage_weights[m] <= 1.0f)) return kBadArgument;
  }
  return kOk;
}

namespace cpu {

namespace {

// Stage m of row r from its sums (double): stores the cosine, returns its (weighted) term of the MFsim sum.
double stage_cosine(const DdimScoreParams& p, int64_t r, int m, double dot, double nz, double ny) {
  const double eps = p.cos_eps;
  const double c = dot / (std::fmax(std::sqrt(nz), eps) * std::fmax(std::sqrt(ny), eps));
  p.stage_cos[r * p.num_stages + m] = static_cast<float>(c);
  return p.stage_weights ? static_cast<double>(p.stage_weights[m]) * c : c;
}

// Row r's MSE (mean over dim) and MFsim (minus the weighted cosine sum, or minus the mean cosine).
void store_row_scores(const DdimScoreParams& p, int64_t r, double se, double cos_sum) {
  p.mse[r] = static_cast<float>(se / static_cast<double>(p.dim));
  p.mfsim[r] = static_cast<float>(p.stage_weights ? -cos_sum : -cos_sum / p.num_stages);
}

// score_update: x_out = c_x0 y + c_eps (x - sqrt_ab y) / sqrt_1m_ab (as the plain update, sigma 0 checked by the
// model view), then the scores of that value; each element is read before its x_out slot is written, so
// x_out may be x or x0_hat.
void ddim_score_updated_rows(const DdimScoreParams& p, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* y = p.x0_hat + r * p.dim;
    const float* z = p.z0 + r * p.dim;
    float* x = p.x + r * p.dim;
    float* out = (p.x_out != nullptr ? p.x_out : p.x) + r * p.dim;
    double se = 0.0, cos_sum = 0.0;
    for (int m = 0; m < p.num_stages; ++m) {
      double dot = 0.0, nz = 0.0, ny = 0.0;
      for (int64_t i = p.stage_offsets[m]; i < p.stage_offsets[m + 1]; ++i) {
        const float eps_hat = (x[i] - p.sqrt_ab_cur * y[i]) / p.sqrt_1m_ab_cur;
        float v = p.c_x0 * y[i] + p.c_eps * eps_hat;
        if (p.sigma != 0.0f) v = v + p.sigma * p.noise[i];
        out[i] = v;
        const double a = z[i], b = v, d = a - b;
        dot += a * b;
        nz += a * a;
        ny += b * b;
        se += d * d;
      }
      cos_sum += stage_cosine(p, r, m, dot, nz, ny);
    }
    store_row_scores(p, r, se, cos_sum);
  }
}

void ddim_score_rows(const DdimScoreParams& p, int64_t r0, int64_t r1) {
  if (p.score_update) {
    ddim_score_updated_rows(p, r0, r1);
    return;
  }
  for (int64_t r = r0; r < r1; ++r) {
    const float* y = p.x0_hat + r * p.dim;
    if (p.scores) {
      const float* z = p.z0 + r * p.dim;
      double se = 0.0, cos_sum = 0.0;
      for (int m = 0; m < p.num_stages; ++m) {
        double dot = 0.0, nz = 0.0, ny = 0.0;
        for (int64_t i = p.stage_offsets[m]; i < p.stage_offsets[m + 1]; ++i) {
          const double a = z[i], b = y[i], d = a - b;
          dot += a * b;
          nz += a * a;
          ny += b * b;
          se += d * d;
        }
        cos_sum += stage_cosine(p, r, m, dot, nz, ny);
      }
      store_row_scores(p, r, se, cos_sum);
    }
    if (p.update) {  // after the scores: x may alias nothing the scores read
      float* x = p.x + r * p.dim;
      for (int64_t i = 0; i < p.dim; ++i) {
        const float eps_hat = (x[i] - p.sqrt_ab_cur * y[i]) / p.sqrt_1m_ab_cur;
        float v = p.c_x0 * y[i] + p.c_eps * eps_hat;
        if (p.sigma != 0.0f) v = v + p.sigma * p.noise[i];
        x[i] = v;
      }
    }
  }
}

}  // namespace

void run_ddim_score(const DdimScoreParams& p, Runner& r) {
  r.phase(p.rows, r.chunk_for(p.rows), [&](int64_t r0, int64_t r1) { ddim_score_rows(p, r0, r1); });
}

}  // namespace cpu

int ddim_score_cpu(const DdimScoreParams& p) {
  const int rc = check_ddim_score_params(p);
  if (rc != kOk) return rc;
  cpu::team_run(cpu::default_threads(), 1, [&](cpu::Runner& r) { cpu::run_ddim_score(p, r); });
  return kOk;
}

}  // namespace lfdn
