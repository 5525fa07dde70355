// Owning engines: packed weights, folded biases, generated noise and the preallocated workspace of one
// model, and the scoring pass (op 4) run on them. Built from an EngineSpec of host arrays (what
// lfdn_edge.engine.native_pack writes into the artifact). CpuEngine is always compiled; CudaEngine only
// when the build has CUDA (LFDN_WITH_CUDA).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lfdn/common.h"
#include "lfdn/cuda_tactics.h"
#include "lfdn/score_pass.h"
#include "lfdn/tactic_select.h"

namespace lfdn {

// Source arrays, all host memory, row-major; weights are (out, in) like torch.nn.Linear.weight, stored
// as `wtype` (FP32, or FP16 bits). Arrays indexed per block have `depth` entries.
struct EngineSpec {
  int64_t in_dim = 0, width = 0, depth = 0;
  int32_t steps = 0;
  WeightType wtype = WeightType::kF32;
  const void* inp_w = nullptr; const float* inp_b = nullptr;
  std::vector<const void*> fc1_w, fc2_w;
  std::vector<const float*> gn1_g, gn1_b, gn2_g, gn2_b, fc2_b;
  const float* fc1_bias = nullptr;  // (steps, depth, width): fc1.bias + emb_i(level_s), folded at build time
  const float* out_g = nullptr; const float* out_b = nullptr;
  const void* out_w = nullptr; const float* out_bias = nullptr;
  // WeightType::kI8 only: one FP32 scale per output channel of each weight (finite, > 0); null otherwise
  const float* inp_ws = nullptr; std::vector<const float*> fc1_ws, fc2_ws; const float* out_ws = nullptr;
  float gn_eps = 1e-5f, cos_eps = 1e-8f;
  // forward noising x = q_a * z0 + q_b * eps; eps and the DDIM eta noise come from the Philox generator
  float q_a = 1.0f, q_b = 0.0f;
  uint64_t seed = 0;
  std::vector<DdimCoefficients> coef;  // (steps - 1): reconstruction = last x0 prediction; or (steps): the
                                       // last row (sigma 0) maps (x, x0_hat) to the reconstruction
  std::vector<float> stage_weights;    // (num_stages) MFsim weights, finite, >= 0; empty: 1/num_stages each
  std::vector<int32_t> stage_offsets;  // (num_stages + 1)
};

int check_engine_spec(const EngineSpec& s);

// Where an engine's FP32 small arrays (biases, GroupNorm affines, folded fc1 biases, noise) sit in its one
// small-array buffer, in floats. Shared by the CPU and CUDA engines.
struct SmallArrayOffsets {
  size_t inp_b = 0, fc1_bias = 0, out_g = 0, out_b = 0, out_bias = 0;
  size_t eps = 0;             // steps * in_dim floats, zero here: eps (stream 0), then the DDIM eta noise
  std::vector<size_t> block;  // 5 per block: gn1_g, gn1_b, gn2_g, gn2_b, fc2_b
};
// Appends the spec's small arrays to *out, each padded to a multiple of ``align`` floats.
SmallArrayOffsets pack_small_arrays(const EngineSpec& s, size_t align, std::vector<float>* out);

// Packed weights of one engine (layout of its backend) in the order inp, fc1/fc2 per block, out.
struct PackedWeights {
  const void* inp = nullptr;
  std::vector<const void*> fc1, fc2;
  const void* out = nullptr;
};
// Fills *blocks and *v from the spec, the packed weights and the small arrays at ``small`` (host or device
// memory; only addresses are computed). ``coef`` and ``offsets`` must outlive the view.
void fill_model_view(const EngineSpec& s, WeightType wtype, const PackedWeights& w, const float* small,
                     const SmallArrayOffsets& o, const std::vector<DdimCoefficients>& coef,
                     const std::vector<int32_t>& offsets, std::vector<LfdnBlockView>* blocks, LfdnModelView* v);

struct AlignedFree {
  void operator()(void* p) const;
};
using AlignedBuffer = std::unique_ptr<char[], AlignedFree>;
AlignedBuffer aligned_alloc_bytes(size_t bytes);  // 64-byte aligned, null on failure

class CpuEngine {
 public:
  // kOk and *out set, or an error code. threads 0: $LFDN_EDGE_NUM_THREADS or the hardware concurrency.
  static int create(const EngineSpec& spec, int64_t max_batch, int threads, std::unique_ptr<CpuEngine>* out);

  // z0 (rows, in_dim) -> mse (rows), mfsim (rows), stage_cos (rows, num_stages), recon (rows, in_dim) or null.
  // Calls are serialised (one workspace); each uses threads() threads.
  int score(const float* z0, int64_t rows, float* mse, float* mfsim, float* stage_cos, float* recon) const;

  int64_t max_batch() const { return max_batch_; }
  int threads() const { return threads_; }
  size_t weight_bytes() const { return weight_bytes_; }
  size_t workspace_bytes() const { return workspace_bytes_; }
  const LfdnModelView& view() const { return view_; }

  // ---- Tactics (lfdn/tactic_select.h, docs/NATIVE.md "Tactics"). The pass has three layer kinds: 0 inp
  // (in_dim -> width, SiLU), 1 block (width -> width, GroupNorm+SiLU; fc1 and fc2 of every block), 2 out
  // (width -> in_dim, GroupNorm+SiLU). Per batch bucket (tactic_bucket) and kind the engine runs one CPU tactic,
  // -1 (the initial state): the fixed default blocking of the active table, as before tactics.
  // The engine's numerics class is the kernel table active at create (isa()); only its tactics are accepted, so
  // a row's scores do not depend on the batch size whatever is chosen per bucket.
  static constexpr int kLayerKinds = 3;
  int num_buckets() const { return static_cast<int>(tactics_.size()); }  // buckets up to max_batch
  const char* isa() const { return isa_; }
  int tactic(int bucket, int kind) const;  // index into cpu_linear_tactics(), -1: default, or kBadArgument
  // kOk, or kBadArgument when the bucket/kind is out of range, the index unknown, of another ISA, test-only
  // (unless allow_test_only) or not applicable to the layer. index -1 restores the default.
  int set_tactic(int bucket, int kind, int index, bool allow_test_only = false);
  // The op-2 problem of (bucket, kind) at the bucket's upper bound (capped at max_batch) on this engine's
  // weights (block 0 for the block kind) with deterministic inputs, as used for selection.
  FusedLinearParams tactic_problem(int bucket, int kind) const;
  // Runs select_tactic over cpu_linear_tactics() restricted to isa() on that problem (threads() threads,
  // steady_clock timing unless `time` replaces the timer), with the default tactic as the baseline. Does not
  // set the choice (set_tactic does). cold_cache: every timed run starts with the caches flushed (a read of
  // twice the last-level cache, 16-64 MiB, untimed) and a sample is one run, as in a pass, where each layer's weights were
  // last touched a whole pass earlier and stream from DRAM; false: back-to-back runs (weights cache-resident).
  int select(int bucket, int kind, const TacticSelectOptions& opt, TacticSelection* out,
             const std::function<int(const LinearTactic&, int, double*)>& time = nullptr,
             bool cold_cache = true) const;

 private:
  CpuEngine() = default;
  std::vector<std::array<int32_t, kLayerKinds>> tactics_;
  const char* isa_ = "";
  int64_t max_batch_ = 0;
  int threads_ = 1;
  size_t weight_bytes_ = 0, workspace_bytes_ = 0;
  AlignedBuffer weights_, workspace_;
  mutable std::mutex mutex_;
  std::vector<float> small_;  // biases, norms, folded biases, noise
  std::vector<LfdnBlockView> blocks_;
  std::vector<DdimCoefficients> coef_;
  std::vector<int32_t> offsets_;
  LfdnModelView view_;
};

#if defined(LFDN_WITH_CUDA)
class CudaEngine {
 public:
  static int create(const EngineSpec& spec, int64_t max_batch, int device, std::unique_ptr<CudaEngine>* out);
  ~CudaEngine();
  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;

  // Device pointers. The pass runs on an engine-owned stream ordered after `stream` (events), replayed from a
  // CUDA graph captured per batch bucket (after a warm-up pass) on first use of the bucket: the bucket's
  // upper bound rows are computed (rows above `rows` zero-filled); `stream` is ordered after the pass on
  // return. A bucket whose layers have no chosen tactic yet is selected first (select_tactics).
  // create, score and the destructor set the engine's device for the call and restore the caller's current
  // device before returning.
  int score(const float* z0, int64_t rows, float* mse, float* mfsim, float* stage_cos, float* recon,
            Stream stream);

  // Tactics (lfdn/cuda_tactics.h). Buckets: the shared bounds of lfdn/tactic_select.h (1, 8, 64, 256, 1024,
  // ...) below max_batch, then max_batch; a layer key
  // is "k<in>.n<out>.<none|silu|gn>" (fc1 and fc2 share one). select_tactics runs every candidate of every
  // layer key at the bucket's upper bound on the engine's weights (random activations), verified against
  // the reference kernel and timed, and stores the fastest passing one ($LFDN_EDGE_TACTIC restricts the
  // candidates to the named ones where they apply; a forced one that fails is an error). set_tactic stores
  // a choice (from a tactic cache) after verifying it the same way (kBadArgument when unknown, not
  // applicable or failing). tactic() is "" when none is chosen.
  struct TacticSelection {
    std::string key;
    int64_t bucket = 0;
    CudaTacticRecord record;
    bool chosen = false;
  };
  // exclude: candidates never offered; on_event: per candidate "start" / "done" (lfdn/tactic_select.h), for a
  // journal that names the candidate when this process dies during the selection. A candidate's CUDA error
  // ends the selection with kCudaError; *out then holds the records up to it (that record names the error).
  struct SelectHooks {
    std::vector<std::string> exclude;
    std::function<void(const char* event, const std::string& key, int64_t bucket, const TacticCandidateResult& r)>
        on_event;
  };
  int select_tactics(int64_t bucket, const std::vector<std::string>& test_only, int iters,
                     std::vector<TacticSelection>* out, const SelectHooks& hooks = SelectHooks());
  int set_tactic(const std::string& key, int64_t bucket, const std::string& name);
  std::string tactic(const std::string& key, int64_t bucket) const;
  std::vector<int64_t> buckets() const;
  int64_t bucket_of(int64_t rows) const;
  std::vector<std::string> layer_keys() const;
  int device_info(CudaDeviceInfo* info) const;

  int64_t max_batch() const { return max_batch_; }
  int device() const { return device_; }
  size_t weight_bytes() const { return weight_bytes_; }
  size_t workspace_bytes() const { return workspace_bytes_; }
  int graphs() const;  // number of captured batch buckets

 private:
  struct Impl;
  CudaEngine() = default;
  std::unique_ptr<Impl> impl_;
  int64_t max_batch_ = 0;
  int device_ = 0;
  size_t weight_bytes_ = 0, workspace_bytes_ = 0;
};

// Number of visible CUDA devices (0 when there is no driver or device), why it is 0 ("" when >= 1: no
// driver, a driver older than the runtime (cudaErrorInsufficientDriver), no device), and the last CUDA
// error text of the calling thread.
int cuda_device_count();
std::string cuda_device_error();
std::string cuda_last_error();
#endif

}  // namespace lfdn
