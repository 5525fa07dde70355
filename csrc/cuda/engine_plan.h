// The memory plan of a CudaEngine (host code, no CUDA headers): what CudaEngine::create allocates on the
// device, the host contents it uploads, the model view over those regions and the launches that finish the
// creation. Shared by CudaEngine::create (csrc/cuda/cuda_engine.cu) and the launch-capture binding of the
// whole score pass (csrc/bindings/bind_capture.cpp), which gives the regions virtual addresses instead.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "lfdn/common.h"
#include "lfdn/engine.h"
#include "lfdn/score_pass.h"

namespace lfdn {

struct CudaEngineMemoryPlan {
  // FP16 weights packed for the CUDA kernels (pack_linear_cuda_host): inp, (fc1, fc2) per block, out, each
  // padded to 128 halves (256 bytes); weight_offsets: where each starts, in halves, in that order
  // INT8 specs (wtype kI8): each weight is a packed CUDA INT8 blob (lfdn/cuda_tactics.h), sizes still in halves
  std::vector<uint16_t> weights;
  std::vector<size_t> weight_offsets;
  WeightType wtype = WeightType::kF16;  // of every layer's FusedLinearParams (CudaPassPlan::wtype)
  // FP32 small arrays (pack_small_arrays, 64-float aligned); small_offsets.eps: the noise tail
  // [eps, eps + steps * in_dim), generated on the device at creation (never uploaded)
  std::vector<float> small;
  SmallArrayOffsets small_offsets;
  // bytes of each device region
  size_t weight_bytes = 0;        // weights.size() * 2
  size_t small_bytes = 0;         // small.size() * 4
  size_t small_upload_bytes = 0;  // small_offsets.eps * 4: the part uploaded from the host
  size_t workspace_bytes = 0;     // score_pass_cuda_workspace_bytes(view, max_batch)
  size_t z0_bytes = 0, recon_bytes = 0;             // max_batch * in_dim floats
  size_t mse_bytes = 0, mfsim_bytes = 0;            // max_batch floats
  size_t cos_bytes = 0;                             // max_batch * num_stages floats
  size_t tactic_workspace_bytes = 0;                // max over the layers of cuda_tactic_workspace_bytes
};

// kOk and *out, or the error of packing the spec (the spec is assumed checked: check_engine_spec).
int cuda_engine_memory_plan(const EngineSpec& s, int64_t max_batch, CudaEngineMemoryPlan* out);

// The device regions of an engine (addresses: cudaMalloc'ed, or virtual for a launch capture).
struct CudaEngineBuffers {
  void* weights = nullptr;
  float* small = nullptr;
  void* workspace = nullptr;
  float *z0 = nullptr, *recon = nullptr, *mse = nullptr, *mfsim = nullptr, *cos = nullptr;
  void* tactic_workspace = nullptr;
};

struct CudaEngineRegion {
  const char* name;  // "weights", "small", "workspace", "z0", "recon", "mse", "mfsim", "cos", "tactic_workspace"
  size_t bytes;
  void** slot;  // the pointer of CudaEngineBuffers it sets
};
// Every region of the plan, in allocation order, with its slot in *b.
std::vector<CudaEngineRegion> cuda_engine_regions(const CudaEngineMemoryPlan& plan, CudaEngineBuffers* b);

// The model view over the regions b (addresses only computed, never dereferenced); coef, offsets and blocks
// hold what the view points to on the host, and must outlive it.
void cuda_engine_fill_view(const EngineSpec& s, const CudaEngineMemoryPlan& plan, const CudaEngineBuffers& b,
                           std::vector<DdimCoefficients>* coef, std::vector<int32_t>* offsets,
                           std::vector<LfdnBlockView>* blocks, LfdnModelView* v);

// The parameters of one score pass over the regions b, as CudaEngine::score runs it (rows: the batch bucket;
// view: the model view of cuda_engine_fill_view; workspace_bytes: the plan's).
ScorePassParams cuda_engine_pass_params(const CudaEngineBuffers& b, size_t workspace_bytes, const LfdnModelView& view,
                                        int64_t rows, int64_t max_batch, Stream stream);

// The launches of the creation, after the uploads (weights; small[0, eps)) on the same stream: the noise
// kernels that fill the eps tail (stream st for step st: eps, then the DDIM eta noise), then the tactic
// workspace's zero fill. kOk or the error.
int cuda_engine_init_launches(const EngineSpec& s, const CudaEngineMemoryPlan& plan, const CudaEngineBuffers& b,
                              Stream stream);

}  // namespace lfdn
