// CUDA entry points (compiled only with LFDN_WITH_CUDA): raw device pointers and stream handles as ints,
// which lfdn_edge/native.py takes from torch tensors (data_ptr(), torch.cuda.current_stream().cuda_stream)
// after checking shapes, dtypes and devices. Sizes are checked again here; a null pointer is a ValueError.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "bindings/spec.h"
#include "lfdn/cuda_device.h"
#include "lfdn/cuda_tactics.h"
#include "lfdn/ddim_score.h"
#include "lfdn/engine.h"
#include "lfdn/linear.h"
#include "lfdn/noise.h"

namespace lfdn_py {

namespace {

lfdn::Stream stream_of(Ptr s) { return reinterpret_cast<lfdn::Stream>(s); }

// Every op-level entry point runs on the device of its tensors (lfdn/cuda_device.h): set for the call, the
// caller's current device restored after it. device -1: the current device as it is.
using DeviceScope = lfdn::CudaDeviceScope;

// Runs op() with `device` current (GIL released); its status, or the scope's error.
template <typename F>
int on_device(int device, F op) {
  py::gil_scoped_release nogil;
  DeviceScope scope(device);
  if (scope.status() != lfdn::kOk) return scope.status();
  return op();
}

void noise_inject(Ptr out, int64_t rows, int64_t dim, uint64_t seed, uint32_t stream, float a, float b, Ptr z0,
                  Ptr keys, Ptr eps_row, Ptr cuda_stream, int device) {
  lfdn::NoiseParams p;
  p.out = ptr<float>(out);
  p.z0 = ptr<const float>(z0);
  p.image_keys = ptr<const uint64_t>(keys);
  p.eps_row = ptr<const float>(eps_row);
  p.rows = rows;
  p.dim = dim;
  p.seed = seed;
  p.stream = stream;
  p.a = a;
  p.b = b;
  p.cuda_stream = stream_of(cuda_stream);
  check(on_device(device, [&] { return lfdn::noise_inject_cuda(p); }), "cuda_noise_inject");
}

py::array_t<uint16_t> pack_linear(py::object w_obj) {
  int64_t out_dim = 0, in_dim = 0;
  lfdn::WeightType wt;
  py::array w = as_weight_2d(w_obj, "weight", &out_dim, &in_dim, &wt);
  py::array_t<uint16_t> packed({lfdn::cuda_padded_out(out_dim), lfdn::cuda_padded_in(in_dim)});
  check(lfdn::pack_linear_cuda_host(w.data(), wt, in_dim, out_dim, packed.mutable_data()), "cuda_pack_linear");
  return packed;
}

// The weight type of an op-level CUDA call: "fp16" (cuda_pack_linear) or "int8" (the packed CUDA INT8 blob of
// cuda_pack_linear_i8, lfdn/cuda_tactics.h).
lfdn::WeightType cuda_precision(const std::string& precision) {
  if (precision == "fp16") return lfdn::WeightType::kF16;
  if (precision == "int8") return lfdn::WeightType::kI8;
  throw py::value_error("precision must be 'fp16' (cuda_pack_linear) or 'int8' (cuda_pack_linear_i8), got '" +
                        precision + "'");
}

py::array_t<uint8_t> pack_linear_i8(py::object q_obj, py::object scale_obj) {
  if (q_obj.is_none()) throw py::type_error("q must be an int8 (out, in) array, got None");
  py::array q = py::array::ensure(q_obj, py::array::c_style);
  if (!q || q.dtype().kind() != 'i' || q.dtype().itemsize() != 1 || q.ndim() != 2)
    throw py::type_error("q must be an int8 (out, in) array");
  const int64_t out_dim = q.shape(0), in_dim = q.shape(1);
  F32 scale = as_f32_shape(scale_obj, "scale", {out_dim});
  py::array_t<uint8_t> packed(static_cast<py::ssize_t>(lfdn::packed_linear_cuda_i8_bytes(in_dim, out_dim)));
  const int rc = lfdn::pack_linear_cuda_i8_host(static_cast<const int8_t*>(q.data()), scale.data(), in_dim, out_dim,
                                               packed.mutable_data());
  if (rc == lfdn::kBadArgument)
    throw py::value_error("cuda_pack_linear_i8: codes must be in [-127, 127] and scales finite and > 0");
  check(rc, "cuda_pack_linear_i8");
  return packed;
}

lfdn::FusedLinearParams linear_params(Ptr x, Ptr out, Ptr weight, int64_t rows, int64_t in_dim, int64_t out_dim,
                                      Ptr bias, Ptr residual, Ptr gamma, Ptr beta, const std::string& prologue,
                                      float gn_eps, Ptr cuda_stream, const std::string& precision = "fp16") {
  lfdn::FusedLinearParams p;
  p.x = ptr<const float>(x);
  p.out = ptr<float>(out);
  p.weight = ptr<const void>(weight);
  p.wtype = cuda_precision(precision);
  p.bias = ptr<const float>(bias);
  p.residual = ptr<const float>(residual);
  p.gamma = ptr<const float>(gamma);
  p.beta = ptr<const float>(beta);
  p.prologue = parse_prologue(prologue);
  p.gn_eps = gn_eps;
  p.rows = rows;
  p.in_dim = in_dim;
  p.out_dim = out_dim;
  p.cuda_stream = stream_of(cuda_stream);
  return p;
}

void fused_linear(Ptr x, Ptr out, Ptr weight, int64_t rows, int64_t in_dim, int64_t out_dim, Ptr bias, Ptr residual,
                  Ptr gamma, Ptr beta, const std::string& prologue, float gn_eps, Ptr cuda_stream, int device) {
  const lfdn::FusedLinearParams p =
      linear_params(x, out, weight, rows, in_dim, out_dim, bias, residual, gamma, beta, prologue, gn_eps, cuda_stream);
  check(on_device(device, [&] { return lfdn::fused_linear_cuda(p); }), "cuda_fused_linear");
}

void ddim_score(Ptr x0_hat, int64_t rows, int64_t dim, Ptr x, py::object coef_obj, Ptr noise, Ptr z0,
                py::object offsets_obj, float cos_eps, Ptr mse, Ptr mfsim, Ptr stage_cos, Ptr cuda_stream,
                int device) {
  lfdn::DdimScoreParams p;
  p.x0_hat = ptr<const float>(x0_hat);
  p.rows = rows;
  p.dim = dim;
  p.cuda_stream = stream_of(cuda_stream);
  if (!coef_obj.is_none()) {
    F32 c = as_f32_shape(coef_obj, "coef (sqrt_ab_cur, sqrt_1m_ab_cur, c_x0, c_eps, sigma)", {5});
    p.update = true;
    p.x = ptr<float>(x);
    p.noise = ptr<const float>(noise);
    p.sqrt_ab_cur = c.at(0);
    p.sqrt_1m_ab_cur = c.at(1);
    p.c_x0 = c.at(2);
    p.c_eps = c.at(3);
    p.sigma = c.at(4);
  }
  std::vector<int32_t> offsets;
  if (!offsets_obj.is_none()) {
    offsets = cast_arg<std::vector<int32_t>>(offsets_obj, "stage_offsets", "a sequence of int");
    if (offsets.size() < 2) throw py::value_error("stage_offsets needs at least two entries (0 and dim)");
    p.scores = true;
    p.z0 = ptr<const float>(z0);
    p.num_stages = static_cast<int32_t>(offsets.size() - 1);
    p.stage_offsets = offsets.data();
    p.cos_eps = cos_eps;
    p.mse = ptr<float>(mse);
    p.mfsim = ptr<float>(mfsim);
    p.stage_cos = ptr<float>(stage_cos);
  }
  check(on_device(device, [&] { return lfdn::ddim_score_cuda(p); }), "cuda_ddim_score");
}

// Selection errors (a forced tactic failing, none passing, unknown names) are kBadArgument with the reason
// in cuda_last_error(): a ValueError that says why.
void check_tactic(int rc, const std::string& what) {
  if (rc == lfdn::kBadArgument) throw py::value_error(what + ": " + lfdn::cuda_last_error());
  check(rc, what);
}

py::dict record_dict(const lfdn::CudaTacticRecord& r) {
  py::dict d;
  d["name"] = r.name;
  d["applies"] = r.applies;
  d["status"] = r.status;
  d["max_abs_err"] = r.max_abs_err;
  d["tolerance"] = r.tolerance;
  d["worst_ratio"] = r.worst_ratio;
  d["passed"] = r.passed;
  d["median_us"] = r.median_us;
  d["error"] = r.error;
  return d;
}

py::list tactic_list() {
  py::list l;
  int n = 0;
  const lfdn::LinearTactic* t = lfdn::cuda_linear_tactics(&n);
  for (int i = 0; i < n; ++i) {
    py::dict d;
    d["name"] = t[i].name;
    d["test_only"] = t[i].test_only;
    l.append(d);
  }
  return l;
}

// One named tactic on device pointers; workspace: a device buffer of cuda_tactic_workspace_bytes bytes,
// zero-filled before its first use (cuda_tactic_workspace_init), or 0 for cuda.legacy_tile.
void tactic_run(const std::string& name, Ptr x, Ptr out, Ptr weight, int64_t rows, int64_t in_dim, int64_t out_dim,
                Ptr bias, Ptr residual, Ptr gamma, Ptr beta, const std::string& prologue, float gn_eps, Ptr workspace,
                size_t workspace_bytes, Ptr cuda_stream, int device, const std::string& precision) {
  const lfdn::LinearTactic* t = lfdn::cuda_tactic_by_name(name);
  if (t == nullptr) throw py::value_error("unknown CUDA tactic '" + name + "'");
  lfdn::FusedLinearParams p = linear_params(x, out, weight, rows, in_dim, out_dim, bias, residual, gamma, beta,
                                            prologue, gn_eps, cuda_stream, precision);
  p.workspace = ptr<void>(workspace);
  p.workspace_bytes = workspace_bytes;
  bool applies = false;
  int rc = on_device(device, [&] {  // `applies` reads the capabilities of the current device: set it first
    applies = t->applies(p);
    return applies ? t->run(p) : static_cast<int>(lfdn::kOk);
  });
  check(rc, name);
  if (!applies) throw py::value_error("CUDA tactic " + name + " does not apply to this problem on this device");
}

lfdn::ResidualMode parse_residual_mode(const std::string& m) {
  if (m == "none") return lfdn::ResidualMode::kNone;
  if (m == "separate") return lfdn::ResidualMode::kSeparate;
  if (m == "in_place") return lfdn::ResidualMode::kInPlace;
  throw py::value_error("residual mode must be 'none', 'separate' or 'in_place', got '" + m + "'");
}

py::list tactic_select(Ptr x, Ptr out, Ptr weight, int64_t rows, int64_t in_dim, int64_t out_dim, Ptr bias,
                       Ptr residual, Ptr gamma, Ptr beta, const std::string& prologue, float gn_eps, int iters,
                       const std::vector<std::string>& test_only, const std::vector<std::string>& only,
                       Ptr cuda_stream, const std::vector<std::string>& modes, Ptr x_extreme,
                       const std::vector<std::string>& exclude, int device, const std::string& precision) {
  lfdn::CudaSelectRequest req;
  req.p = linear_params(x, out, weight, rows, in_dim, out_dim, bias, residual, gamma, beta, prologue, gn_eps,
                        cuda_stream, precision);
  req.x_extreme = ptr<const float>(x_extreme);
  req.modes.clear();
  for (const std::string& m : modes) req.modes.push_back(parse_residual_mode(m));
  if (req.modes.empty()) req.modes.push_back(residual ? lfdn::ResidualMode::kSeparate : lfdn::ResidualMode::kNone);
  req.iters = iters;
  req.test_only = test_only;
  req.only = only;
  req.exclude = exclude;
  std::vector<lfdn::CudaTacticRecord> recs;
  int best = -1, rc;
  {
    py::gil_scoped_release nogil;
    DeviceScope scope(device);
    rc = scope.status() != lfdn::kOk ? scope.status() : lfdn::cuda_select_linear(req, &recs, &best);
  }
  if (rc == lfdn::kCudaError && !recs.empty()) {  // a candidate's CUDA error: say which one
    for (const lfdn::CudaTacticRecord& r : recs)
      if (r.status == lfdn::kCudaError)
        throw std::runtime_error("cuda_tactic_select: candidate " + r.name + " failed: " + r.error);
  }
  check(rc, "cuda_tactic_select");
  py::list l;
  for (size_t i = 0; i < recs.size(); ++i) {
    py::dict d = record_dict(recs[i]);
    d["chosen"] = static_cast<int>(i) == best;
    l.append(d);
  }
  return l;
}

py::dict device_info_dict(const lfdn::CudaDeviceInfo& i) {
  py::dict d;
  d["name"] = i.name;
  d["compute_capability"] = std::to_string(i.major) + "." + std::to_string(i.minor);
  d["sms"] = i.sms;
  d["driver"] = i.driver;
  d["runtime"] = i.runtime;
  return d;
}

class PyCudaEngine {
 public:
  PyCudaEngine(const py::dict& spec, int64_t max_batch, int device) {
    if (max_batch < 1) throw py::value_error("max_batch must be >= 1");
    if (device < 0) throw py::value_error("device must be >= 0");
    ParsedSpec ps = parse_spec(spec);
    if (ps.spec.wtype == lfdn::WeightType::kBF16)
      throw py::value_error("CudaEngine: precision 'bf16' is a CPU option (AVX512_BF16); the CUDA engine runs FP16 "
                            "or INT8 weights (build the artifact with precision 'fp16', 'fp32' or 'int8')");
    // 'int8': the weights are packed as CUDA INT8 blobs (lfdn/cuda_tactics.h): the INT8 tactics up to 16 rows,
    // the FP16 tactics on the blobs' FP16 copies fp16(q * scale) elsewhere
    in_dim_ = ps.spec.in_dim;
    num_stages_ = static_cast<int64_t>(ps.spec.stage_offsets.size()) - 1;
    int rc;
    {
      py::gil_scoped_release nogil;
      rc = lfdn::CudaEngine::create(ps.spec, max_batch, device, &engine_);
    }
    check(rc, "CudaEngine");
  }

  void score(Ptr z0, int64_t rows, Ptr mse, Ptr mfsim, Ptr stage_cos, Ptr recon, Ptr cuda_stream) {
    if (rows > engine_->max_batch())
      throw py::value_error("batch of " + std::to_string(rows) + " rows is above the engine's workspace (max batch " +
                            std::to_string(engine_->max_batch()) + ")");
    int rc;
    {
      py::gil_scoped_release nogil;
      rc = engine_->score(ptr<const float>(z0), rows, ptr<float>(mse), ptr<float>(mfsim), ptr<float>(stage_cos),
                          ptr<float>(recon), stream_of(cuda_stream));
    }
    check(rc, "CudaEngine.score");
  }

  py::list select_tactics(int64_t bucket, const std::vector<std::string>& test_only, int iters,
                          const std::vector<std::string>& exclude, const std::string& journal) {
    std::vector<lfdn::CudaEngine::TacticSelection> sel;
    lfdn::CudaEngine::SelectHooks hooks;
    hooks.exclude = exclude;
    if (!journal.empty())
      hooks.on_event = [journal](const char* ev, const std::string& key, int64_t b,
                                 const lfdn::TacticCandidateResult& r) {
        journal_append(journal, ev, key, b, r.name, r.status, r.passed, r.note);
      };
    int rc;
    {
      py::gil_scoped_release nogil;
      rc = engine_->select_tactics(bucket, test_only, iters, &sel, hooks);
    }
    if (rc == lfdn::kCudaError)
      for (const auto& x : sel)
        if (x.record.status == lfdn::kCudaError)  // the candidate that failed, with its CUDA error
          throw std::runtime_error("CudaEngine.select_tactics: candidate " + x.record.name + " on " + x.key +
                                   " failed: " + x.record.error);
    check_tactic(rc, "CudaEngine.select_tactics");
    py::list l;
    for (const auto& s : sel) {
      py::dict d = record_dict(s.record);
      d["key"] = s.key;
      d["bucket"] = s.bucket;
      d["chosen"] = s.chosen;
      l.append(d);
    }
    return l;
  }

  void set_tactic(const std::string& key, int64_t bucket, const std::string& name) {
    int rc;
    {
      py::gil_scoped_release nogil;
      rc = engine_->set_tactic(key, bucket, name);
    }
    check_tactic(rc, "CudaEngine.set_tactic");
  }

  py::object tactic(const std::string& key, int64_t bucket) const {
    const std::string t = engine_->tactic(key, bucket);
    if (t.empty()) return py::none();
    return py::str(t);
  }

  py::dict tactics() const {  // {(key, bucket): name} of every choice made so far
    py::dict d;
    for (int64_t b : engine_->buckets())
      for (const std::string& k : engine_->layer_keys()) {
        const std::string t = engine_->tactic(k, b);
        if (!t.empty()) d[py::make_tuple(k, b)] = t;
      }
    return d;
  }

  py::dict device_info() const {
    lfdn::CudaDeviceInfo i;
    check(engine_->device_info(&i), "CudaEngine.device_info");
    return device_info_dict(i);
  }

  const lfdn::CudaEngine& engine() const { return *engine_; }
  int64_t in_dim() const { return in_dim_; }
  int64_t num_stages() const { return num_stages_; }

 private:
  std::unique_ptr<lfdn::CudaEngine> engine_;
  int64_t in_dim_ = 0, num_stages_ = 0;
};

// A recording stand-in for the CUDA device API (tests): every get / set is logged, no GPU needed.
std::vector<std::pair<std::string, int>> g_device_log;
int g_recorded_current = 0;
int recorded_get(int* d) {
  *d = g_recorded_current;
  g_device_log.emplace_back("get", g_recorded_current);
  return 0;
}
int recorded_set(int d) {
  g_device_log.emplace_back("set", d);
  g_recorded_current = d;
  return 0;
}
const lfdn::CudaDeviceApi kRecordedApi{recorded_get, recorded_set};

}  // namespace

void bind_cuda(py::module_& m) {
  m.def("_cuda_device_recorder", [](bool on, int current) {
          g_device_log.clear();
          g_recorded_current = current;
          lfdn::set_cuda_device_api(on ? &kRecordedApi : nullptr);
        }, py::arg("on"), py::arg("current") = 0,
        "Tests: replace the CUDA device API of the entry points by a recorder whose current device is `current` "
        "(on=False: the CUDA runtime again); _cuda_device_log() returns the calls.");
  m.def("_cuda_device_log", []() { return g_device_log; }, "Tests: [('get' | 'set', device), ...] recorded.");
  m.def("cuda_device_count", &lfdn::cuda_device_count, "Visible CUDA devices (0 without a driver or GPU).");
  m.def("cuda_device_error", &lfdn::cuda_device_error,
        "Why cuda_device_count() is 0 ('' when a device is visible): the CUDA error of cudaGetDeviceCount and "
        "what it means (no driver, a driver older than this module's CUDA runtime, no device).");
  m.def("cuda_noise_inject", &noise_inject, py::arg("out"), py::arg("rows"), py::arg("dim"), py::arg("seed"),
        py::arg("stream"), py::arg("a") = 0.0f, py::arg("b") = 1.0f, py::arg("z0") = 0, py::arg("image_keys") = 0,
        py::arg("eps_row") = 0, py::arg("cuda_stream") = 0, py::arg("device") = -1,
        "Op 1 on device pointers (device: their CUDA device, made current for the call; -1: the current one).");
  m.def("cuda_pack_linear", &pack_linear, py::arg("weight"),
        "Host packing of a (out, in) float32/float16 weight for cuda_fused_linear: FP16 (out_pad, in_pad).");
  m.def("cuda_pack_linear_i8", &pack_linear_i8, py::arg("q"), py::arg("scale"),
        "Host packing of INT8 weights (q: int8 (out, in) in [-127, 127], scale: float32 (out), finite > 0; "
        "builder/quantize.py) as the packed CUDA INT8 blob (uint8 bytes): FP16 copy fp16(q * scale) (out_pad, "
        "in_pad), the codes (out_pad, in_pad), the scales (out_pad). precision='int8' in the tactic calls.");
  m.def("cuda_fused_linear", &fused_linear, py::arg("x"), py::arg("out"), py::arg("weight"), py::arg("rows"),
        py::arg("in_dim"), py::arg("out_dim"), py::arg("bias") = 0, py::arg("residual") = 0, py::arg("gamma") = 0,
        py::arg("beta") = 0, py::arg("prologue") = "none", py::arg("gn_eps") = 1e-5f, py::arg("cuda_stream") = 0,
        py::arg("device") = -1, "Op 2 on device pointers (weight packed by cuda_pack_linear) on `device`.");
  m.def("cuda_ddim_score", &ddim_score, py::arg("x0_hat"), py::arg("rows"), py::arg("dim"), py::arg("x") = 0,
        py::arg("coef") = py::none(), py::arg("noise") = 0, py::arg("z0") = 0, py::arg("stage_offsets") = py::none(),
        py::arg("cos_eps") = 1e-8f, py::arg("mse") = 0, py::arg("mfsim") = 0, py::arg("stage_cos") = 0,
        py::arg("cuda_stream") = 0, py::arg("device") = -1, "Op 3 on device pointers on `device`.");
  m.def("cuda_linear_tactics", &tactic_list, "The CUDA tactics of op 2 (name, test_only), in table order.");
  m.def("cuda_tactic_workspace_bytes", &lfdn::cuda_tactic_workspace_bytes, py::arg("rows"), py::arg("in_dim"),
        py::arg("out_dim"), "Workspace bytes every CUDA tactic can run with for this problem.");
  m.def("cuda_tactic_tolerance", [](int64_t in_dim, const std::string& precision) {
          return lfdn::cuda_tactic_tolerance(in_dim, cuda_precision(precision));
        }, py::arg("in_dim"), py::arg("precision") = "fp16",
        "Relative tolerance of the verification: |y - ref| <= tol * (sum|a||w| + |bias| + |residual|); "
        "precision 'int8': 2 x (2 x 2^-11 + (K + 2) 2^-24) (the FP16 copy's weight rounding added).");
  m.def("cuda_tactic_workspace_init", [](Ptr ws, size_t bytes, Ptr s, int device) {
          check(on_device(device, [&] { return lfdn::cuda_tactic_workspace_init(ptr<void>(ws), bytes, stream_of(s)); }),
                "cuda_tactic_workspace_init");
        }, py::arg("workspace"), py::arg("bytes"), py::arg("cuda_stream") = 0, py::arg("device") = -1,
        "Zero-fill a tactic workspace.");
  m.def("cuda_tactic_run", &tactic_run, py::arg("name"), py::arg("x"), py::arg("out"), py::arg("weight"),
        py::arg("rows"), py::arg("in_dim"), py::arg("out_dim"), py::arg("bias") = 0, py::arg("residual") = 0,
        py::arg("gamma") = 0, py::arg("beta") = 0, py::arg("prologue") = "none", py::arg("gn_eps") = 1e-5f,
        py::arg("workspace") = 0, py::arg("workspace_bytes") = 0, py::arg("cuda_stream") = 0, py::arg("device") = -1,
        py::arg("precision") = "fp16",
        "Op 2 with one named CUDA tactic on device pointers (weight packed by cuda_pack_linear, or by "
        "cuda_pack_linear_i8 with precision='int8') on `device`.");
  m.def("cuda_tactic_select", &tactic_select, py::arg("x"), py::arg("out"), py::arg("weight"), py::arg("rows"),
        py::arg("in_dim"), py::arg("out_dim"), py::arg("bias") = 0, py::arg("residual") = 0, py::arg("gamma") = 0,
        py::arg("beta") = 0, py::arg("prologue") = "none", py::arg("gn_eps") = 1e-5f, py::arg("iters") = 20,
        py::arg("test_only") = std::vector<std::string>(), py::arg("only") = std::vector<std::string>(),
        py::arg("cuda_stream") = 0, py::arg("modes") = std::vector<std::string>(), py::arg("x_extreme") = 0,
        py::arg("exclude") = std::vector<std::string>(), py::arg("device") = -1, py::arg("precision") = "fp16",
        "Run every CUDA tactic on this problem (precision 'int8': weight is a cuda_pack_linear_i8 blob) (out is scratch; residual: the residual values, never aliased to "
        "out), verify against the reference kernel in every residual mode of `modes` ('none', 'separate', "
        "'in_place': the output prefilled with the residual and added to in place; default: 'separate' with a "
        "residual, else 'none') with the inputs x and, when given, x_extreme; time the passing ones on CUDA-graph "
        "replays; one record per candidate (name, applies, status, max_abs_err, tolerance, worst_ratio, passed, "
        "median_us, error, chosen). A candidate's CUDA error raises RuntimeError naming it.");
  m.def("cuda_reference_linear", [](Ptr x, Ptr ref, Ptr bound, Ptr weight, int64_t rows, int64_t in_dim,
                                    int64_t out_dim, Ptr bias, Ptr residual, Ptr gamma, Ptr beta,
                                    const std::string& prologue, float gn_eps, Ptr s, int device,
                                    const std::string& precision) {
          lfdn::FusedLinearParams p = linear_params(x, 0, weight, rows, in_dim, out_dim, bias, residual, gamma, beta,
                                                    prologue, gn_eps, s, precision);
          p.out = ptr<float>(ref);  // not written; satisfies the parameter check
          check(on_device(device, [&] { return lfdn::fused_linear_cuda_reference(p, ptr<float>(ref), ptr<float>(bound)); }),
                "cuda_reference_linear");
        }, py::arg("x"), py::arg("ref"), py::arg("bound"), py::arg("weight"), py::arg("rows"), py::arg("in_dim"),
        py::arg("out_dim"), py::arg("bias") = 0, py::arg("residual") = 0, py::arg("gamma") = 0, py::arg("beta") = 0,
        py::arg("prologue") = "none", py::arg("gn_eps") = 1e-5f, py::arg("cuda_stream") = 0, py::arg("device") = -1,
        py::arg("precision") = "fp16",
        "The reference kernel (one thread per output, FP32): ref and bound = sum|a||w| + |bias| + |residual| "
        "(precision 'int8': the weights q * scale of the cuda_pack_linear_i8 blob).");
  m.def("cublaslt_available", &lfdn::cublaslt_available, "Whether libcublasLt could be dlopen'ed here.");
  m.def("cublaslt_info", &lfdn::cublaslt_info, "Which libcublasLt file was loaded (and its version), or why none.");
  py::class_<PyCudaEngine>(m, "CudaEngine",
                           "Native CUDA scoring engine (FP16 or INT8 weights, a verified tactic per layer key and batch bucket, "
                           "a CUDA graph per bucket).")
      .def(py::init<const py::dict&, int64_t, int>(), py::arg("spec"), py::arg("max_batch"), py::arg("device") = 0)
      .def("score", &PyCudaEngine::score, py::arg("z0"), py::arg("rows"), py::arg("mse"), py::arg("mfsim"),
           py::arg("stage_cos"), py::arg("recon") = 0, py::arg("cuda_stream") = 0,
           "Score rows of z0 (device pointer, float32 (rows, in_dim)) into device outputs, ordered on cuda_stream.")
      .def("select_tactics", &PyCudaEngine::select_tactics, py::arg("bucket"),
           py::arg("test_only") = std::vector<std::string>(), py::arg("iters") = 20,
           py::arg("exclude") = std::vector<std::string>(), py::arg("journal") = "",
           "Run, verify and time every CUDA tactic for every layer key at this batch bucket (its upper bound rows) "
           "and store the fastest passing one per key; returns one record per (key, candidate): key, bucket, "
           "name, applies, status, max_abs_err, tolerance, worst_ratio, passed, median_us, error, chosen. "
           "exclude: candidates never offered; journal: a file that gets one JSON line per candidate event "
           "('start' / 'done'), so a crash names the candidate (runtime/tactic_isolation.py). A candidate's CUDA "
           "error ends the selection with a RuntimeError naming it (the context may be lost).")
      .def("set_tactic", &PyCudaEngine::set_tactic, py::arg("key"), py::arg("bucket"), py::arg("name"),
           "Store a choice (e.g. from a tactic cache) after verifying it on this device; ValueError when the key, "
           "bucket or name is unknown, or the tactic does not apply or fails verification.")
      .def("tactic", &PyCudaEngine::tactic, py::arg("key"), py::arg("bucket"), "The chosen tactic, or None.")
      .def("tactics", &PyCudaEngine::tactics, "{(layer key, bucket): tactic name} of every choice made.")
      .def("bucket_of", [](const PyCudaEngine& e, int64_t rows) { return e.engine().bucket_of(rows); },
           py::arg("rows"), "The batch bucket that serves `rows` (-1 above max_batch).")
      .def("device_info", &PyCudaEngine::device_info,
           "name, compute_capability, sms, driver and runtime (CUDA versions as ints) of the engine's device.")
      .def_property_readonly("buckets", [](const PyCudaEngine& e) { return e.engine().buckets(); })
      .def_property_readonly("layer_keys", [](const PyCudaEngine& e) { return e.engine().layer_keys(); })
      .def_property_readonly("max_batch", [](const PyCudaEngine& e) { return e.engine().max_batch(); })
      .def_property_readonly("device", [](const PyCudaEngine& e) { return e.engine().device(); })
      .def_property_readonly("weight_bytes", [](const PyCudaEngine& e) { return e.engine().weight_bytes(); })
      .def_property_readonly("workspace_bytes", [](const PyCudaEngine& e) { return e.engine().workspace_bytes(); })
      .def_property_readonly("graphs", [](const PyCudaEngine& e) { return e.engine().graphs(); })
      .def_property_readonly("in_dim", &PyCudaEngine::in_dim)
      .def_property_readonly("num_stages", &PyCudaEngine::num_stages);
}

}  // namespace lfdn_py
