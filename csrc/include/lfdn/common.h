// Shared definitions of the torch-free core: status codes, weight storage types and the CUDA stream handle.
// No CUDA header is needed to use the parameter structs: cudaStream_t is `CUstream_st*` (cuda_runtime_api.h
// declares it exactly so), so host-only code can carry a stream without including CUDA.
#pragma once
#include <cstddef>
#include <cstdint>

struct CUstream_st;

namespace lfdn {

using Stream = CUstream_st*;  // == cudaStream_t; nullptr is the legacy default stream

enum Status : int {
  kOk = 0,
  kNullPointer = -1,          // a required pointer is null
  kBadSize = -2,              // a size is negative/zero where it must be positive, or too large
  kBatchAboveWorkspace = -3,  // rows exceed what the workspace was sized for
  kBadArgument = -4,          // an enum or scalar argument is out of range
  kCudaError = -5,            // a CUDA runtime call failed (see cuda_last_error())
  kUnsupported = -6,          // not compiled in (e.g. CUDA in a CPU-only build)
  kWorkspaceTooSmall = -7,    // workspace_bytes below the size the op needs
};

// Human-readable text for a Status (never null).
const char* status_message(int code);

enum class WeightType : int32_t {
  kF32 = 0,  // IEEE binary32
  kF16 = 1,  // IEEE binary16 bit patterns (uint16_t), converted to FP32 before the multiply-add
  // bfloat16 bit patterns (uint16_t, the high half of an FP32). CPU only, AVX512_BF16 only: the activations are
  // rounded to BF16 too (round to nearest even) and the products are accumulated in FP32 (vdpbf16ps).
  kBF16 = 2,
  // int8_t, symmetric, one FP32 scale per output channel (w[n, k] ~= q[n, k] * scale[n], q in [-127, 127];
  // lfdn_edge/builder/quantize.py). CPU: the activations are quantized per row at run time (symmetric, scale =
  // max|a| / 127) and the products accumulate exactly in INT32 (AVX512-VNNI vpdpbusd, NEON sdot; the scalar
  // table as reference), then out = acc * a_scale[row] * w_scale[n] + bias in FP32. docs/NATIVE.md "INT8".
  kI8 = 3,
};

inline size_t weight_type_size(WeightType t) {
  return t == WeightType::kF32 ? 4 : t == WeightType::kI8 ? 1 : 2;
}

}  // namespace lfdn
