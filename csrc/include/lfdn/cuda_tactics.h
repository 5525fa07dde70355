// CUDA tactics of op 2 (the fused linear) and their selection on the device (see lfdn/tactics.h).
//
// STATUS: compiled for every architecture and toolchain of the CI matrix (nvcc 13.0, CUDA 11.8 and 12.2
// through NVRTC + ptxas); NEVER RUN ON A GPU (none lent so far). Every tactic's kernels run in CI under the
// project's PTX interpreter (tools/ptxsim; docs/PTX_INTERPRETER.md) with the launches captured from the
// launchers below, checked against the CPU reference with the rule below and by memcheck / initcheck /
// racecheck / synccheck. tools/gpu_check.sh runs the selection, parity and timing on a lent GPU.
//
// Tactics (names are stable; cuda_linear_tactics() lists them in this order):
//   cuda.legacy_tile   the first kernel (WMMA 16x16x16, 16x64 / 64x64 tiles, GroupNorm per CTA), sm_72+
//   cuda.stream_r8     weight streaming for rows <= 8:  GEMV-style, 16 columns x one k-slice per CTA,
//   cuda.stream_r32    ... rows <= 32; split-K over k-slices sized to fill every SM >= 2 times, 128-bit
//                      weight loads through a 4-stage per-thread cp.async ring (sm_80+) or register double
//                      buffering (sm_72/75), FP32 FMAs, deterministic split-K (partials in the workspace, the
//                      last CTA of a column block sums them in split order 0..S-1: no float atomics)
//   cuda.mma_m64       tensor-core tiles for larger batches: mma.sync m16n8k16 (FP16 x FP16 -> FP32) fed by
//   cuda.mma_m32       ldmatrix, 3-stage cp.async pipeline, 64x64 / 32x64 CTA tiles, bias + residual in the
//                      epilogue (sm_80+)
//   cuda.mma_splitk_m32  the 32x64 tiles split over k (rows <= 128): splits from the shape and the SM count so
//                      that even a 1440-wide layer (23 column tiles) has >= 2 CTAs per SM; the same deterministic
//                      last-CTA reduction as the streaming kernel
//   cuda.cublaslt      cuBLASLt (dlopen'ed at run time, never a build dependency) as the trusted baseline;
//                      applies when libcublasLt.so.{13,12,11} loads and its handle is created
//   cuda.i8_stream_r8  INT8 weight streaming for rows <= 8 / <= 16 (WeightType::kI8 problems only): the
//   cuda.i8_stream_r16 streaming kernel's CTA shape, split-K and deterministic reduction over the int8 codes of
//                      the packed CUDA INT8 blob (below): 16 codes per 16-byte load (a warp-wide load is 512
//                      contiguous bytes of a weight row), dequantized exactly to FP32 in registers, FP32
//                      accumulation, the per-output-channel scale applied once to the k-sum in the reduction
//   cuda.test_no_bias  test only: cuda.legacy_tile without the bias (must be rejected by verification)
// Every tactic except legacy_tile first runs the prologue kernel once per layer: one CTA per row computes the
// FP32 GroupNorm statistics (two passes), applies GN + affine + SiLU (or SiLU, or nothing) once, applies the
// FP16 range guard (lfdn/fp16_guard.h) and writes the FP16 activations A (rows, Kp) and the row scales into
// the workspace; the column CTAs then stream A. Their workspace: cuda_tactic_workspace_bytes, zero-filled
// once before the first call (cuda_tactic_workspace_init: the split-K counters must start at 0; every call
// leaves them 0 again).
//
// Verification: the reference kernel (one thread per output, FP32 activations and accumulation) also
// returns bound[r, n] = sum_k |a[r,k]| |w[n,k]| + |bias[n]| + |residual[r, n]|. A tactic passes when its
// non-finite outputs are exactly the reference's (tactic_error_ratio's rule), and |y - ref| <=
// cuda_tactic_tolerance(K) * bound elsewhere, in every verification case (CudaSelectRequest), where
// cuda_tactic_tolerance(K) = 2 x (2^-11 + (K + 2) 2^-24): the FP16 rounding of the activations (unit
// roundoff 2^-11, FP16 weights are exact in both) plus FP32 accumulation of K terms in each, with a factor 2.
//
// INT8 weights (WeightType::kI8, issue #26). An INT8 problem's p.weight is the packed CUDA INT8 blob
// (pack_linear_cuda_i8_host), self-contained like the CPU's packed INT8 blob:
//   [0, 2 E)          FP16 copy, (Np, Kp) row-major: fp16(q[n,k] * scale[n]) (FP32 product, rounded to FP16),
//                     zero-padded -- exactly the FP16 layout of pack_linear_cuda_host, at p.weight itself
//   [2 E, 3 E)        the int8 codes q (Np, Kp) row-major, zero-padded
//   [3 E, 3 E + 4 Np) FP32 scale[n] (0 in the padding)
// with E = packed_linear_cuda_elems(in_dim, out_dim) (Np x Kp; every section is 256-byte aligned since Np is a
// multiple of 64 and Kp of 32). Design: the INT8 tactics stream the codes (1 byte per weight: a paper-size pass
// reads ~206 MB instead of ~411 MB); every FP16 tactic (legacy tile, streaming, mma, cuBLASLt) accepts a kI8
// problem and reads the FP16 copy, so an INT8 engine has a verified tactic for every batch bucket (the INT8 ones
// apply up to 16 rows only) and computes the INT8 model's weights q * scale everywhere (to FP16 rounding in the
// copy). The cost is 3 bytes of device memory per weight instead of 2 (the FP16 engine) -- ~205 MB for the
// paper-size model -- and no INT8 tensor-core tactic for large batches (those are compute-bound, where the FP16
// mma tactics on the copy are the right kernels anyway). The activations are NOT quantized (weight-only INT8,
// W8A16 with FP32 accumulation): the CPU INT8 engine also quantizes the activations per row, so the two INT8
// engines agree to that quantization's error, not to FP16 rounding.
// The reference kernel computes a kI8 problem with the FP32 weights q * scale (the INT8 model), and the rule
// for kI8 is cuda_tactic_tolerance(K, kI8) = 2 x (2 x 2^-11 + (K + 2) 2^-24): the FP16 copy's rounding of the
// weight is a second unit roundoff for the FP16 tactics. The INT8 tactics' products a_h * q are exact (11 + 7
// significant bits), so they are within the FP16 rule (tests/test_cuda_int8.py checks that tighter bound).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <functional>

#include "lfdn/linear.h"
#include "lfdn/tactic_select.h"
#include "lfdn/tactics.h"

namespace lfdn {

// Bytes of workspace every CUDA tactic of cuda_linear_tactics() can run with for this problem.
size_t cuda_tactic_workspace_bytes(int64_t rows, int64_t in_dim, int64_t out_dim);
// Zero-fills a tactic workspace on `stream` (kOk or kCudaError).
int cuda_tactic_workspace_init(void* workspace, size_t bytes, Stream stream);
// The tactic of that name (test-only ones included), or null.
const LinearTactic* cuda_tactic_by_name(const std::string& name);
double cuda_tactic_tolerance(int64_t in_dim);
// The rule for problems of weight type wtype: kI8 2 x (2 x 2^-11 + (K + 2) 2^-24), else cuda_tactic_tolerance(K).
double cuda_tactic_tolerance(int64_t in_dim, WeightType wtype);

// The packed CUDA INT8 blob (see above): its size in bytes (0 for a non-positive dimension), the host packing
// (q: (out_dim, in_dim) int8 in [-127, 127], kBadArgument for -128; scale: (out_dim) FP32, finite and > 0, else
// kBadArgument; dst: host memory of packed_linear_cuda_i8_bytes), and where its codes and scales start.
size_t packed_linear_cuda_i8_bytes(int64_t in_dim, int64_t out_dim);
int pack_linear_cuda_i8_host(const int8_t* q, const float* scale, int64_t in_dim, int64_t out_dim, void* dst);
const int8_t* cuda_i8_codes(const void* packed, int64_t in_dim, int64_t out_dim);
// check_fused_linear_params for a CUDA problem: a kI8 problem is checked as the FP16 problem of its blob's FP16
// copy (the shared check knows the CPU's weight types; the blob's layout is the CUDA side's business).
int check_cuda_linear_params(const FusedLinearParams& p);
const float* cuda_i8_scales(const void* packed, int64_t in_dim, int64_t out_dim);

// The reference: ref and bound (rows, out_dim) FP32, device memory (see above). p.out is not written.
int fused_linear_cuda_reference(const FusedLinearParams& p, float* ref, float* bound);

struct CudaTacticRecord {
  std::string name;
  bool applies = false;
  int status = 0;           // kOk, or the tactic's (or a CUDA) error
  double max_abs_err = 0;   // |y - ref| at the worst output (largest |y - ref| / tol)
  double tolerance = 0;     // the tolerance there
  double worst_ratio = 0;   // max |y - ref| / tol (<= 1 passes); inf for a non-finite output, -1 not run
  bool passed = false;
  double median_us = 0;     // median per run of `iters` samples timed with cudaEvents (0 when not passed)
  std::string error;        // why it did not pass (a CUDA error: its name and text)
};

// How the residual of a verification case is given to the tactic: none, a separate buffer, or the output
// itself (the in-place add of the pass's fc2 layers: out = out + Linear(prologue(x)) + bias).
enum class ResidualMode : int { kNone = 0, kSeparate = 1, kInPlace = 2 };

// One selection problem. p: device pointers; p.x the inputs, p.out scratch, p.residual the residual VALUES
// (read-only, never aliased to p.out; may be null when no mode uses it); p.workspace may be null (the harness
// allocates one). Every candidate is verified in every mode of `modes` with each input set (p.x, and
// x_extreme when given: rows that need the FP16 guard and the GroupNorm rescaling), the in-place mode by
// copying the residual into the output first; it is timed in modes[0] with p.x. Timing: each sample
// replays a CUDA graph of `reps` back-to-back runs captured once per candidate (the way the engine runs the
// pass), so launch and host overhead outside a graph is not measured; a candidate that cannot be captured is
// rejected (the engine could not run it).
struct CudaSelectRequest {
  FusedLinearParams p;
  const float* x_extreme = nullptr;
  std::vector<ResidualMode> modes{ResidualMode::kNone};
  int iters = 9;
  std::vector<std::string> test_only;  // test-only tactics to offer
  std::vector<std::string> only;       // non-empty: just these names
  std::vector<std::string> exclude;    // never these (e.g. they took an isolated selection process down)
  // progress per candidate (lfdn/tactic_select.h TacticSelectOptions::on_event); a candidate that returns a
  // CUDA error ends the selection (kCudaError returned, records so far kept): the context may be lost.
  std::function<void(const char* event, const TacticCandidateResult& r)> on_event;
};

// Runs (through select_tactic_cases, lfdn/tactic_select.h) every applicable candidate, verifies each against
// the reference kernel and times those that pass. *best: index into *records of the fastest passing one, -1
// when none passed. kOk, kCudaError (a candidate's CUDA error stopped it: its record says which and why), or
// another error of the harness itself.
int cuda_select_linear(const CudaSelectRequest& req, std::vector<CudaTacticRecord>* records, int* best);

// The names forced by $LFDN_EDGE_TACTIC (comma-separated; the "cuda." entries), empty when unset.
std::vector<std::string> cuda_forced_tactics();

// Per-pass plan: the tactic of each layer kind (null: cuda.legacy_tile) and the tactic workspace.
// wtype: kF16, or kI8 when every weight of the model view is a packed CUDA INT8 blob (the view itself says
// kF16: the blob's FP16 copy is at each weight pointer, so the FP16 path reads it unchanged); each layer's
// FusedLinearParams then carries kI8, which the INT8 tactics need and the reference and FP16 tactics accept.
struct CudaPassPlan {
  const LinearTactic* inp = nullptr;
  const LinearTactic* fc1 = nullptr;
  const LinearTactic* fc2 = nullptr;
  const LinearTactic* out = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  WeightType wtype = WeightType::kF16;
};
struct ScorePassParams;
int score_pass_cuda_plan(const ScorePassParams& p, const CudaPassPlan& plan);

// cuBLASLt (dlopen): whether it loaded here, and which library file / why not.
bool cublaslt_available();
std::string cublaslt_info();

// The device the caller's thread has current: name, compute capability, SMs, driver and runtime versions.
struct CudaDeviceInfo {
  std::string name;
  int major = 0, minor = 0, sms = 0, driver = 0, runtime = 0;
};
int cuda_current_device_info(CudaDeviceInfo* info);

}  // namespace lfdn
