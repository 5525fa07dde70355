// CudaEngine: FP16 weights (or packed CUDA INT8 blobs: lfdn/cuda_tactics.h) packed for the kernels, folded biases
// and Philox noise on the device, a workspace for max_batch rows, the tactic chosen per (layer key, batch
// bucket), and one CUDA graph per batch bucket (captured after a warm-up pass on first use). Never run on a GPU:
// the creation's launches and a whole score pass (cuda_engine_memory_plan, captured) run kernel by kernel in the
// PTX interpreter in CI (tests/test_ptxsim_kernels.py, tests/test_cuda_int8_ptxsim.py); graphs, streams, events
// and the selection's timing are not interpreted.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cuda/engine_plan.h"
#include "cuda/util.cuh"
#include "lfdn/cuda_tactics.h"
#include "lfdn/engine.h"
#include "lfdn/tactic_select.h"
#include "lfdn/linear.h"
#include "lfdn/noise.h"

namespace lfdn {

struct CudaEngine::Impl {
  cudaStream_t stream = nullptr;
  cudaEvent_t ev_in = nullptr, ev_out = nullptr;
  CudaEngineBuffers buf;  // the device regions of the memory plan (cuda/engine_plan.h)
  std::vector<LfdnBlockView> blocks;
  std::vector<DdimCoefficients> coef;
  std::vector<int32_t> offsets;
  LfdnModelView view;
  std::map<int64_t, cudaGraphExec_t> graphs;  // per bucket; guarded by mutex (capture, lookup, and graphs())
  mutable std::mutex mutex;
  // tactics: the workspace every tactic can run with at max_batch, the buckets, the choices
  size_t tac_ws_bytes = 0;  // the workspace: buf.tactic_workspace
  std::vector<int64_t> buckets;
  std::map<std::pair<std::string, int64_t>, const LinearTactic*> choice;  // guarded by mutex
  WeightType wtype = WeightType::kF16;  // of every layer's problem: kF16, or kI8 (packed CUDA INT8 blobs)

  // (callers hold mutex and have the engine's device current)
  int select_locked(int64_t bucket, const std::string& key, const std::vector<std::string>& only,
                    const std::vector<std::string>& test_only, int iters,
                    std::vector<CudaEngine::TacticSelection>* out, const CudaEngine::SelectHooks& hooks);
  int ensure_bucket(int64_t bucket);
  CudaPassPlan plan_for(int64_t bucket) const;
  void drop_graph(int64_t bucket) {
    auto it = graphs.find(bucket);
    if (it != graphs.end()) {
      cudaGraphExecDestroy(it->second);
      graphs.erase(it);
    }
  }

  ~Impl() {
    for (auto& g : graphs) cudaGraphExecDestroy(g.second);
    CudaEngineBuffers b = buf;
    for (const CudaEngineRegion& r : cuda_engine_regions(CudaEngineMemoryPlan(), &b))
      if (*r.slot) cudaFree(*r.slot);
    if (ev_in) cudaEventDestroy(ev_in);
    if (ev_out) cudaEventDestroy(ev_out);
    if (stream) cudaStreamDestroy(stream);
    cudaGetLastError();
  }
};

namespace {

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

const char* prologue_name(Prologue p) {
  return p == Prologue::kNone ? "none" : p == Prologue::kSilu ? "silu" : "gn";
}

// One layer of the model view that stands for its key in the selection (its weights, bias and norms).
struct LayerRef {
  std::string key;
  int64_t in = 0, out = 0;
  Prologue pro = Prologue::kNone;
  const void* w = nullptr;
  const float *bias = nullptr, *gamma = nullptr, *beta = nullptr;
  bool in_place = false;  // some layer of this key adds its residual in place (fc2: h = h + fc2(...))
};

std::string layer_key(int64_t in, int64_t out, Prologue pro) {
  return "k" + std::to_string(in) + ".n" + std::to_string(out) + "." + prologue_name(pro);
}

std::vector<LayerRef> layer_refs(const LfdnModelView& v) {
  std::vector<LayerRef> r;
  auto add = [&](int64_t in, int64_t out, Prologue pro, const void* w, const float* b, const float* g,
                 const float* be, bool in_place) {
    const std::string k = layer_key(in, out, pro);
    for (LayerRef& x : r)
      if (x.key == k) {
        x.in_place = x.in_place || in_place;
        return;
      }
    r.push_back(LayerRef{k, in, out, pro, w, b, g, be, in_place});
  };
  add(v.in_dim, v.width, Prologue::kSilu, v.inp_w, v.inp_b, nullptr, nullptr, false);
  if (v.depth > 0)  // fc1 (no residual) and fc2 (residual added in place) share the key: both are verified
    add(v.width, v.width, Prologue::kGroupNormSilu, v.blocks[0].fc1_w, v.fc1_bias, v.blocks[0].gn1_g,
        v.blocks[0].gn1_b, true);
  add(v.width, v.in_dim, Prologue::kGroupNormSilu, v.out_w, v.out_bias, v.out_g, v.out_b, false);
  return r;
}

// Deterministic N(0, 1) host data for the selection problems (a 64-bit LCG and Box-Muller).
void fill_normal(std::vector<float>* v, uint64_t seed) {
  uint64_t st = seed * 6364136223846793005ull + 1442695040888963407ull;
  auto next = [&]() {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    return (static_cast<double>(st >> 11) + 0.5) / 9007199254740992.0;
  };
  for (size_t i = 0; i < v->size(); ++i) {
    const double u1 = next(), u2 = next();
    (*v)[i] = static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
}

struct DevFree {
  void* p = nullptr;
  ~DevFree() {
    if (p) cudaFree(p);
  }
};

}  // namespace

// ---------------------------------------------------------------- the memory plan (cuda/engine_plan.h)

int cuda_engine_memory_plan(const EngineSpec& s, int64_t max_batch, CudaEngineMemoryPlan* out) {
  CudaEngineMemoryPlan& pl = *out;
  const int64_t C = s.in_dim, W = s.width, D = s.depth;
  // ---- FP16 weights: inp, (fc1, fc2) per block, out; each 256-byte aligned (128 halves). INT8 specs: each weight
  // is a packed CUDA INT8 blob (lfdn/cuda_tactics.h: FP16 copy fp16(q * scale) first, then the int8 codes and the
  // FP32 scales), sizes in halves. Design (issue #26): the INT8 tactics stream the codes where they apply (rows
  // <= 16); every other bucket runs the FP16 tactics on the copy, so the engine computes the INT8 model's weights
  // in every bucket, at 3 bytes of device memory per weight.
  const bool i8 = s.wtype == WeightType::kI8;
  auto elems = [&](int64_t in, int64_t outd) {
    return i8 ? (packed_linear_cuda_i8_bytes(in, outd) + 1) / 2 : packed_linear_cuda_elems(in, outd);
  };
  const size_t n_inp = round_up(elems(C, W), 128);
  const size_t n_blk = round_up(elems(W, W), 128);
  const size_t n_out = round_up(elems(W, C), 128);
  const size_t n_all = n_inp + 2 * n_blk * static_cast<size_t>(D) + n_out;
  pl.weights.assign(n_all, 0);
  pl.weight_offsets.clear();
  size_t off = 0;
  auto pack = [&](const void* src, const float* scale, int64_t in, int64_t outd, size_t n) {
    pl.weight_offsets.push_back(off);
    const int r = i8 ? pack_linear_cuda_i8_host(static_cast<const int8_t*>(src), scale, in, outd,
                                                pl.weights.data() + off)
                     : pack_linear_cuda_host(src, s.wtype, in, outd, pl.weights.data() + off);
    off += n;
    return r;
  };
  int rc;
  if ((rc = pack(s.inp_w, s.inp_ws, C, W, n_inp)) != kOk) return rc;
  for (int64_t i = 0; i < D; ++i) {
    if ((rc = pack(s.fc1_w[i], i8 ? s.fc1_ws[i] : nullptr, W, W, n_blk)) != kOk) return rc;
    if ((rc = pack(s.fc2_w[i], i8 ? s.fc2_ws[i] : nullptr, W, W, n_blk)) != kOk) return rc;
  }
  if ((rc = pack(s.out_w, s.out_ws, W, C, n_out)) != kOk) return rc;
  pl.wtype = i8 ? WeightType::kI8 : WeightType::kF16;
  pl.weight_bytes = n_all * sizeof(uint16_t);
  // ---- FP32 small arrays (64-float aligned) + room for the noise generated on the device
  pl.small.clear();
  pl.small_offsets = pack_small_arrays(s, 64, &pl.small);
  pl.small_bytes = pl.small.size() * sizeof(float);
  pl.small_upload_bytes = pl.small_offsets.eps * sizeof(float);
  // ---- the pass's workspace and the engine's input / output buffers for max_batch rows
  // a view of the dimensions only (no addresses): what score_pass_cuda_workspace_bytes and layer_refs read
  LfdnBlockView no_block;
  LfdnModelView dims;
  dims.in_dim = C;
  dims.width = W;
  dims.depth = D;
  dims.blocks = &no_block;
  pl.workspace_bytes = score_pass_cuda_workspace_bytes(dims, max_batch);
  const size_t rb = sizeof(float) * static_cast<size_t>(max_batch);
  pl.z0_bytes = rb * static_cast<size_t>(C);
  pl.recon_bytes = rb * static_cast<size_t>(C);
  pl.mse_bytes = rb;
  pl.mfsim_bytes = rb;
  pl.cos_bytes = rb * (s.stage_offsets.size() - 1);
  // ---- the tactic workspace: every tactic can run with it on every layer key of the pass at max_batch
  pl.tactic_workspace_bytes = 0;
  for (const LayerRef& l : layer_refs(dims))
    pl.tactic_workspace_bytes = std::max(pl.tactic_workspace_bytes, cuda_tactic_workspace_bytes(max_batch, l.in, l.out));
  return kOk;
}

std::vector<CudaEngineRegion> cuda_engine_regions(const CudaEngineMemoryPlan& pl, CudaEngineBuffers* b) {
  return {
      {"weights", pl.weight_bytes, &b->weights},
      {"small", pl.small_bytes, reinterpret_cast<void**>(&b->small)},
      {"workspace", pl.workspace_bytes, &b->workspace},
      {"z0", pl.z0_bytes, reinterpret_cast<void**>(&b->z0)},
      {"recon", pl.recon_bytes, reinterpret_cast<void**>(&b->recon)},
      {"mse", pl.mse_bytes, reinterpret_cast<void**>(&b->mse)},
      {"mfsim", pl.mfsim_bytes, reinterpret_cast<void**>(&b->mfsim)},
      {"cos", pl.cos_bytes, reinterpret_cast<void**>(&b->cos)},
      {"tactic_workspace", pl.tactic_workspace_bytes, &b->tactic_workspace},
  };
}

void cuda_engine_fill_view(const EngineSpec& s, const CudaEngineMemoryPlan& pl, const CudaEngineBuffers& b,
                           std::vector<DdimCoefficients>* coef, std::vector<int32_t>* offsets,
                           std::vector<LfdnBlockView>* blocks, LfdnModelView* v) {
  // addresses only: uintptr_t arithmetic, so that virtual addresses (a launch capture) are never dereferenced
  const uintptr_t wd = reinterpret_cast<uintptr_t>(b.weights);
  auto at = [&](size_t halves) { return reinterpret_cast<const void*>(wd + halves * sizeof(uint16_t)); };
  PackedWeights pw;
  pw.inp = at(pl.weight_offsets[0]);
  for (int64_t i = 0; i < s.depth; ++i) {
    pw.fc1.push_back(at(pl.weight_offsets[1 + 2 * i]));
    pw.fc2.push_back(at(pl.weight_offsets[2 + 2 * i]));
  }
  pw.out = at(pl.weight_offsets.back());
  *coef = s.coef;
  *offsets = s.stage_offsets;
  fill_model_view(s, WeightType::kF16, pw, b.small, pl.small_offsets, *coef, *offsets, blocks, v);
}

ScorePassParams cuda_engine_pass_params(const CudaEngineBuffers& b, size_t workspace_bytes, const LfdnModelView& view,
                                        int64_t rows, int64_t max_batch, Stream stream) {
  ScorePassParams p;
  p.model = &view;
  p.z0 = b.z0;
  p.rows = rows;
  p.mse = b.mse;
  p.mfsim = b.mfsim;
  p.stage_cos = b.cos;
  p.recon = b.recon;
  p.workspace = b.workspace;
  p.workspace_bytes = workspace_bytes;
  p.workspace_rows = max_batch;
  p.cuda_stream = stream;
  return p;
}

int cuda_engine_init_launches(const EngineSpec& s, const CudaEngineMemoryPlan& pl, const CudaEngineBuffers& b,
                              Stream stream) {
  const uintptr_t eps = reinterpret_cast<uintptr_t>(b.small) + pl.small_offsets.eps * sizeof(float);
  for (int32_t st = 0; st < s.steps; ++st) {  // eps: stream 0; eta noise of DDIM update st: stream st + 1
    NoiseParams np;
    np.out = reinterpret_cast<float*>(eps + static_cast<size_t>(st) * static_cast<size_t>(s.in_dim) * sizeof(float));
    np.rows = 1;
    np.dim = s.in_dim;
    np.seed = s.seed;
    np.stream = static_cast<uint32_t>(st);
    np.cuda_stream = stream;
    const int rc = noise_inject_cuda(np);
    if (rc != kOk) return rc;
  }
  return cuda_tactic_workspace_init(b.tactic_workspace, pl.tactic_workspace_bytes, stream);
}

int CudaEngine::create(const EngineSpec& s, int64_t max_batch, int device, std::unique_ptr<CudaEngine>* out) {
  int rc = check_engine_spec(s);
  if (rc != kOk) return rc;
  if (max_batch < 1 || device < 0) return kBadSize;
  if (out == nullptr) return kNullPointer;
  int count = 0;
  const std::string why = cuda::device_status(&count);
  if (count == 0) {  // the real reason (e.g. cudaErrorInsufficientDriver: driver older than the runtime)
    cuda::record(cudaErrorNoDevice, why.c_str());
    return kCudaError;
  }
  if (device >= count) {
    cuda::record(cudaErrorInvalidDevice, ("device index " + std::to_string(device) + " out of range (" +
                                          std::to_string(count) + " visible)").c_str());
    return kCudaError;
  }
  // Declared before the engine so that a partly built engine is freed on `device` before it is restored.
  cuda::DeviceGuard guard(device);
  if (!guard.ok()) return kCudaError;
  std::unique_ptr<CudaEngine> e(new CudaEngine());
  e->impl_.reset(new Impl());
  Impl& im = *e->impl_;
  e->max_batch_ = max_batch;
  e->device_ = device;
  LFDN_CUDA_TRY(cudaStreamCreateWithFlags(&im.stream, cudaStreamNonBlocking));
  LFDN_CUDA_TRY(cudaEventCreateWithFlags(&im.ev_in, cudaEventDisableTiming));
  LFDN_CUDA_TRY(cudaEventCreateWithFlags(&im.ev_out, cudaEventDisableTiming));
  // Every kernel of the pass is loaded now, outside any stream capture (see cuda::load_all_kernels).
  if ((rc = cuda::load_all_kernels()) != kOk) return rc;

  // Hazard "engine creation race" (fixed): the uploads used to be pageable cudaMemcpy on the legacy stream
  // and the noise kernels ran on the non-blocking engine stream. A pageable host-to-device cudaMemcpy may
  // return before its DMA has landed, and nothing ordered it before the kernels, so the zero tail of the
  // small-array copy could land after (overwrite) the generated noise: zero noise, wrong scores. Now every
  // upload and the noise generation are on im.stream, in that order, the noise region is never copied,
  // and the stream is synchronised before the host buffers are released and the engine is returned.

  // ---- the memory plan (cuda/engine_plan.h): packed FP16 weights, small arrays, the device regions' sizes
  CudaEngineMemoryPlan plan;
  if ((rc = cuda_engine_memory_plan(s, max_batch, &plan)) != kOk) return rc;
  for (const CudaEngineRegion& r : cuda_engine_regions(plan, &im.buf))
    LFDN_CUDA_TRY(cudaMalloc(r.slot, r.bytes));
  e->weight_bytes_ = plan.weight_bytes;
  im.wtype = plan.wtype;
  e->workspace_bytes_ = plan.workspace_bytes;
  im.tac_ws_bytes = plan.tactic_workspace_bytes;
  LFDN_CUDA_TRY(cudaMemcpyAsync(im.buf.weights, plan.weights.data(), plan.weight_bytes, cudaMemcpyHostToDevice,
                                im.stream));
  // only [0, eps): the noise tail [eps, eps + steps * C) is written by the noise kernels
  LFDN_CUDA_TRY(cudaMemcpyAsync(im.buf.small, plan.small.data(), plan.small_upload_bytes, cudaMemcpyHostToDevice,
                                im.stream));
  LfdnModelView& v = im.view;
  cuda_engine_fill_view(s, plan, im.buf, &im.coef, &im.offsets, &im.blocks, &v);
  if ((rc = check_model_view(v)) != kOk) return rc;
  // the noise kernels (eps, DDIM eta noise), then the tactic workspace's zero fill, all on im.stream
  if ((rc = cuda_engine_init_launches(s, plan, im.buf, im.stream)) != kOk) return rc;
  LFDN_CUDA_TRY(cudaStreamSynchronize(im.stream));  // uploads, noise and memset done: host buffers (plan) may go
  for (int i = 0; tactic_bucket_bound(i) < max_batch; ++i) im.buckets.push_back(tactic_bucket_bound(i));
  im.buckets.push_back(max_batch);  // the shared buckets (lfdn/tactic_select.h) 1, 8, 64, 256, 1024, ... capped
  *out = std::move(e);
  return kOk;
}

CudaEngine::~CudaEngine() {
  if (impl_) {
    cuda::DeviceGuard guard(device_);  // free on the engine's device, then restore the caller's
    impl_.reset();
  }
}

int CudaEngine::graphs() const {
  if (!impl_) return 0;
  std::lock_guard<std::mutex> lock(impl_->mutex);  // score() may be capturing (inserting) on another thread
  return static_cast<int>(impl_->graphs.size());
}

int CudaEngine::score(const float* z0, int64_t rows, float* mse, float* mfsim, float* stage_cos, float* recon,
                      Stream stream) {
  Impl& im = *impl_;
  std::lock_guard<std::mutex> lock(im.mutex);
  if (rows < 1) return kBadSize;
  if (rows > max_batch_) return kBatchAboveWorkspace;
  if (!z0 || !mse || !mfsim || !stage_cos) return kNullPointer;
  const int64_t C = im.view.in_dim, M = im.view.num_stages;
  cuda::DeviceGuard guard(device_);
  if (!guard.ok()) return kCudaError;
  const int64_t bucket = bucket_of(rows);
  int rc = im.ensure_bucket(bucket);  // selection (if needed) runs before any capture
  if (rc != kOk) return rc;
  LFDN_CUDA_TRY(cudaEventRecord(im.ev_in, stream));
  LFDN_CUDA_TRY(cudaStreamWaitEvent(im.stream, im.ev_in, 0));
  LFDN_CUDA_TRY(cudaMemcpyAsync(im.buf.z0, z0, sizeof(float) * rows * C, cudaMemcpyDeviceToDevice, im.stream));
  if (bucket > rows)  // the bucket's graph computes `bucket` rows: the rows above the batch are zeros
    LFDN_CUDA_TRY(cudaMemsetAsync(im.buf.z0 + rows * C, 0, sizeof(float) * (bucket - rows) * C, im.stream));

  auto it = im.graphs.find(bucket);
  if (it == im.graphs.end()) {
    const ScorePassParams p = cuda_engine_pass_params(im.buf, workspace_bytes_, im.view, bucket, max_batch_, im.stream);
    const CudaPassPlan plan = im.plan_for(bucket);
    // warm-up pass outside the capture: first launches, cuBLASLt's handle and heuristics, caches
    if ((rc = score_pass_cuda_plan(p, plan)) != kOk) return rc;
    LFDN_CUDA_TRY(cudaStreamBeginCapture(im.stream, cudaStreamCaptureModeThreadLocal));
    rc = score_pass_cuda_plan(p, plan);
    cudaGraph_t graph = nullptr;
    const int end_rc = cuda::record(cudaStreamEndCapture(im.stream, &graph), "cudaStreamEndCapture");
    if (rc != kOk || end_rc != kOk) {
      if (graph) cudaGraphDestroy(graph);
      return rc != kOk ? rc : end_rc;
    }
    cudaGraphExec_t exec = nullptr;
    // Hazard "no build before CUDA 12.0": the 3-argument cudaGraphInstantiate exists only from CUDA 12.0
    // (11.x has a 5-argument one); cudaGraphInstantiateWithFlags has the same meaning from CUDA 11.4 on.
    const int inst_rc =
        cuda::record(cudaGraphInstantiateWithFlags(&exec, graph, 0), "cudaGraphInstantiateWithFlags");
    cudaGraphDestroy(graph);
    if (inst_rc != kOk) return inst_rc;
    it = im.graphs.emplace(bucket, exec).first;
  }
  LFDN_CUDA_TRY(cudaGraphLaunch(it->second, im.stream));
  LFDN_CUDA_TRY(cudaMemcpyAsync(mse, im.buf.mse, sizeof(float) * rows, cudaMemcpyDeviceToDevice, im.stream));
  LFDN_CUDA_TRY(cudaMemcpyAsync(mfsim, im.buf.mfsim, sizeof(float) * rows, cudaMemcpyDeviceToDevice, im.stream));
  LFDN_CUDA_TRY(
      cudaMemcpyAsync(stage_cos, im.buf.cos, sizeof(float) * rows * M, cudaMemcpyDeviceToDevice, im.stream));
  if (recon)
    LFDN_CUDA_TRY(cudaMemcpyAsync(recon, im.buf.recon, sizeof(float) * rows * C, cudaMemcpyDeviceToDevice, im.stream));
  LFDN_CUDA_TRY(cudaEventRecord(im.ev_out, im.stream));
  LFDN_CUDA_TRY(cudaStreamWaitEvent(stream, im.ev_out, 0));
  return kOk;
}

// ---------------------------------------------------------------- tactics

int CudaEngine::Impl::select_locked(int64_t bucket, const std::string& key, const std::vector<std::string>& only,
                                    const std::vector<std::string>& test_only, int iters,
                                    std::vector<CudaEngine::TacticSelection>* out,
                                    const CudaEngine::SelectHooks& hooks) {
  const std::vector<std::string> forced = only.empty() ? cuda_forced_tactics() : std::vector<std::string>();
  for (const LayerRef& l : layer_refs(view)) {
    if (!key.empty() && l.key != key) continue;
    const int64_t R = bucket;
    std::vector<float> hx(static_cast<size_t>(R * l.in)), hres(static_cast<size_t>(R * l.out));
    fill_normal(&hx, 1000003ull * static_cast<uint64_t>(l.in) + static_cast<uint64_t>(l.out) * 7 + R);
    fill_normal(&hres, 998244353ull + static_cast<uint64_t>(R));
    // the extreme input set: the same rows, the last one scaled by 2^40 (SiLU layer: activations ~1e12 that
    // need the FP16 range guard; GroupNorm layers: a row above 2^32 that takes the rescaled statistics)
    std::vector<float> hext(hx);
    for (int64_t k = 0; k < l.in; ++k) hext[static_cast<size_t>((R - 1) * l.in + k)] *= 1099511627776.0f;
    DevFree dx, dext, dres, dy;
    LFDN_CUDA_TRY(cudaMalloc(&dx.p, sizeof(float) * hx.size()));
    LFDN_CUDA_TRY(cudaMalloc(&dext.p, sizeof(float) * hext.size()));
    LFDN_CUDA_TRY(cudaMalloc(&dres.p, sizeof(float) * hres.size()));
    LFDN_CUDA_TRY(cudaMalloc(&dy.p, sizeof(float) * hres.size()));
    LFDN_CUDA_TRY(cudaMemcpyAsync(dx.p, hx.data(), sizeof(float) * hx.size(), cudaMemcpyHostToDevice, stream));
    LFDN_CUDA_TRY(cudaMemcpyAsync(dext.p, hext.data(), sizeof(float) * hext.size(), cudaMemcpyHostToDevice, stream));
    LFDN_CUDA_TRY(cudaMemcpyAsync(dres.p, hres.data(), sizeof(float) * hres.size(), cudaMemcpyHostToDevice, stream));
    LFDN_CUDA_TRY(cudaStreamSynchronize(stream));
    FusedLinearParams p;
    p.x = static_cast<const float*>(dx.p);
    p.out = static_cast<float*>(dy.p);
    p.residual = static_cast<const float*>(dres.p);  // the values of the in-place cases
    p.weight = l.w;
    p.wtype = wtype;  // kI8: the INT8 tactics are candidates too, verified against the INT8 model's weights
    p.bias = l.bias;
    p.gamma = l.gamma;
    p.beta = l.beta;
    p.gn_eps = view.gn_eps;
    p.prologue = l.pro;
    p.rows = R;
    p.in_dim = l.in;
    p.out_dim = l.out;
    p.workspace = buf.tactic_workspace;
    p.workspace_bytes = tac_ws_bytes;
    p.cuda_stream = stream;
    // verified as the pass runs it: without a residual, and in place where a layer of this key adds one
    CudaSelectRequest req;
    req.p = p;
    req.x_extreme = static_cast<const float*>(dext.p);
    req.modes = l.in_place ? std::vector<ResidualMode>{ResidualMode::kNone, ResidualMode::kInPlace}
                           : std::vector<ResidualMode>{ResidualMode::kNone};
    req.iters = iters;
    req.test_only = test_only;
    req.only = only.empty() ? forced : only;
    req.exclude = hooks.exclude;
    if (hooks.on_event) {
      const std::string k = l.key;
      req.on_event = [&hooks, k, bucket](const char* ev, const TacticCandidateResult& r) {
        hooks.on_event(ev, k, bucket, r);
      };
    }
    std::vector<CudaTacticRecord> recs;
    int best = -1;
    auto keep_records = [&]() {
      if (out)
        for (size_t i = 0; i < recs.size(); ++i)
          out->push_back(CudaEngine::TacticSelection{l.key, bucket, recs[i], static_cast<int>(i) == best});
    };
    int rc = cuda_select_linear(req, &recs, &best);
    if (rc == kCudaError) keep_records();  // which candidate failed, and its CUDA error
    if (rc != kOk) return rc;
    if (best < 0 && !forced.empty() && only.empty()) {
      for (const CudaTacticRecord& r : recs)
        if (r.applies) {  // a forced tactic applies here and failed: never use it, say so
          cuda::set_error("LFDN_EDGE_TACTIC: " + r.name + " failed verification on " + l.key + " at bucket " +
                          std::to_string(R) + ": " + r.error);
          return kBadArgument;
        }
      req.only.clear();  // none of the forced ones applies here: every candidate
      rc = cuda_select_linear(req, &recs, &best);
      if (rc == kCudaError) keep_records();
      if (rc != kOk) return rc;
    }
    if (best < 0) {
      std::string msg = "no CUDA tactic passed verification for " + l.key + " at bucket " + std::to_string(R) + ":";
      for (const CudaTacticRecord& r : recs) msg += " " + r.name + " (" + (r.applies ? r.error : "n/a") + ")";
      cuda::set_error(msg);
      return kBadArgument;
    }
    choice[{l.key, bucket}] = cuda_tactic_by_name(recs[best].name);
    drop_graph(bucket);
    keep_records();
  }
  return kOk;
}

int CudaEngine::Impl::ensure_bucket(int64_t bucket) {
  for (const LayerRef& l : layer_refs(view))
    if (choice.find({l.key, bucket}) == choice.end()) {
      const int rc = select_locked(bucket, l.key, {}, {}, 9, nullptr, CudaEngine::SelectHooks());
      if (rc != kOk) return rc;
    }
  return kOk;
}

CudaPassPlan CudaEngine::Impl::plan_for(int64_t bucket) const {
  CudaPassPlan plan;
  auto get = [&](int64_t in, int64_t out, Prologue pro) -> const LinearTactic* {
    auto it = choice.find({layer_key(in, out, pro), bucket});
    return it == choice.end() ? nullptr : it->second;
  };
  plan.inp = get(view.in_dim, view.width, Prologue::kSilu);
  plan.fc1 = plan.fc2 = get(view.width, view.width, Prologue::kGroupNormSilu);
  plan.out = get(view.width, view.in_dim, Prologue::kGroupNormSilu);
  plan.workspace = buf.tactic_workspace;
  plan.workspace_bytes = tac_ws_bytes;
  plan.wtype = wtype;
  return plan;
}

int CudaEngine::select_tactics(int64_t bucket, const std::vector<std::string>& test_only, int iters,
                               std::vector<TacticSelection>* out, const SelectHooks& hooks) {
  Impl& im = *impl_;
  std::lock_guard<std::mutex> lock(im.mutex);
  if (std::find(im.buckets.begin(), im.buckets.end(), bucket) == im.buckets.end()) return kBadSize;
  cuda::DeviceGuard guard(device_);
  if (!guard.ok()) return kCudaError;
  return im.select_locked(bucket, "", {}, test_only, iters, out, hooks);
}

int CudaEngine::set_tactic(const std::string& key, int64_t bucket, const std::string& name) {
  Impl& im = *impl_;
  std::lock_guard<std::mutex> lock(im.mutex);
  if (std::find(im.buckets.begin(), im.buckets.end(), bucket) == im.buckets.end()) return kBadSize;
  bool known = false;
  for (const LayerRef& l : layer_refs(im.view)) known = known || l.key == key;
  const LinearTactic* t = cuda_tactic_by_name(name);
  if (!known || t == nullptr) {
    cuda::set_error(!known ? "unknown layer key '" + key + "'" : "unknown CUDA tactic '" + name + "'");
    return kBadArgument;
  }
  cuda::DeviceGuard guard(device_);
  if (!guard.ok()) return kCudaError;
  // verified again here (one candidate: cheap), so a cached choice that fails on this device is never used
  std::vector<TacticSelection> sel;
  std::vector<std::string> test_only;
  if (t->test_only) test_only.push_back(name);
  return im.select_locked(bucket, key, {name}, test_only, 3, &sel, SelectHooks());  // stores it only when it passed
}

std::string CudaEngine::tactic(const std::string& key, int64_t bucket) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto it = impl_->choice.find({key, bucket});
  return it == impl_->choice.end() ? std::string() : std::string(it->second->name);
}

std::vector<int64_t> CudaEngine::buckets() const { return impl_->buckets; }

int64_t CudaEngine::bucket_of(int64_t rows) const {
  for (int64_t b : impl_->buckets)
    if (rows <= b) return b;
  return -1;
}

std::vector<std::string> CudaEngine::layer_keys() const {
  std::vector<std::string> k;
  for (const LayerRef& l : layer_refs(impl_->view)) k.push_back(l.key);
  return k;
}

int CudaEngine::device_info(CudaDeviceInfo* info) const {
  cuda::DeviceGuard guard(device_);
  if (!guard.ok()) return kCudaError;
  return cuda_current_device_info(info);
}

}  // namespace lfdn
