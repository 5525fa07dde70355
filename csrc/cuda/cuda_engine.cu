// CudaEngine: FP16 weights packed for the tensor-core kernel, folded biases and Philox noise on the device,
// a workspace for max_batch rows, and one CUDA graph per batch size (captured on first use).
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/util.cuh"
#include "lfdn/engine.h"
#include "lfdn/linear.h"
#include "lfdn/noise.h"

namespace lfdn {

struct CudaEngine::Impl {
  cudaStream_t stream = nullptr;
  cudaEvent_t ev_in = nullptr, ev_out = nullptr;
  void* weights = nullptr;
  float* small = nullptr;
  void* workspace = nullptr;
  float *z0_in = nullptr, *mse = nullptr, *mfsim = nullptr, *cos = nullptr, *recon = nullptr;
  std::vector<LfdnBlockView> blocks;
  std::vector<DdimCoefficients> coef;
  std::vector<int32_t> offsets;
  LfdnModelView view;
  std::map<int64_t, cudaGraphExec_t> graphs;  // guarded by mutex (capture, lookup, and graphs())
  mutable std::mutex mutex;

  ~Impl() {
    for (auto& g : graphs) cudaGraphExecDestroy(g.second);
    for (void* p : {weights, static_cast<void*>(small), workspace, static_cast<void*>(z0_in),
                    static_cast<void*>(mse), static_cast<void*>(mfsim), static_cast<void*>(cos),
                    static_cast<void*>(recon)})
      if (p) cudaFree(p);
    if (ev_in) cudaEventDestroy(ev_in);
    if (ev_out) cudaEventDestroy(ev_out);
    if (stream) cudaStreamDestroy(stream);
    cudaGetLastError();
  }
};

namespace {

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

}  // namespace

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
  const int64_t C = s.in_dim, W = s.width, D = s.depth;
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

  // ---- FP16 weights: inp, (fc1, fc2) per block, out; each 256-byte aligned (128 halves)
  const size_t n_inp = round_up(packed_linear_cuda_elems(C, W), 128);
  const size_t n_blk = round_up(packed_linear_cuda_elems(W, W), 128);
  const size_t n_out = round_up(packed_linear_cuda_elems(W, C), 128);
  const size_t n_all = n_inp + 2 * n_blk * static_cast<size_t>(D) + n_out;
  std::vector<uint16_t> host(n_all, 0);
  size_t off = 0;
  std::vector<size_t> w_off;
  auto pack = [&](const void* src, int64_t in, int64_t outd, size_t n) {
    w_off.push_back(off);
    const int r = pack_linear_cuda_host(src, s.wtype, in, outd, host.data() + off);
    off += n;
    return r;
  };
  if ((rc = pack(s.inp_w, C, W, n_inp)) != kOk) return rc;
  for (int64_t i = 0; i < D; ++i) {
    if ((rc = pack(s.fc1_w[i], W, W, n_blk)) != kOk) return rc;
    if ((rc = pack(s.fc2_w[i], W, W, n_blk)) != kOk) return rc;
  }
  if ((rc = pack(s.out_w, W, C, n_out)) != kOk) return rc;
  e->weight_bytes_ = n_all * sizeof(uint16_t);
  LFDN_CUDA_TRY(cudaMalloc(&im.weights, e->weight_bytes_));
  LFDN_CUDA_TRY(cudaMemcpyAsync(im.weights, host.data(), e->weight_bytes_, cudaMemcpyHostToDevice, im.stream));
  const uint16_t* wd = static_cast<const uint16_t*>(im.weights);

  // ---- FP32 small arrays (64-float aligned) + room for the noise generated on the device
  std::vector<float> sm;
  const SmallArrayOffsets o = pack_small_arrays(s, 64, &sm);
  const size_t o_eps = o.eps;
  LFDN_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&im.small), sm.size() * sizeof(float)));
  // only [0, eps): the noise tail [eps, eps + steps * C) is written by the kernels below
  LFDN_CUDA_TRY(cudaMemcpyAsync(im.small, sm.data(), o_eps * sizeof(float), cudaMemcpyHostToDevice, im.stream));
  for (int32_t st = 0; st < s.steps; ++st) {  // eps: stream 0; eta noise of DDIM update st: stream st + 1
    NoiseParams np;
    np.out = im.small + o_eps + static_cast<size_t>(st) * C;
    np.rows = 1;
    np.dim = C;
    np.seed = s.seed;
    np.stream = static_cast<uint32_t>(st);
    np.cuda_stream = im.stream;
    if ((rc = noise_inject_cuda(np)) != kOk) return rc;
  }
  LFDN_CUDA_TRY(cudaStreamSynchronize(im.stream));  // uploads and noise done: host buffers may go
  host.clear();
  host.shrink_to_fit();

  PackedWeights pw;
  pw.inp = wd + w_off[0];
  for (int64_t i = 0; i < D; ++i) {
    pw.fc1.push_back(wd + w_off[1 + 2 * i]);
    pw.fc2.push_back(wd + w_off[2 + 2 * i]);
  }
  pw.out = wd + w_off.back();
  im.coef = s.coef;
  im.offsets = s.stage_offsets;
  LfdnModelView& v = im.view;
  fill_model_view(s, WeightType::kF16, pw, im.small, o, im.coef, im.offsets, &im.blocks, &v);
  if ((rc = check_model_view(v)) != kOk) return rc;

  e->workspace_bytes_ = score_pass_cuda_workspace_bytes(v, max_batch);
  LFDN_CUDA_TRY(cudaMalloc(&im.workspace, e->workspace_bytes_));
  const size_t rb = sizeof(float) * static_cast<size_t>(max_batch);
  LFDN_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&im.z0_in), rb * C));
  LFDN_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&im.recon), rb * C));
  LFDN_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&im.mse), rb));
  LFDN_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&im.mfsim), rb));
  LFDN_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&im.cos), rb * v.num_stages));
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
  LFDN_CUDA_TRY(cudaEventRecord(im.ev_in, stream));
  LFDN_CUDA_TRY(cudaStreamWaitEvent(im.stream, im.ev_in, 0));
  LFDN_CUDA_TRY(cudaMemcpyAsync(im.z0_in, z0, sizeof(float) * rows * C, cudaMemcpyDeviceToDevice, im.stream));

  auto it = im.graphs.find(rows);
  if (it == im.graphs.end()) {
    ScorePassParams p;
    p.model = &im.view;
    p.z0 = im.z0_in;
    p.rows = rows;
    p.mse = im.mse;
    p.mfsim = im.mfsim;
    p.stage_cos = im.cos;
    p.recon = im.recon;
    p.workspace = im.workspace;
    p.workspace_bytes = workspace_bytes_;
    p.workspace_rows = max_batch_;
    p.cuda_stream = im.stream;
    LFDN_CUDA_TRY(cudaStreamBeginCapture(im.stream, cudaStreamCaptureModeThreadLocal));
    const int rc = score_pass_cuda(p);
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
    it = im.graphs.emplace(rows, exec).first;
  }
  LFDN_CUDA_TRY(cudaGraphLaunch(it->second, im.stream));
  LFDN_CUDA_TRY(cudaMemcpyAsync(mse, im.mse, sizeof(float) * rows, cudaMemcpyDeviceToDevice, im.stream));
  LFDN_CUDA_TRY(cudaMemcpyAsync(mfsim, im.mfsim, sizeof(float) * rows, cudaMemcpyDeviceToDevice, im.stream));
  LFDN_CUDA_TRY(
      cudaMemcpyAsync(stage_cos, im.cos, sizeof(float) * rows * M, cudaMemcpyDeviceToDevice, im.stream));
  if (recon)
    LFDN_CUDA_TRY(cudaMemcpyAsync(recon, im.recon, sizeof(float) * rows * C, cudaMemcpyDeviceToDevice, im.stream));
  LFDN_CUDA_TRY(cudaEventRecord(im.ev_out, im.stream));
  LFDN_CUDA_TRY(cudaStreamWaitEvent(stream, im.ev_out, 0));
  return kOk;
}

}  // namespace lfdn
