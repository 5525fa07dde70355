#include "bindings/spec.h"

#include <string>

namespace lfdn_py {

namespace {

py::object get(const py::dict& d, const char* key) {
  if (!d.contains(key)) throw py::key_error(std::string("engine spec lacks '") + key + "'");
  return d[key];
}

const float* vec(ParsedSpec& ps, py::handle obj, const std::string& name, std::vector<int64_t> shape) {
  F32 a = as_f32_shape(obj, name, shape);
  ps.keep.push_back(a);
  return a.data();
}

const void* weight(ParsedSpec& ps, py::handle obj, const std::string& name, int64_t out, int64_t in) {
  lfdn::WeightType wt;
  py::array a = as_weight(obj, name, out, in, &wt);
  if (wt != ps.spec.wtype)
    throw py::type_error(name + " has dtype " + std::string(py::str(a.dtype())) + " but the spec precision is " +
                         precision_name(ps.spec.wtype) + " (fp16: float16, bf16: uint16 BF16 bits, int8: int8)");
  ps.keep.push_back(a);
  return a.data();
}

py::list list_of(const py::dict& d, const char* key, int64_t n) {
  py::object o = get(d, key);
  if (!py::isinstance<py::list>(o) && !py::isinstance<py::tuple>(o))
    throw py::type_error(std::string("engine spec '") + key + "' must be a list with one entry per block");
  py::list l(o);
  if (static_cast<int64_t>(l.size()) != n)
    throw py::value_error(std::string("engine spec '") + key + "' has " + std::to_string(l.size()) +
                          " entries, depth is " + std::to_string(n));
  return l;
}

}  // namespace

ParsedSpec parse_spec(const py::dict& d) {
  ParsedSpec ps;
  lfdn::EngineSpec& s = ps.spec;
  s.in_dim = cast_arg<int64_t>(get(d, "in_dim"), "engine spec 'in_dim'", "an int");
  s.width = cast_arg<int64_t>(get(d, "width"), "engine spec 'width'", "an int");
  s.depth = cast_arg<int64_t>(get(d, "depth"), "engine spec 'depth'", "an int");
  s.steps = cast_arg<int32_t>(get(d, "steps"), "engine spec 'steps'", "an int");
  if (s.in_dim < 1 || s.width < 1 || s.depth < 0 || s.steps < 1)
    throw py::value_error("engine spec needs in_dim, width, steps >= 1 and depth >= 0");
  const std::string prec = cast_arg<std::string>(get(d, "precision"), "engine spec 'precision'", "a str");
  if (prec == "fp32") s.wtype = lfdn::WeightType::kF32;
  else if (prec == "fp16") s.wtype = lfdn::WeightType::kF16;
  else if (prec == "bf16") s.wtype = lfdn::WeightType::kBF16;
  else if (prec == "int8") s.wtype = lfdn::WeightType::kI8;
  else throw py::value_error("engine spec precision must be 'fp32', 'fp16', 'bf16' or 'int8', got '" + prec + "'");
  const bool i8 = s.wtype == lfdn::WeightType::kI8;
  const int64_t C = s.in_dim, W = s.width, D = s.depth;
  s.inp_w = weight(ps, get(d, "inp_w"), "inp_w", W, C);
  s.inp_b = vec(ps, get(d, "inp_b"), "inp_b", {W});
  py::list fc1 = list_of(d, "fc1_w", D), fc2 = list_of(d, "fc2_w", D), g1 = list_of(d, "gn1_g", D),
           b1 = list_of(d, "gn1_b", D), g2 = list_of(d, "gn2_g", D), b2 = list_of(d, "gn2_b", D),
           f2b = list_of(d, "fc2_b", D);
  for (int64_t i = 0; i < D; ++i) {
    const std::string k = "[" + std::to_string(i) + "]";
    s.fc1_w.push_back(weight(ps, fc1[i], "fc1_w" + k, W, W));
    s.fc2_w.push_back(weight(ps, fc2[i], "fc2_w" + k, W, W));
    s.gn1_g.push_back(vec(ps, g1[i], "gn1_g" + k, {W}));
    s.gn1_b.push_back(vec(ps, b1[i], "gn1_b" + k, {W}));
    s.gn2_g.push_back(vec(ps, g2[i], "gn2_g" + k, {W}));
    s.gn2_b.push_back(vec(ps, b2[i], "gn2_b" + k, {W}));
    s.fc2_b.push_back(vec(ps, f2b[i], "fc2_b" + k, {W}));
  }
  if (i8) {  // one scale per output channel of every weight (finite, > 0: check_engine_spec)
    s.inp_ws = vec(ps, get(d, "inp_w_scale"), "inp_w_scale", {W});
    s.out_ws = vec(ps, get(d, "out_w_scale"), "out_w_scale", {C});
    py::list s1 = list_of(d, "fc1_w_scale", D), s2 = list_of(d, "fc2_w_scale", D);
    for (int64_t i = 0; i < D; ++i) {
      const std::string k = "[" + std::to_string(i) + "]";
      s.fc1_ws.push_back(vec(ps, s1[i], "fc1_w_scale" + k, {W}));
      s.fc2_ws.push_back(vec(ps, s2[i], "fc2_w_scale" + k, {W}));
    }
  }
  if (D > 0) s.fc1_bias = vec(ps, get(d, "fc1_bias"), "fc1_bias", {s.steps, D, W});
  s.out_g = vec(ps, get(d, "out_g"), "out_g", {W});
  s.out_b = vec(ps, get(d, "out_b"), "out_b", {W});
  s.out_w = weight(ps, get(d, "out_w"), "out_w", C, W);
  s.out_bias = vec(ps, get(d, "out_bias"), "out_bias", {C});
  s.gn_eps = cast_arg<float>(get(d, "gn_eps"), "engine spec 'gn_eps'", "a float");
  s.cos_eps = cast_arg<float>(get(d, "cos_eps"), "engine spec 'cos_eps'", "a float");
  s.q_a = cast_arg<float>(get(d, "q_a"), "engine spec 'q_a'", "a float");
  s.q_b = cast_arg<float>(get(d, "q_b"), "engine spec 'q_b'", "a float");
  s.seed = cast_arg<uint64_t>(get(d, "seed"), "engine spec 'seed'", "a non-negative int");
  // coef: (steps - 1, 5), the reconstruction is the last x0 prediction (engines before the scoring
  // conventions), or (steps, 5), the last row maps (x, x0_hat) to the reconstruction (lfdn_edge.diffusion.DdimPlan)
  if (d.contains("coef") && !d["coef"].is_none()) {
    py::array c = py::array::ensure(d["coef"]);
    const int32_t rows = (c && c.ndim() == 2 && c.shape(0) == s.steps) ? s.steps : s.steps - 1;
    if (rows > 0) {
      F32 coef = as_f32_shape(d["coef"], "coef", {rows, 5});
      for (int32_t i = 0; i < rows; ++i)
        s.coef.push_back({coef.at(i, 0), coef.at(i, 1), coef.at(i, 2), coef.at(i, 3), coef.at(i, 4)});
    }
  } else if (s.steps > 1) {
    get(d, "coef");  // raises the missing-key error
  }
  s.stage_offsets = cast_arg<std::vector<int32_t>>(get(d, "stage_offsets"), "engine spec 'stage_offsets'", "a sequence of int");
  if (d.contains("stage_weights") && !d["stage_weights"].is_none()) {  // absent: 1/num_stages each
    py::array wa = py::array::ensure(d["stage_weights"]);
    if (!wa || wa.ndim() != 1) throw py::value_error("engine spec 'stage_weights' must be a 1-D array");
    const int64_t ns = static_cast<int64_t>(wa.shape(0));  // its length is checked against the stages below
    F32 w = as_f32_shape(d["stage_weights"], "stage_weights", {ns});
    s.stage_weights.assign(w.data(), w.data() + ns);
  }
  check(lfdn::check_engine_spec(s), "engine spec");
  return ps;
}

}  // namespace lfdn_py
