// Tactics: interchangeable implementations of op 2 (the fused linear, lfdn/linear.h) behind the same
// FusedLinearParams, chosen per (layer shape, batch bucket) on the device that runs them: every candidate
// that applies is run on the same inputs, checked against a reference with the FP16/FP32 tolerance rule,
// timed, and the fastest passing one is stored (TensorRT's builder does the same with its tactics).
//
// This header is the contract between the CPU tactics, the CUDA tactics and the selection machinery.
// A tactic computes exactly what fused_linear_cpu / fused_linear_cuda compute for the same params (same
// pointers: host memory for CPU tactics, device memory for CUDA tactics); it may differ in rounding only
// within the tolerance rule, and for a given tactic a row's output never depends on the batch size or the
// thread count (row stability).
#pragma once
#include <cstdint>

#include "lfdn/linear.h"

namespace lfdn {

struct LinearTactic {
  // Stable identifier stored in tactic caches and accepted by LFDN_EDGE_TACTIC, e.g. "cpu.avx512.mr8" or
  // "cuda.stream_splitk". Never reused for a different implementation.
  const char* name;
  // Same contract (and status codes) as fused_linear_cpu / fused_linear_cuda.
  int (*run)(const FusedLinearParams& p);
  // True when the tactic can run this problem here (ISA present on this CPU, shape/rows within its limits,
  // weight type it reads). Must be cheap and must not touch the data pointers.
  bool (*applies)(const FusedLinearParams& p);
  // Deliberately wrong variants that exist only to test that verification rejects them; never offered
  // unless a test asks for them by name.
  bool test_only;
};

// The tactic tables, count in *n (never null pointers; the CUDA table is empty in a CPU-only build).
const LinearTactic* cpu_linear_tactics(int* n);
const LinearTactic* cuda_linear_tactics(int* n);

}  // namespace lfdn
