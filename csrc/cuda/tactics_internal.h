// Internal to the CUDA tactics (host code, no CUDA headers needed): the workspace layout shared by the
// launchers (tactics_launch.cu), cuBLASLt (cublaslt.cu) and the selection (tactic_select.cu).
#pragma once
#include <cstddef>
#include <cstdint>

#include "lfdn/linear.h"

namespace lfdn {
namespace cuda {

constexpr int kMaxSplits = 16;
constexpr int64_t kCounterInts = 4096;  // split-K counters at offset 0 (fixed: shared by every call)
constexpr int kStreamMaxRows = 32;
constexpr int kSplitMmaMaxRows = 128;  // cuda.mma_splitk_m32 applies up to here (its partials: splits x rows)

// cuBLASLt's workspace inside the tactic workspace: NVIDIA recommends 32 MiB on Hopper and 4 MiB on earlier
// architectures (cuBLAS documentation, cublasSetWorkspace); the heuristic is offered 32 MiB on cc >= 9.0, else
// 4 MiB, and the region is sized for the larger.
constexpr size_t kCublasLtWorkspaceBytes = size_t{32} << 20;

struct TacticWorkspace {
  int* counters = nullptr;  // kCounterInts ints, zero between calls
  void* a = nullptr;        // (rows, Kp) FP16 activations
  float* scale = nullptr;   // (rows)
  float* partial = nullptr; // max(kMaxSplits * min(rows, kSplitMmaMaxRows), rows) * Np floats
  void* cublaslt = nullptr; // kCublasLtWorkspaceBytes
};
size_t tactic_workspace_bytes(int64_t rows, int64_t in_dim, int64_t out_dim);
TacticWorkspace tactic_workspace(const FusedLinearParams& p);  // p.workspace split up (sizes from p)

// Prologue kernel of every non-legacy tactic: A and the row scales into the workspace. kOk or an error.
int launch_prologue(const FusedLinearParams& p, const TacticWorkspace& ws);
// Guard scale, bias and residual on d (rows, out_dim) FP32 -> p.out.
int launch_epilogue(const FusedLinearParams& p, const TacticWorkspace& ws, const float* d);
// Checks shared by the tactics' run(): params, FP16 weights, workspace size.
int check_tactic_params(const FusedLinearParams& p);
int load_tactic_kernels();

// cuBLASLt: D (rows, out_dim) FP32 row-major = A (rows, Kp) FP16 x W (Np, Kp)^T, on p.cuda_stream.
// The descriptors, layouts and the heuristic's algorithm are prepared once per (device, rows, Kp, N) and reused
// (a call inside a CUDA graph capture then only enqueues the GEMM); `workspace` holds kCublasLtWorkspaceBytes.
int cublaslt_gemm(const FusedLinearParams& p, const void* a, float* d, void* workspace);

}  // namespace cuda
}  // namespace lfdn
