// Launch capture bindings (tests and tools/ptxsim; CUDA builds only): the real host launchers run with a
// LaunchCapture installed (lfdn/cuda_launch.h) on a virtual device, and what they would have launched comes
// back as data, with no GPU and no CUDA runtime call. Pointers are ints (virtual addresses; never
// dereferenced). Every function returns {"status": int (lfdn status code), "calls": [call, ...], ...} where a
// call is one of
//   {"kind": "kernel", "kernel": str, "grid": (x, y, z), "block": (x, y, z), "smem": int, "args": [bytes, ...]}
//   {"kind": "cublaslt_gemm", "a": int, "w": int, "d": int, "rows": int, "kp": int, "n": int}
//   {"kind": "memset", "ptr": int, "bytes": int, "value": int}
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "bindings/spec.h"
#include "cuda/engine_plan.h"
#include "lfdn/cuda_launch.h"
#include "lfdn/cuda_tactics.h"
#include "lfdn/ddim_score.h"
#include "lfdn/engine.h"
#include "lfdn/linear.h"
#include "lfdn/noise.h"
#include "lfdn/score_pass.h"

namespace lfdn_py {

namespace {


// A params dict: every key must be one of `known` (a typo is a ValueError, not a silently default field).
class Params {
 public:
  Params(const py::dict& d, const std::string& what, std::initializer_list<const char*> known) : d_(d), what_(what) {
    std::set<std::string> k(known.begin(), known.end());
    for (auto item : d) {
      const std::string key = py::str(item.first);
      if (!k.count(key)) throw py::value_error(what + ": unknown key '" + key + "'");
    }
  }
  bool has(const char* k) const { return d_.contains(k) && !d_[k].is_none(); }
  template <typename T>
  T get(const char* k, T def) const {
    return has(k) ? cast_arg<T>(d_[k], what_ + "['" + k + "']", "a number") : def;
  }
  template <typename T>
  T need(const char* k) const {
    if (!has(k)) throw py::value_error(what_ + ": '" + std::string(k) + "' is required");
    return cast_arg<T>(d_[k], what_ + "['" + k + "']", "a number");
  }
  py::handle raw(const char* k) const { return d_[k]; }

 private:
  const py::dict& d_;
  std::string what_;
};

lfdn::VirtualCudaDevice parse_device(const py::object& o) {
  lfdn::VirtualCudaDevice v;
  if (o.is_none()) return v;
  const py::dict d = cast_arg<py::dict>(o, "device", "a dict or None");
  Params p(d, "device", {"cc", "sms", "mma_ptx", "mma_binary"});
  v.cc = p.get<int>("cc", v.cc);
  v.sms = p.get<int>("sms", v.sms);
  v.mma_ptx = p.get<int>("mma_ptx", v.mma_ptx);
  v.mma_binary = p.get<int>("mma_binary", v.mma_binary);
  return v;
}

py::tuple dim3_tuple(const unsigned* v) { return py::make_tuple(v[0], v[1], v[2]); }

py::list calls_list(const lfdn::LaunchCapture& c) {
  py::list l;
  for (const lfdn::CapturedCall& x : c.calls) {
    py::dict d;
    d["kind"] = x.kind;
    if (x.kind == "kernel") {
      d["kernel"] = x.kernel;
      d["grid"] = dim3_tuple(x.grid);
      d["block"] = dim3_tuple(x.block);
      d["smem"] = x.smem;
      py::list args;
      for (const std::vector<uint8_t>& a : x.args)
        args.append(py::bytes(reinterpret_cast<const char*>(a.data()), a.size()));
      d["args"] = args;
    } else if (x.kind == "cublaslt_gemm") {
      d["a"] = x.a;
      d["w"] = x.w;
      d["d"] = x.d;
      d["rows"] = x.rows;
      d["kp"] = x.kp;
      d["n"] = x.n;
    } else {  // memset
      d["ptr"] = x.ptr;
      d["bytes"] = x.bytes;
      d["value"] = x.value;
    }
    l.append(d);
  }
  return l;
}

// Runs op() under a capture on the virtual device; {"status", "calls"}. The capture is removed afterwards
// (also when op throws).
template <typename F>
py::dict captured(const py::object& device, F op) {
  lfdn::LaunchCapture cap;
  cap.device = parse_device(device);
  int rc;
  {
    lfdn::LaunchCaptureScope scope(&cap);
    rc = op();
  }
  py::dict r;
  r["status"] = rc;
  r["calls"] = calls_list(cap);
  return r;
}

lfdn::Prologue prologue_of(const std::string& s) { return parse_prologue(s == "gn" ? std::string("gn_silu") : s); }

lfdn::FusedLinearParams linear_params(const py::dict& d) {
  Params p(d, "params", {"x", "out", "weight", "bias", "residual", "gamma", "beta", "workspace", "rows", "in_dim",
                         "out_dim", "prologue", "gn_eps", "workspace_bytes", "precision"});
  lfdn::FusedLinearParams q;
  q.x = ptr<const float>(p.get<Ptr>("x", 0));
  q.out = ptr<float>(p.get<Ptr>("out", 0));
  q.weight = ptr<const void>(p.get<Ptr>("weight", 0));
  // "fp16" (default: cuda_pack_linear) or "int8" (the packed CUDA INT8 blob of cuda_pack_linear_i8)
  const std::string prec =
      p.has("precision") ? cast_arg<std::string>(p.raw("precision"), "params['precision']", "a str") : "fp16";
  if (prec == "fp16") q.wtype = lfdn::WeightType::kF16;
  else if (prec == "int8") q.wtype = lfdn::WeightType::kI8;
  else throw py::value_error("params['precision'] must be 'fp16' or 'int8', got '" + prec + "'");
  q.bias = ptr<const float>(p.get<Ptr>("bias", 0));
  q.residual = ptr<const float>(p.get<Ptr>("residual", 0));
  q.gamma = ptr<const float>(p.get<Ptr>("gamma", 0));
  q.beta = ptr<const float>(p.get<Ptr>("beta", 0));
  q.workspace = ptr<void>(p.get<Ptr>("workspace", 0));
  q.workspace_bytes = p.get<size_t>("workspace_bytes", 0);
  q.rows = p.need<int64_t>("rows");
  q.in_dim = p.need<int64_t>("in_dim");
  q.out_dim = p.need<int64_t>("out_dim");
  q.prologue = prologue_of(p.has("prologue") ? cast_arg<std::string>(p.raw("prologue"), "params['prologue']", "a str")
                                             : std::string("none"));
  q.gn_eps = p.get<float>("gn_eps", 1e-5f);
  return q;
}

const lfdn::LinearTactic* tactic_named(const std::string& name) {
  const lfdn::LinearTactic* t = lfdn::cuda_tactic_by_name(name);
  if (t == nullptr) throw py::value_error("unknown CUDA tactic '" + name + "'");
  return t;
}

py::dict capture_tactic(const std::string& name, const py::dict& params, const py::object& device) {
  const lfdn::LinearTactic* t = tactic_named(name);
  const lfdn::FusedLinearParams p = linear_params(params);
  return captured(device, [&] { return t->run(p); });
}

py::dict capture_reference(const py::dict& params, Ptr ref, Ptr bound, const py::object& device) {
  lfdn::FusedLinearParams p = linear_params(params);
  if (p.out == nullptr) p.out = ptr<float>(ref);  // not written; satisfies the parameter check (as cuda_reference_linear)
  return captured(device, [&] { return lfdn::fused_linear_cuda_reference(p, ptr<float>(ref), ptr<float>(bound)); });
}

py::dict capture_noise(const py::dict& params, const py::object& device) {
  Params p(params, "params", {"z0", "out", "image_keys", "eps_row", "rows", "dim", "seed", "stream", "a", "b"});
  lfdn::NoiseParams q;
  q.z0 = ptr<const float>(p.get<Ptr>("z0", 0));
  q.out = ptr<float>(p.get<Ptr>("out", 0));
  q.image_keys = ptr<const uint64_t>(p.get<Ptr>("image_keys", 0));
  q.eps_row = ptr<const float>(p.get<Ptr>("eps_row", 0));
  q.rows = p.need<int64_t>("rows");
  q.dim = p.need<int64_t>("dim");
  q.seed = p.get<uint64_t>("seed", 0);
  q.stream = p.get<uint32_t>("stream", 0);
  q.a = p.get<float>("a", 0.0f);
  q.b = p.get<float>("b", 1.0f);
  return captured(device, [&] { return lfdn::noise_inject_cuda(q); });
}

py::dict capture_ddim_score(const py::dict& params, const py::object& device) {
  Params p(params, "params", {"x", "x0_hat", "z0", "noise", "rows", "dim", "update", "sqrt_ab_cur", "sqrt_1m_ab_cur",
                              "c_x0", "c_eps", "sigma", "scores", "stage_offsets", "cos_eps", "mse", "mfsim",
                              "stage_cos", "stage_weights", "score_update", "x_out"});
  lfdn::DdimScoreParams q;
  q.x = ptr<float>(p.get<Ptr>("x", 0));
  q.x0_hat = ptr<const float>(p.get<Ptr>("x0_hat", 0));
  q.z0 = ptr<const float>(p.get<Ptr>("z0", 0));
  q.noise = ptr<const float>(p.get<Ptr>("noise", 0));
  q.rows = p.need<int64_t>("rows");
  q.dim = p.need<int64_t>("dim");
  q.update = p.get<bool>("update", false);
  q.sqrt_ab_cur = p.get<float>("sqrt_ab_cur", 1.0f);
  q.sqrt_1m_ab_cur = p.get<float>("sqrt_1m_ab_cur", 1.0f);
  q.c_x0 = p.get<float>("c_x0", 1.0f);
  q.c_eps = p.get<float>("c_eps", 0.0f);
  q.sigma = p.get<float>("sigma", 0.0f);
  q.scores = p.get<bool>("scores", false);
  std::vector<int32_t> offsets;
  std::vector<float> weights;
  if (p.has("stage_offsets")) {
    offsets = cast_arg<std::vector<int32_t>>(p.raw("stage_offsets"), "params['stage_offsets']", "a sequence of int");
    q.num_stages = static_cast<int32_t>(offsets.size()) - 1;
    q.stage_offsets = offsets.data();
  }
  if (p.has("stage_weights")) {
    weights = cast_arg<std::vector<float>>(p.raw("stage_weights"), "params['stage_weights']", "a sequence of float");
    q.stage_weights = weights.data();
  }
  q.cos_eps = p.get<float>("cos_eps", 1e-8f);
  q.mse = ptr<float>(p.get<Ptr>("mse", 0));
  q.mfsim = ptr<float>(p.get<Ptr>("mfsim", 0));
  q.stage_cos = ptr<float>(p.get<Ptr>("stage_cos", 0));
  q.score_update = p.get<bool>("score_update", false);
  q.x_out = ptr<float>(p.get<Ptr>("x_out", 0));
  return captured(device, [&] { return lfdn::ddim_score_cuda(q); });
}

constexpr uint64_t kRegionAlign = 256, kRegionGap = 256;
uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

py::tuple region(const void* addr, size_t bytes) { return py::make_tuple(reinterpret_cast<Ptr>(addr), bytes); }

// The whole CUDA score pass of an engine of `spec` with `max_batch` rows, on virtual addresses from `base`.
py::dict capture_score_pass(const py::dict& spec_dict, int64_t rows, int64_t max_batch, const py::dict& plan_dict,
                            uint64_t base, const py::object& device) {
  if (max_batch < 1) throw py::value_error("max_batch must be >= 1");
  if (base == 0) throw py::value_error("base must be a non-zero address");
  ParsedSpec ps = parse_spec(spec_dict);
  const lfdn::EngineSpec& s = ps.spec;
  if (s.wtype == lfdn::WeightType::kBF16)
    throw py::value_error("the CUDA engine runs FP16 or INT8 weights (spec precision 'fp16', 'fp32' or 'int8', not "
                          "'bf16')");
  check(lfdn::check_engine_spec(s), "spec");
  Params pp(plan_dict, "plan", {"inp", "fc1", "fc2", "out"});
  auto tactic = [&](const char* k) -> const lfdn::LinearTactic* {
    if (!pp.has(k)) return nullptr;  // cuda.legacy_tile (score_pass_cuda's default)
    return tactic_named(cast_arg<std::string>(pp.raw(k), std::string("plan['") + k + "']", "a str or None"));
  };
  lfdn::CudaPassPlan plan;
  plan.inp = tactic("inp");
  plan.fc1 = tactic("fc1");
  plan.fc2 = tactic("fc2");
  plan.out = tactic("out");

  lfdn::CudaEngineMemoryPlan mp;
  check(lfdn::cuda_engine_memory_plan(s, max_batch, &mp), "cuda_engine_memory_plan");
  lfdn::CudaEngineBuffers b;
  py::dict regions;
  uint64_t at = align_up(base, kRegionAlign);
  for (const lfdn::CudaEngineRegion& r : lfdn::cuda_engine_regions(mp, &b)) {
    *r.slot = reinterpret_cast<void*>(static_cast<Ptr>(at));
    regions[r.name] = py::make_tuple(at, r.bytes);
    at = align_up(at + r.bytes + kRegionGap, kRegionAlign);
  }
  std::vector<lfdn::DdimCoefficients> coef;
  std::vector<int32_t> offsets;
  std::vector<lfdn::LfdnBlockView> blocks;
  lfdn::LfdnModelView view;
  lfdn::cuda_engine_fill_view(s, mp, b, &coef, &offsets, &blocks, &view);
  check(lfdn::check_model_view(view), "model view");
  plan.workspace = b.tactic_workspace;
  plan.workspace_bytes = mp.tactic_workspace_bytes;
  plan.wtype = mp.wtype;  // kI8 for an 'int8' spec: the weights region holds packed CUDA INT8 blobs

  // as CudaEngine::score runs it (rows: the bucket there)
  const lfdn::ScorePassParams p = lfdn::cuda_engine_pass_params(b, mp.workspace_bytes, view, rows, max_batch, nullptr);
  py::dict r = captured(device, [&] {
    const int rc = lfdn::cuda_engine_init_launches(s, mp, b, nullptr);
    return rc != lfdn::kOk ? rc : lfdn::score_pass_cuda_plan(p, plan);
  });
  py::list init;  // host contents written before the launches (CudaEngine::create's uploads)
  init.append(py::make_tuple(reinterpret_cast<Ptr>(b.weights),
                             py::bytes(reinterpret_cast<const char*>(mp.weights.data()), mp.weight_bytes)));
  init.append(py::make_tuple(reinterpret_cast<Ptr>(b.small),
                             py::bytes(reinterpret_cast<const char*>(mp.small.data()), mp.small_upload_bytes)));
  r["regions"] = regions;
  r["init"] = init;
  const int64_t C = s.in_dim, M = static_cast<int64_t>(s.stage_offsets.size()) - 1;
  const size_t n = rows > 0 ? static_cast<size_t>(rows) : 0;
  py::dict inputs, outputs;
  inputs["z0"] = region(b.z0, sizeof(float) * n * C);  // float32 (rows, in_dim): write before the launches
  outputs["mse"] = region(b.mse, sizeof(float) * n);
  outputs["mfsim"] = region(b.mfsim, sizeof(float) * n);
  outputs["cos"] = region(b.cos, sizeof(float) * n * M);
  outputs["recon"] = region(b.recon, sizeof(float) * n * C);
  r["inputs"] = inputs;
  r["outputs"] = outputs;
  r["rows"] = rows;
  r["in_dim"] = C;
  r["num_stages"] = M;
  return r;
}

}  // namespace

void bind_capture(py::module_& m) {
  m.def("_cuda_capture_tactic", &capture_tactic, py::arg("name"), py::arg("params"), py::arg("device") = py::none(),
        "Tests / tools/ptxsim: run the named CUDA tactic's run() (cuda.legacy_tile: fused_linear_cuda) under a launch "
        "capture on a virtual device (dict cc, sms, mma_ptx, mma_binary; None: cc 90, 132 SMs, 80, 90). params: "
        "x, out, weight, bias, residual, gamma, beta, workspace (ints), rows, in_dim, out_dim, prologue ('none', "
        "'silu', 'gn' or 'gn_silu'), gn_eps, workspace_bytes, precision ('fp16' or 'int8': weight is a "
        "cuda_pack_linear_i8 blob). Returns {'status', 'calls'}.");
  m.def("_cuda_capture_reference", &capture_reference, py::arg("params"), py::arg("ref"), py::arg("bound"),
        py::arg("device") = py::none(), "fused_linear_cuda_reference under a launch capture: {'status', 'calls'}.");
  m.def("_cuda_capture_noise", &capture_noise, py::arg("params"), py::arg("device") = py::none(),
        "noise_inject_cuda under a launch capture; params: the NoiseParams fields (z0, out, image_keys, eps_row, "
        "rows, dim, seed, stream, a, b). {'status', 'calls'}.");
  m.def("_cuda_capture_ddim_score", &capture_ddim_score, py::arg("params"), py::arg("device") = py::none(),
        "ddim_score_cuda under a launch capture; params: the DdimScoreParams fields (stage_offsets, stage_weights: "
        "sequences; num_stages from stage_offsets). {'status', 'calls'}.");
  m.def("_cuda_capture_score_pass", &capture_score_pass, py::arg("spec"), py::arg("rows"), py::arg("max_batch"),
        py::arg("plan"), py::arg("base"), py::arg("device") = py::none(),
        "The CUDA engine under a launch capture: its memory plan at virtual addresses from `base` (each region "
        "256-byte aligned, >= 256 bytes apart), the creation's launches (noise into eps, the tactic workspace's "
        "memset), then score_pass_cuda_plan for `rows` with plan {'inp', 'fc1', 'fc2', 'out': tactic name or None "
        "(cuda.legacy_tile)}. Returns {'status', 'calls', 'regions': {name: (addr, bytes)}, 'init': [(addr, bytes), "
        "...] (host contents to write first), 'inputs': {'z0': (addr, bytes)}, 'outputs': {'mse', 'mfsim', 'cos', "
        "'recon': (addr, bytes)}, 'rows', 'in_dim', 'num_stages'}.");
}

}  // namespace lfdn_py
