// Internal to the CPU backend: the ops as phases of a team run (team.h), so that the scoring pass runs all
// of them in one run instead of starting the threads once per op.
#pragma once
#include "cpu/team.h"
#include "lfdn/ddim_score.h"
#include "lfdn/linear.h"
#include "lfdn/noise.h"

namespace lfdn {
namespace cpu {

// Workspace of run_fused_linear for up to `threads` threads.
size_t linear_workspace_bytes(int64_t rows, int64_t in_dim, int threads);
// Phases run_fused_linear uses (1, or 2 with a prologue).
int fused_linear_phases(const FusedLinearParams& p);
// Called by every thread of a run with the same (checked) arguments; `out` is complete on return.
void run_fused_linear(const FusedLinearParams& p, void* workspace, Runner& r);

// One phase each, over rows.
void run_noise(const NoiseParams& p, Runner& r);
void run_ddim_score(const DdimScoreParams& p, Runner& r);

}  // namespace cpu
}  // namespace lfdn
