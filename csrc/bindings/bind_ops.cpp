// Python entry points of the single ops on the CPU (numpy in, numpy out), for tests and for users who
// compose their own pipelines. The engine (bind_engine.cpp) is what scoring uses.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>
#include <string>

#include "bindings/common.h"
#include "cpu/kernels.h"
#include "cpu/machine_probe.h"
#include "cpu/team.h"
#include "lfdn/ddim_score.h"
#include "lfdn/engine.h"
#include "lfdn/fp16_guard.h"
#include "lfdn/gn_stats.h"
#include "lfdn/linear.h"
#include "lfdn/noise.h"
#include "lfdn/tactic_select.h"
#include "lfdn/tactics.h"

namespace lfdn_py {

namespace {

py::array_t<float> noise_inject(py::object z0_obj, uint64_t seed, uint32_t stream, float a, float b, int64_t dim,
                                py::object keys_obj) {
  using Keys = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
  lfdn::NoiseParams p;
  F32 z0;
  Keys keys;
  int64_t rows = 1;
  if (!z0_obj.is_none()) {
    z0 = as_f32(z0_obj, "z0");
    if (z0.ndim() != 2) throw py::value_error("z0 must be a 2-D float32 array (rows, dim), got shape " + shape_str(z0));
    rows = z0.shape(0);
    dim = z0.shape(1);
    p.z0 = z0.data();
  }
  if (!keys_obj.is_none()) {
    keys = Keys::ensure(keys_obj);
    if (!keys || keys.ndim() != 1) throw py::value_error("image_keys must be a 1-D uint64 array");
    if (!z0_obj.is_none() && keys.shape(0) != rows)
      throw py::value_error("image_keys must have one key per row of z0");
    rows = keys.shape(0);
    p.image_keys = keys.data();
  }
  if (dim < 0) throw py::value_error("dim must be >= 0 (or give z0)");
  py::array_t<float> out({rows, dim});
  p.out = out.mutable_data();
  p.rows = rows;
  p.dim = dim;
  p.seed = seed;
  p.stream = stream;
  p.a = a;
  p.b = b;
  int rc;
  {
    py::gil_scoped_release nogil;
    rc = lfdn::noise_inject_cpu(p);
  }
  check(rc, "noise_inject");
  return out;
}

py::array_t<float> fused_linear(py::object x_obj, py::object w_obj, py::object bias_obj, const std::string& prologue,
                                py::object gamma_obj, py::object beta_obj, py::object residual_obj, float gn_eps,
                                int threads, const std::string& tactic, py::object wscale_obj) {
  const lfdn::LinearTactic* tac = nullptr;
  if (!tactic.empty()) {
    int n = 0;
    const lfdn::LinearTactic* table = lfdn::cpu_linear_tactics(&n);
    const int i = lfdn::cpu_tactic_index(tactic.c_str());
    if (i < 0) throw py::value_error("unknown CPU tactic '" + tactic + "' (_C.cpu_linear_tactics() lists them)");
    tac = &table[i];
  }
  F32 x = as_f32(x_obj, "x");
  if (x.ndim() != 2) throw py::value_error("x must be 2-D (rows, in_dim), got shape " + shape_str(x));
  const int64_t rows = x.shape(0), in_dim = x.shape(1);
  int64_t out_dim = 0, w_in = 0;
  lfdn::WeightType wt;
  py::array w = as_weight_2d(w_obj, "weight", &out_dim, &w_in, &wt);
  if (w_in != in_dim)
    throw py::value_error("weight must have shape (" + std::to_string(out_dim) + ", " + std::to_string(in_dim) +
                          "), got " + shape_str(w));
  if (threads < 0) throw py::value_error("threads must be >= 0");

  lfdn::FusedLinearParams p;
  p.prologue = parse_prologue(prologue);
  F32 bias, gamma, beta, residual;
  if (!bias_obj.is_none()) {
    bias = as_f32_shape(bias_obj, "bias", {out_dim});
    p.bias = bias.data();
  }
  if (p.prologue == lfdn::Prologue::kGroupNormSilu) {
    gamma = as_f32_shape(gamma_obj, "gamma", {in_dim});
    beta = as_f32_shape(beta_obj, "beta", {in_dim});
    p.gamma = gamma.data();
    p.beta = beta.data();
  }
  if (!residual_obj.is_none()) {
    residual = as_f32_shape(residual_obj, "residual", {rows, out_dim});
    p.residual = residual.data();
  }
  if (wt == lfdn::WeightType::kBF16) require_bf16_kernels("fused_linear");
  F32 wscale;
  if (wt == lfdn::WeightType::kI8) {
    if (wscale_obj.is_none())
      throw py::value_error("an int8 weight needs weight_scale: one float32 scale per output channel (out_dim,)");
    wscale = as_f32_shape(wscale_obj, "weight_scale", {out_dim});
    require_i8_kernels("fused_linear");
  } else if (!wscale_obj.is_none()) {
    throw py::value_error("weight_scale is only for int8 weights");
  }
  const size_t packed_bytes = lfdn::packed_linear_cpu_bytes(in_dim, out_dim, wt);
  lfdn::AlignedBuffer packed = lfdn::aligned_alloc_bytes(packed_bytes);
  if (wt == lfdn::WeightType::kI8) {
    check(lfdn::pack_linear_cpu_i8(static_cast<const int8_t*>(w.data()), wscale.data(), in_dim, out_dim, packed.get()),
          "fused_linear (packing: int8 weights in [-127, 127], scales finite and > 0)");
  } else {
    check(lfdn::pack_linear_cpu(w.data(), wt, in_dim, out_dim, packed.get()), "fused_linear (packing)");
  }
  const size_t ws_bytes = lfdn::fused_linear_cpu_workspace_bytes(rows, in_dim, out_dim, threads);
  lfdn::AlignedBuffer ws = lfdn::aligned_alloc_bytes(ws_bytes);
  py::array_t<float> out({rows, out_dim});
  p.x = x.data();
  p.out = out.mutable_data();
  p.weight = packed.get();
  p.wtype = wt;
  p.gn_eps = gn_eps;
  p.rows = rows;
  p.in_dim = in_dim;
  p.out_dim = out_dim;
  p.workspace = ws.get();
  p.workspace_bytes = ws_bytes;
  p.threads = threads;
  if (tac != nullptr && !tac->applies(p))
    throw py::value_error("CPU tactic '" + tactic + "' does not apply to this problem on this machine");
  int rc;
  {
    py::gil_scoped_release nogil;
    rc = tac != nullptr ? tac->run(p) : lfdn::fused_linear_cpu(p);
  }
  check(rc, "fused_linear");
  return out;
}

py::dict ddim_score(py::object x0_obj, py::object x_obj, py::object coef_obj, py::object noise_obj,
                    py::object z0_obj, py::object offsets_obj, float cos_eps) {
  F32 y = as_f32(x0_obj, "x0_hat");
  if (y.ndim() != 2) throw py::value_error("x0_hat must be 2-D (rows, dim), got shape " + shape_str(y));
  const int64_t rows = y.shape(0), dim = y.shape(1);
  lfdn::DdimScoreParams p;
  p.x0_hat = y.data();
  p.rows = rows;
  p.dim = dim;
  py::dict result;
  F32 noise, z0;
  py::array_t<float> x_new;
  if (!x_obj.is_none() || !coef_obj.is_none()) {
    if (x_obj.is_none() || coef_obj.is_none()) throw py::value_error("a DDIM update needs both x and coef");
    F32 x = as_f32_shape(x_obj, "x", {rows, dim});
    x_new = py::array_t<float>({rows, dim});
    std::memcpy(x_new.mutable_data(), x.data(), sizeof(float) * rows * dim);
    F32 c = as_f32_shape(coef_obj, "coef (sqrt_ab_cur, sqrt_1m_ab_cur, c_x0, c_eps, sigma)", {5});
    p.update = true;
    p.x = x_new.mutable_data();
    p.sqrt_ab_cur = c.at(0);
    p.sqrt_1m_ab_cur = c.at(1);
    p.c_x0 = c.at(2);
    p.c_eps = c.at(3);
    p.sigma = c.at(4);
    if (!noise_obj.is_none()) {
      noise = as_f32_shape(noise_obj, "noise", {dim});
      p.noise = noise.data();
    }
    result["x"] = x_new;
  }
  std::vector<int32_t> offsets;
  py::array_t<float> mse, mfsim, stage_cos;
  if (!z0_obj.is_none() || !offsets_obj.is_none()) {
    if (z0_obj.is_none() || offsets_obj.is_none()) throw py::value_error("scores need both z0 and stage_offsets");
    z0 = as_f32_shape(z0_obj, "z0", {rows, dim});
    offsets = cast_arg<std::vector<int32_t>>(offsets_obj, "stage_offsets", "a sequence of int");
    if (offsets.size() < 2) throw py::value_error("stage_offsets needs at least two entries (0 and dim)");
    const int64_t ns = static_cast<int64_t>(offsets.size()) - 1;
    mse = py::array_t<float>(rows);
    mfsim = py::array_t<float>(rows);
    stage_cos = py::array_t<float>({rows, ns});
    p.scores = true;
    p.z0 = z0.data();
    p.num_stages = static_cast<int32_t>(ns);
    p.stage_offsets = offsets.data();
    p.cos_eps = cos_eps;
    p.mse = mse.mutable_data();
    p.mfsim = mfsim.mutable_data();
    p.stage_cos = stage_cos.mutable_data();
    result["mse"] = mse;
    result["mfsim"] = mfsim;
    result["stage_cos"] = stage_cos;
  }
  int rc;
  {
    py::gil_scoped_release nogil;
    rc = lfdn::ddim_score_cpu(p);
  }
  check(rc, "ddim_score");
  return result;
}

}  // namespace

// ---- test hook: select_tactic_cases on the CPU with stand-in tactics that are wrong in exactly one way
namespace {
int run_correct(const lfdn::FusedLinearParams& p) { return lfdn::fused_linear_cpu(p); }
int run_wrong_in_place(const lfdn::FusedLinearParams& p) {  // right with a separate residual, wrong in place
  if (p.residual != nullptr && p.residual == p.out) {
    std::memset(p.out, 0, sizeof(float) * static_cast<size_t>(p.rows * p.out_dim));  // clobbers the residual
  }
  return lfdn::fused_linear_cpu(p);
}
int run_wrong_on_extreme_rows(const lfdn::FusedLinearParams& p) {  // drops rows above 2^20 (as a missing guard)
  const int rc = lfdn::fused_linear_cpu(p);
  for (int64_t r = 0; r < p.rows; ++r) {
    float m = 0.0f;
    for (int64_t k = 0; k < p.in_dim; ++k) m = std::max(m, std::fabs(p.x[r * p.in_dim + k]));
    if (m > 1048576.0f)
      for (int64_t n = 0; n < p.out_dim; ++n) p.out[r * p.out_dim + n] = 0.0f;
  }
  return rc;
}
int run_nan_first(const lfdn::FusedLinearParams& p) {  // a NaN where the reference is finite
  const int rc = lfdn::fused_linear_cpu(p);
  p.out[0] = std::nanf("");
  return rc;
}
bool always(const lfdn::FusedLinearParams&) { return true; }
const lfdn::LinearTactic kStandIns[] = {
    {"stand_in.correct", run_correct, always, false},
    {"stand_in.wrong_in_place", run_wrong_in_place, always, false},
    {"stand_in.wrong_on_extreme_rows", run_wrong_on_extreme_rows, always, false},
    {"stand_in.nan_output", run_nan_first, always, false},
};
}  // namespace

py::list select_stand_ins(int64_t rows, int64_t in_dim, int64_t out_dim, uint64_t seed) {
  std::vector<float> x(static_cast<size_t>(rows * in_dim)), xe, res(static_cast<size_t>(rows * out_dim)),
      out(res.size()), w(static_cast<size_t>(in_dim * out_dim)), bias(static_cast<size_t>(out_dim));
  uint64_t st = seed * 2862933555777941757ull + 3037000493ull;
  auto u = [&]() {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>((static_cast<double>(st >> 11) / 9007199254740992.0) * 2.0 - 1.0);
  };
  for (float& v : x) v = u();
  for (float& v : res) v = u();
  for (float& v : w) v = u() * 0.1f;
  for (float& v : bias) v = u();
  xe = x;
  for (int64_t k = 0; k < in_dim; ++k) xe[static_cast<size_t>((rows - 1) * in_dim + k)] *= 1099511627776.0f;
  std::vector<float> packed(lfdn::packed_linear_cpu_bytes(in_dim, out_dim, lfdn::WeightType::kF32) / sizeof(float));
  check(lfdn::pack_linear_cpu(w.data(), lfdn::WeightType::kF32, in_dim, out_dim, packed.data()), "pack");
  lfdn::FusedLinearParams p;
  p.out = out.data();
  p.weight = packed.data();
  p.bias = bias.data();
  p.prologue = lfdn::Prologue::kSilu;
  p.rows = rows;
  p.in_dim = in_dim;
  p.out_dim = out_dim;
  p.threads = 1;
  std::vector<char> ws(lfdn::fused_linear_cpu_workspace_bytes(rows, in_dim, out_dim, 1) + 64);
  p.workspace = ws.data();
  p.workspace_bytes = ws.size();
  // cases: (no residual, in place) x (normal rows, extreme last row), references in float64
  struct Case { const float* x; bool in_place; std::vector<double> ref, scale; };
  std::vector<Case> cases = {{x.data(), false, {}, {}}, {x.data(), true, {}, {}}, {xe.data(), false, {}, {}},
                             {xe.data(), true, {}, {}}};
  std::vector<lfdn::TacticReference> refs;
  for (Case& c : cases) {
    lfdn::FusedLinearParams q = p;
    q.x = c.x;
    q.residual = c.in_place ? res.data() : nullptr;
    c.ref.resize(out.size());
    c.scale.resize(out.size());
    check(lfdn::fused_linear_cpu_reference(q, c.ref.data(), c.scale.data()), "reference");
    lfdn::TacticReference t;
    t.ref = c.ref.data();
    t.scale = c.scale.data();
    t.n = static_cast<int64_t>(out.size());
    t.tol = lfdn::tactic_tolerance(lfdn::WeightType::kF32);
    t.label = std::string(c.in_place ? "in-place residual" : "no residual") + (c.x == xe.data() ? ", extreme rows" : "");
    refs.push_back(t);
  }
  lfdn::TacticRunner runner;
  runner.poison = [&] { std::fill(out.begin(), out.end(), std::nanf("")); };
  runner.prepare = [&](int c) {
    p.x = cases[static_cast<size_t>(c)].x;
    p.residual = nullptr;
    if (cases[static_cast<size_t>(c)].in_place) {
      std::copy(res.begin(), res.end(), out.begin());
      p.residual = out.data();
    }
    return static_cast<int>(lfdn::kOk);
  };
  runner.run = [&](const lfdn::LinearTactic& t) { return t.run(p); };
  runner.fetch = [&](float* host, int64_t n) {
    std::memcpy(host, out.data(), sizeof(float) * static_cast<size_t>(n));
    return static_cast<int>(lfdn::kOk);
  };
  runner.time = [](const lfdn::LinearTactic&, int reps, double* s) {
    *s = 1e-3 * reps;
    return static_cast<int>(lfdn::kOk);
  };
  lfdn::TacticSelectOptions o;
  o.warmup = 0;
  o.samples = 1;
  o.first_samples = 0;
  o.inner = 1;
  lfdn::TacticSelection sel;
  const int rc = lfdn::select_tactic_cases(kStandIns, 4, p, refs, runner, o, &sel);
  if (rc != lfdn::kOk && rc != lfdn::kUnsupported) check(rc, "select_tactic_cases");
  py::list l;
  for (const auto& r : sel.results) {
    py::dict d = candidate_dict(r);
    d["chosen"] = r.name == sel.chosen_name;
    d["worst_case"] = r.worst_case >= 0 ? py::object(py::str(refs[static_cast<size_t>(r.worst_case)].label))
                                        : py::object(py::none());
    l.append(d);
  }
  return l;
}

// The float64 CPU reference of op 2 (fused_linear_cpu_reference) for a weight given as (out, in) float32 or
// float16: (ref, scale) of shape (rows, out_dim). The reference every CPU tactic is verified against; the
// PTX-interpreter tests (tests/test_ptxsim_kernels.py) hold the CUDA kernels to it with the CUDA tolerance.
py::tuple fused_linear_reference(py::object x_obj, py::object w_obj, py::object bias_obj, py::object residual_obj,
                                 py::object gamma_obj, py::object beta_obj, const std::string& prologue, float gn_eps) {
  int64_t out_dim = 0, in_dim = 0;
  lfdn::WeightType wt;
  py::array w = as_weight_2d(w_obj, "weight", &out_dim, &in_dim, &wt);
  if (wt == lfdn::WeightType::kBF16) throw py::type_error("weight must be float32 or float16");
  F32 x = as_f32(x_obj, "x");
  if (x.ndim() != 2 || x.shape(1) != in_dim) throw py::value_error("x must be (rows, in_dim)");
  const int64_t rows = x.shape(0);
  lfdn::FusedLinearParams p;
  p.x = x.data();
  p.rows = rows;
  p.in_dim = in_dim;
  p.out_dim = out_dim;
  p.wtype = wt;
  p.gn_eps = gn_eps;
  std::vector<py::object> keep;
  auto opt = [&](py::object o, const char* name, std::vector<int64_t> shape) -> const float* {
    if (o.is_none()) return nullptr;
    F32 a = as_f32_shape(o, name, shape);
    keep.push_back(a);
    return a.data();
  };
  p.bias = opt(bias_obj, "bias", {out_dim});
  p.residual = opt(residual_obj, "residual", {rows, out_dim});
  p.gamma = opt(gamma_obj, "gamma", {in_dim});
  p.beta = opt(beta_obj, "beta", {in_dim});
  if (prologue == "none") p.prologue = lfdn::Prologue::kNone;
  else if (prologue == "silu") p.prologue = lfdn::Prologue::kSilu;
  else if (prologue == "gn") p.prologue = lfdn::Prologue::kGroupNormSilu;
  else throw py::value_error("prologue must be 'none', 'silu' or 'gn'");
  if (p.prologue == lfdn::Prologue::kGroupNormSilu && (!p.gamma || !p.beta))
    throw py::value_error("prologue 'gn' needs gamma and beta");
  std::vector<char> packed(lfdn::packed_linear_cpu_bytes(in_dim, out_dim, wt));
  check(lfdn::pack_linear_cpu(w.data(), wt, in_dim, out_dim, packed.data()), "pack_linear_cpu");
  p.weight = packed.data();
  std::vector<float> unused_out(static_cast<size_t>(rows * out_dim));  // the params check wants an output
  p.out = unused_out.data();
  py::array_t<double> ref({rows, out_dim}), scale({rows, out_dim});
  check(lfdn::fused_linear_cpu_reference(p, ref.mutable_data(), scale.mutable_data()), "fused_linear_cpu_reference");
  return py::make_tuple(ref, scale);
}

void bind_ops(py::module_& m) {
  m.def("fp16_row_scale", &lfdn::fp16_row_scale, py::arg("max_abs"),
        "The CUDA fused linear's FP16 range guard (lfdn/fp16_guard.h), the same function the kernel runs: the "
        "power of two a row of activations is multiplied by before rounding to FP16 (and its FP32 result "
        "divided by after the GEMM), given the row's max |activation|. 1 for max_abs <= 2^15, NaN or inf.");
  m.def("gn_row_stats", [](py::object x_obj, float eps) {
          F32 x = as_f32(x_obj, "x");
          if (x.ndim() != 1 || x.shape(0) < 1) throw py::value_error("x must be a non-empty 1-D float32 row");
          const lfdn::GnStats st = lfdn::gn_row_stats(x.data(), x.shape(0), eps);
          return py::make_tuple(st.inv_scale, st.mean, st.rstd);
        }, py::arg("x"), py::arg("eps") = 1e-5f,
        "GroupNorm(1) statistics of one row by the rule every kernel shares (lfdn/gn_stats.h): (inv_scale, mean, "
        "rstd), normalised value (x * inv_scale - mean) * rstd. inv_scale is 1 for rows with max |x| <= 2^32 "
        "(or non-finite), else the power of two bringing max |x| into [0.5, 1).");
  m.def("_select_stand_ins", &select_stand_ins, py::arg("rows") = 3, py::arg("in_dim") = 40,
        py::arg("out_dim") = 24, py::arg("seed") = 1,
        "Tests: select_tactic_cases (the selection every engine uses) on a CPU problem with four verification "
        "cases (no residual / in place x normal / extreme last row) and stand-in tactics that are wrong in "
        "exactly one way; their records.");
  m.def("fused_linear_reference", &fused_linear_reference, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("residual") = py::none(), py::arg("gamma") = py::none(), py::arg("beta") = py::none(),
        py::arg("prologue") = "none", py::arg("gn_eps") = 1e-5f,
        "Op 2's float64 CPU reference (the one CPU tactics are verified against): (ref, scale), each (rows, "
        "out_dim); scale = sum_k |a_k w_k| + |bias| + |residual|, the magnitude the tolerance rules scale with.");
  m.def("tactic_error_ratio", [](py::object got_obj, py::object ref_obj, py::object scale_obj, double rtol,
                                  double atol, double srel) {
          F32 got = as_f32(got_obj, "got");
          py::array_t<double, py::array::c_style | py::array::forcecast> ref(ref_obj), scale(scale_obj);
          if (got.size() != ref.size() || scale.size() != ref.size())
            throw py::value_error("got, ref and scale must have the same number of elements");
          lfdn::TacticReference tr;
          tr.ref = ref.data();
          tr.scale = scale.data();
          tr.n = static_cast<int64_t>(ref.size());
          tr.tol.rtol = rtol;
          tr.tol.atol = atol;
          tr.tol.srel = srel;
          int64_t worst = -1;
          const double q = lfdn::tactic_error_ratio(got.data(), tr, &worst);
          return py::make_tuple(q, worst);
        }, py::arg("got"), py::arg("ref"), py::arg("scale"), py::arg("rtol"), py::arg("atol"), py::arg("srel"),
        "The verification rule of every tactic selection (lfdn/tactic_select.h): (max_i |got - ref| / allowed_i, "
        "worst i), allowed_i = atol + rtol |ref_i| + srel scale_i; inf where the non-finite outputs are not exactly "
        "the reference's (NaN where it is NaN, the same infinity where it is infinite, finite elsewhere).");
  m.def("noise_inject", &noise_inject, py::arg("z0"), py::arg("seed"), py::arg("stream"), py::arg("a") = 0.0f,
        py::arg("b") = 1.0f, py::arg("dim") = -1, py::arg("image_keys") = py::none(),
        "Op 1 (CPU): out = a * z0 + b * eps, eps ~ Philox-4x32-10/Box-Muller keyed by (seed, stream, image key, "
        "index), bit-exact with lfdn_edge.noise.gaussian_noise. z0=None returns b * eps of shape (rows, dim), "
        "rows = len(image_keys) or 1.");
  m.def("fused_linear", &fused_linear, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::kw_only(),
        py::arg("prologue") = "none", py::arg("gamma") = py::none(), py::arg("beta") = py::none(),
        py::arg("residual") = py::none(), py::arg("gn_eps") = 1e-5f, py::arg("threads") = 0,
        py::arg("tactic") = "", py::arg("weight_scale") = py::none(),
        "Op 2 (CPU): [residual +] Linear(prologue(x)) + bias, prologue 'none', 'silu' or 'gn_silu' "
        "(GroupNorm with one group, FP32 statistics, affine gamma/beta, then SiLU). weight (out, in) float32 "
        "or float16 (FP16 storage, FP32 arithmetic) or uint16 (BF16 bits: BF16 weights and activations, FP32 "
        "accumulation; needs the avx512 table on a CPU with AVX512_BF16, RuntimeError otherwise) or int8 with "
        "weight_scale (out,) float32 (INT8 weights, per-row dynamic INT8 activations, INT32 accumulation; needs a "
        "table with INT8 kernels, RuntimeError otherwise); packed per call. "
        "tactic: a CPU tactic name (_C.cpu_linear_tactics()) to run instead of the default blocking (ValueError "
        "when unknown or not applicable).");
  m.def("ddim_score", &ddim_score, py::arg("x0_hat"), py::kw_only(), py::arg("x") = py::none(),
        py::arg("coef") = py::none(), py::arg("noise") = py::none(), py::arg("z0") = py::none(),
        py::arg("stage_offsets") = py::none(), py::arg("cos_eps") = 1e-8f,
        "Op 3 (CPU): DDIM update (x, coef = (sqrt_ab_cur, sqrt_1m_ab_cur, c_x0, c_eps, sigma), noise) -> 'x', "
        "and/or the scores of x0_hat against z0 (stage_offsets) -> 'mse', 'mfsim', 'stage_cos', in one pass.");
  m.def("quantize_i8", [](py::object x_obj) {
        F32 x = as_f32(x_obj, "x");
        if (x.ndim() != 2 || x.shape(1) < 1) throw py::value_error("x must be 2-D (rows, n >= 1), got " + shape_str(x));
        require_i8_kernels("quantize_i8");
        const lfdn::cpu::Kernels& kr = lfdn::cpu::kernels();
        const int64_t rows = x.shape(0), n = x.shape(1), n4 = (n + 3) / 4;
        py::array_t<int8_t> q({rows, n});
        py::array_t<float> scale(rows);
        std::vector<uint32_t> codes(static_cast<size_t>(n4));
        for (int64_t r = 0; r < rows; ++r) {
          kr.quantize_i8(x.data() + r * n, n, codes.data(), scale.mutable_data() + r);
          const uint8_t* c = reinterpret_cast<const uint8_t*>(codes.data());
          for (int64_t k = 0; k < n; ++k)
            q.mutable_at(r, k) = static_cast<int8_t>(static_cast<int>(c[k]) - kr.i8_act_offset);
          for (int64_t k = n; k < 4 * n4; ++k)  // the padding of the last quad must be the code of 0
            if (static_cast<int>(c[k]) != kr.i8_act_offset) throw std::runtime_error("quantize_i8: bad quad padding");
        }
        return py::make_tuple(q, scale);
      }, py::arg("x"),
        "The active table's INT8 row quantization (Kernels::quantize_i8, the rule of docs/NATIVE.md \"INT8\"): "
        "(q int8 (rows, n) in [-127, 127], scale float32 (rows,)), x ~= q * scale[:, None]; scale 0 for a row of "
        "zeros, NaN for a row holding inf or NaN (q all 0). RuntimeError on a table without INT8 kernels.");
  m.def("cpu_isa", []() { return std::string(lfdn::cpu::kernels().name); },
        "The CPU kernel table in use: 'avx512', 'avx2', 'neon' or 'scalar'.");
  m.def("set_cpu_isa", [](const std::string& name) {
          if (!lfdn::cpu::select_isa(name.c_str())) {
            std::string ok = "'auto'";
            for (const char* t : {"scalar", "avx2", "avx512", "neon"})
              if (lfdn::cpu::table_by_name(t) != nullptr) ok += std::string(", '") + t + "'";
            throw py::value_error("CPU kernels '" + name + "' are not available here (use " + ok + ")");
          }
        }, py::arg("name"),
        "Select the CPU kernel table for all later calls in this process: 'auto' (the best this CPU supports), "
        "'avx512', 'avx2', 'neon' or 'scalar' (where compiled in and supported).");
  m.def("probe_machine", [](int threads, int64_t read_mib, int reps) {
          if (threads < 0) throw py::value_error("threads must be >= 0 (0: the default count)");
          if (read_mib < 1 || reps < 1) throw py::value_error("read_mib and reps must be >= 1");
          lfdn::cpu::MachineProbe mp;
          int rc;
          {
            py::gil_scoped_release nogil;
            rc = lfdn::cpu::probe_machine(threads, static_cast<size_t>(read_mib) << 20, reps, &mp);
          }
          lfdn_py::check(rc, "probe_machine");
          py::dict d;
          d["read_bandwidth_gbs"] = mp.read_gbs;
          d["fma_peak_gflops"] = mp.fma_gflops;
          d["fma_isa"] = std::string(mp.fma_isa);
          d["bf16_peak_gflops"] = mp.bf16_gflops;  // 0.0 without AVX512_BF16 kernels
          d["int8_peak_gops"] = mp.int8_gops;      // 0.0 without INT8 kernels in the automatic table
          d["int8_tile_peak_gops"] = mp.int8_tile_gops;  // AMX tiles; 0.0 where not usable
          d["read_bytes"] = mp.read_bytes;
          d["threads"] = mp.threads;
          d["reps"] = reps;
          return d;
        }, py::arg("threads") = 0, py::arg("read_mib") = 512, py::arg("reps") = 3,
        "Measure the machine with the core's thread team: streaming read bandwidth of a read_mib MiB buffer (GB/s, "
        "best of reps) and the FMA peak of the widest usable kernel table (GFLOPS, register-only, best of reps).");
  m.def("cpu_threads", []() { return lfdn::cpu::default_threads(); },
        "Default number of CPU threads: $LFDN_EDGE_NUM_THREADS, else the hardware concurrency.");
}

}  // namespace lfdn_py
