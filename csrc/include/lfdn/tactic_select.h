// Select-verify-time for tactics (lfdn/tactics.h), device-agnostic and torch-free.
//
// For one problem (a FusedLinearParams whose inputs the caller has prepared on its device), select_tactic
// runs every applicable candidate of a table through a TacticRunner (the device part: run, fetch the output
// to the host, time back-to-back runs), checks each output against a host reference with the tolerance rule
// below, times the ones that pass (warm-up, then timed samples of `inner` runs each in two rounds: all, then
// the finalists and the baseline; medians), and returns the fastest passing one. A candidate that fails (status != kOk, or any output outside the
// tolerance, or a NaN/Inf) is reported with the reason and never chosen. The CPU engine drives it with
// cpu_linear_tactics() and a steady_clock runner (CpuEngine::select, csrc/engine/cpu_engine.cpp); a CUDA
// engine drives it with cuda_linear_tactics() and a cudaEvent runner.
//
// Tolerance rule (the project's, docs/NATIVE.md "Tactics"): output i passes when
//     |got_i - ref_i| <= atol + rtol * |ref_i| + srel * scale_i
// with ref the float64 reference of the op and scale_i = sum_k |a_ik w_ki| + |bias_i| (+ |residual_i|):
//     FP32 and FP16 weights   rtol 1e-4, atol 1e-4, srel 0     (the op tests' rule; FP16: reference on the
//                                                                FP16-rounded weights)
//     BF16 weights+activations rtol 0, atol 1e-5, srel 2^-7 x 1.01 (the BF16 op rule against FP32 operands)
// tactic_tolerance(wtype) returns these; a device may pass a looser one (e.g. FP16 activations on the GPU:
// the FP16 tolerance rule of its own tests) but never skips the check.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lfdn/linear.h"
#include "lfdn/tactics.h"

namespace lfdn {

struct TacticTolerance {
  double rtol = 1e-4, atol = 1e-4, srel = 0.0;
};
TacticTolerance tactic_tolerance(WeightType wtype);

// Host reference of one problem: n = rows * out_dim values and their magnitude scales (scale may be null:
// all zero).
struct TacticReference {
  const double* ref = nullptr;
  const double* scale = nullptr;
  int64_t n = 0;
  TacticTolerance tol;
  std::string label;  // what this verification case is (e.g. "in-place residual"), for the notes
};

// The device part. All three are required.
struct TacticRunner {
  // Optional: called before each candidate's verification run; fills the output with NaN so that a tactic
  // that leaves outputs unwritten fails.
  std::function<void()> poison;
  // Optional, with several verification cases (select_tactic_cases): set the problem up as case i (its inputs,
  // whether the residual aliases the output, ...); called after poison, before each verification run, and with
  // i = 0 before the timing runs. Returns a status code.
  std::function<int(int case_index)> prepare;
  // Run tactic t once on the prepared problem (the caller's params: same inputs for every candidate);
  // returns a status code (kOk on success).
  std::function<int(const LinearTactic& t)> run;
  // Copy the output of the last run to host memory (n floats, row-major (rows, out_dim)).
  std::function<int(float* host, int64_t n)> fetch;
  // Run t `reps` times back to back and put the elapsed wall time in seconds in *seconds (CPU: a steady
  // clock around the runs; CUDA: events on the stream, synchronised). Tests replace it by a fake timer.
  std::function<int(const LinearTactic& t, int reps, double* seconds)> time;
};

struct TacticCandidateResult;

struct TacticSelectOptions {
  int warmup = 2;              // untimed runs before the samples (after the verification run)
  int samples = 9;             // timed samples of a finalist; the median is compared
  // Two rounds: every passing candidate gets `first_samples` samples; the `finalists` fastest by that median
  // (and the baseline, always) get `samples` more, and finalists are compared on the median of all theirs.
  // Others keep their first-round median (note "pruned"). first_samples 0: one round, `samples` for everyone.
  int first_samples = 3;
  int finalists = 4;
  int inner = 0;               // runs per sample; 0: as many as make one sample >= min_sample_s (max 1000)
  double min_sample_s = 2e-3;
  // LFDN_EDGE_TACTIC: only this tactic is considered (still verified). Not in the table, filtered out, or not
  // applicable: select_tactic fails with kBadArgument and the reason in TacticSelection::error.
  std::string forced;
  // Test-only tactics (LinearTactic::test_only) are never offered unless named here.
  std::vector<std::string> test_only;
  // Extra filter (e.g. the engine's numerics class: one ISA for all buckets); null: all.
  std::function<bool(const LinearTactic& t)> filter;
  // The previous fixed choice, when it is a candidate: another tactic replaces it only when its median is
  // faster by more than baseline_margin (relative), so timing noise cannot pick a slower tactic over it.
  std::string baseline;
  double baseline_margin = 0.02;
  // Never offered (recorded with the note "excluded"): e.g. candidates that took an earlier, isolated selection
  // process down (lfdn_edge/runtime/tactic_isolation.py).
  std::vector<std::string> exclude;
  // Progress of each candidate, for a journal that survives a crash of this process: "start" before the
  // candidate runs at all (verification, then again before its second timing round), "done" once its result
  // for that stage is final. A crash between the two names the candidate that caused it.
  std::function<void(const char* event, const TacticCandidateResult& r)> on_event;
  // A candidate status that ends the selection at once (returned, the candidate recorded): a CUDA error may
  // have destroyed the context, so nothing after it could be trusted. 0: none.
  int fatal_status = 0;
};

struct TacticCandidateResult {
  std::string name;
  bool test_only = false;
  bool applies = false;    // applies() said yes (and the filter kept it)
  bool passed = false;     // ran with kOk and every output within the tolerance
  int status = 0;          // of the verification run
  double max_err_ratio = -1.0;  // max_i |got - ref| / allowed_i (<= 1 passes); -1 when not run; inf: NaN/Inf
  int64_t worst_index = -1;
  int worst_case = -1;     // the verification case (select_tactic_cases) of worst_index
  double median_s = -1.0;  // per run, passing candidates only; -1 when not timed
  std::vector<double> samples_s;  // per run
  std::string note;        // why it was skipped or rejected
};

struct TacticSelection {
  int chosen = -1;  // index into the table, -1 when none passed
  std::string chosen_name;
  std::vector<TacticCandidateResult> results;  // one per table entry considered, in table order
  std::string error;
};

// Returns kOk with out->chosen >= 0, or kBadArgument (forced tactic unusable: out->error says why) or
// kUnsupported (no candidate applies or none passed; out->results say why).
// (and opt.fatal_status when a candidate returned it: the selection stopped there).
int select_tactic(const LinearTactic* table, int n, const FusedLinearParams& problem, const TacticReference& ref,
                  const TacticRunner& runner, const TacticSelectOptions& opt, TacticSelection* out);
// The same with several verification cases (runner.prepare sets each up): a candidate passes only when it
// passes every case; its max_err_ratio is the worst over the cases, the note names the case that failed.
int select_tactic_cases(const LinearTactic* table, int n, const FusedLinearParams& problem,
                        const std::vector<TacticReference>& refs, const TacticRunner& runner,
                        const TacticSelectOptions& opt, TacticSelection* out);

// Verification only: max_i |got - ref| / allowed_i over the n outputs, *worst the index of the maximum.
// Non-finite values, the explicit rule: where the reference is NaN the output must be NaN, where it is +-inf
// the output must be the same infinity (the tactic must signal what the reference signals, neither more nor
// less); where the reference is finite the output must be finite and within the tolerance. A broken rule
// gives inf at that element. An allowed error that is itself not finite (a bound that overflowed) allows any
// finite output there.
double tactic_error_ratio(const float* got, const TacticReference& ref, int64_t* worst);

// Batch buckets shared by the engines: bucket b covers rows in (bound(b-1), bound(b)] with the bounds
// 1, 8, 64, 256, then x4 (1024, 4096, ...). Tactics are selected per bucket at its upper bound (capped at the
// engine's max_batch) and used for every batch in it.
int tactic_bucket(int64_t rows);
int64_t tactic_bucket_bound(int bucket);

// ---- CPU (csrc/cpu/tactics_cpu.cpp): float64 reference of op 2 on CPU-packed weights (pack_linear_cpu);
// ref and scale hold rows * out_dim values. The prologue is computed in float64 and never rounded (for BF16
// the packed weights are BF16 already; the activations' rounding is what the BF16 rule's srel term allows).
int fused_linear_cpu_reference(const FusedLinearParams& p, double* ref, double* scale);

// Index of a CPU tactic by name in cpu_linear_tactics(), -1 when unknown.
int cpu_tactic_index(const char* name);
// The ISA (kernel table name, "scalar", "avx2", "avx512", "neon") a CPU tactic computes with; its numerics
// class: tactics of one ISA give bit-identical outputs (same FMA chains), different ISAs differ in rounding.
const char* cpu_tactic_isa(int index);
// The CPU tactic that reproduces the fixed choice of the engine before tactics (the table's default
// blocking) for an ISA, -1 when that ISA is not compiled in.
int cpu_default_tactic(const char* isa);

}  // namespace lfdn
