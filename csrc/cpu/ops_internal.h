// Internal to the CPU backend: the ops as phases of a team run (team.h), so that the scoring pass runs all
// of them in one run instead of starting the threads once per op.
#pragma once
#include "cpu/team.h"
#include "lfdn/ddim_score.h"
#include "lfdn/linear.h"
#include "lfdn/noise.h"
#include "lfdn/score_pass.h"

namespace lfdn {
namespace cpu {

struct Kernels;

// The blocking of one run of op 2 (a CPU tactic, tactics_cpu.cpp). Row stability: whatever the blocking,
// every output is one FMA chain over k in increasing order computed by the table's kernels (the accumulators
// are stored and reloaded exactly between k-blocks; a row's group, row block, panel grouping and the thread
// that computes an item never enter the arithmetic), so all configs of one table give bit-identical outputs,
// for any batch size and thread count. Only `kr` (the ISA) changes rounding; an engine uses one for all
// buckets.
struct LinearConfig {
  const Kernels* kr = nullptr;  // null: kernels(), the active table
  int mr = 0;                   // rows per micro-kernel call, <= kr->mr_max; 0: kr->mr_max
  int64_t kc = 0;               // k-block (FP32/FP16 path, <= kKCMax, multiple of 16); 0: the table default
  int64_t mc = 0;               // row block (<= kMCMax); 0: kMC
  int np = 1;                   // weight panels per call: 1, or 2 (FP32 weights, table with gemm_f32_2p)
  bool pack_a = true;           // activations k-major per row group when the table has the kernel (> 1 group)
  bool panel_major = false;     // work items (row block, panel unit) ordered panel-major instead of row-block-major
  bool drop_last_kblock = false;  // TEST ONLY (a deliberately wrong tactic): skips the last k-block
  bool i8_tile = false;           // INT8 only: the table's matrix-engine kernel (gemm_i8_tile, AMX), row-major activations
};

// Workspace of run_fused_linear for up to `threads` threads (any LinearConfig).
size_t linear_workspace_bytes(int64_t rows, int64_t in_dim, int threads);
// Phases run_fused_linear uses (1, or 2 with a prologue).
int fused_linear_phases(const FusedLinearParams& p);
// Called by every thread of a run with the same (checked) arguments; `out` is complete on return.
// cfg null: the fixed default blocking of the active table (the engine before tactics).
void run_fused_linear(const FusedLinearParams& p, void* workspace, Runner& r, const LinearConfig* cfg = nullptr);
// The LinearConfig of CPU tactic `index` (cpu_linear_tactics()) in *storage, or null when the index is out of range
// or its table is not available here (tactics_cpu.cpp).
const LinearConfig* tactic_config(int index, LinearConfig* storage);
// The table-default k-block for a table and rows per call (a 6 KiB activation slice beside the weight block).
int64_t default_kc(int mr);

// Op 4 with a CPU tactic per layer kind (tactics[0] inp, [1] fc1/fc2 of every block, [2] out; indices into
// cpu_linear_tactics(), -1 or tactics null: the default blocking of the active table). score_pass_cpu is this
// with null.
int score_pass_cpu_tactics(const ScorePassParams& p, const int32_t* tactics);

// One phase each, over rows.
void run_noise(const NoiseParams& p, Runner& r);
void run_ddim_score(const DdimScoreParams& p, Runner& r);

}  // namespace cpu
}  // namespace lfdn
