// Self-test of the torch-free CPU core, for targets where Python and torch are not at hand (an AArch64 build run
// under qemu-user in CI, or a board): every op and the whole scoring pass on every kernel table this CPU
// supports, each against reference outputs written by the Python reference on another machine
// (tests/test_native_arm64.py writes them), and the SIMD tables against the scalar one.
//
//   cpu_selftest FIXTURE_DIR [--require ISA]...      exit status 0 when every check passes
//
// FIXTURE_DIR/index.txt lists `array NAME DTYPE DIM...` (DTYPE f32, u16, i32, u64; data in NAME.bin, little
// endian, row-major) and `scalar NAME VALUE`. Tolerances (|got - want| <= atol + rtol * |want|) are those of
// the pytest suite: fused linear 1e-4/1e-4 against a float64 reference (FP16 weights: the same reference on the
// FP16-rounded weights); DDIM update and scores 1e-5; the pass with FP32 weights mse rtol 1e-4, cosines and
// mfsim atol 1e-5, with FP16 weights mse rtol 2e-3, cosines atol 2e-3; SIMD vs scalar 1e-5 (ops) and mse rtol
// 1e-5, cosines atol 2e-6 (pass); noise within one float32 ulp of numpy (reported: how many are bit-identical);
// row stability (a row's scores do not depend on the batch or the thread count) bit for bit, per table.
// Tactics (lfdn/tactics.h): every blocking variant of a table bit-identical to its default on every linear case,
// the test-only wrong tactic outside the tolerance, the engine's selection (verify + time) choosing a passing
// tactic of the table even when a fake timer makes the wrong one fastest, and a pass with a different tactic per
// bucket bit-identical to the default blocking for every batch split.
// BF16 (weights and activations rounded to BF16, FP32 accumulation; only a table with BF16 kernels, i.e. avx512
// where the CPU reports AVX512_BF16): the table's f32_to_bf16 bit-identical to round to nearest even (ties,
// infinities, odd-length padding, in place); every linear case (its FP32 or FP16 weights rounded to BF16) against
// a float64 reference with the unrounded FP32 operands under the BF16 rule of lfdn/tactic_select.h,
// |got - ref| <= 1e-5 + 2^-7 x 1.01 x (sum_k |a_k w_k| + |bias| + |residual|), and 1 vs 2 threads bit for bit;
// the pass with BF16 weights against the PyTorch FP32 reference at the FP16 tolerances x 8 (mse rtol 1.6e-2,
// cosines and mfsim atol 1.6e-2) and row stability. A table without BF16 kernels must refuse BF16 (kUnsupported
// from the op and the engine); its BF16 checks are skipped with the reason (a "SKIP" line).
// INT8 (int8 weights with per-channel scales, per-row dynamic symmetric INT8 activations, exact INT32 sums; every table
// with INT8 kernels: scalar always, avx512 with AVX512_VNNI, avx2 with AVX-VNNI, neon with the dot-product extension
// (sdot, or smmla where the CPU also has I8MM); the lines "int8 kernels: ..." and, on AArch64, "cpu int8 features: ..."
// list them): the table's gemm_i8 / gemm_i8_pa against the scalar table's INT32 results for every row count up to
// mr_max, 1..37 k-quads, with and without accumulation, random and +-127 values (equal once the table's code offset x
// column sums is taken off), likewise its matrix-engine entries where usable (gemm_i8_tile / gemm_i8_tile_2p: AMX);
// quantize_i8 bit for bit against quantize_i8_rows_portable (rows of 1..37, 64, 100, 131 values: ties, zeros, -0.0,
// +-inf and NaN in the body and the tail, every byte written and nothing after it); the i8_dot_loop probe's count
// (twice the rounds, twice the operations); every INT8 linear case (in_dim 1, 3, 70, 100, 257, 515, 640, 700, 1100; 1
// to 37 rows; every prologue; residual; an all-zero row) against a float64 reference (the dequantized weights,
// unquantized activations) under the INT8 rule of lfdn/tactic_select.h, |got - ref| <= 1e-5 + 1e-5 |ref| + 0.5 x 1.01 x
// sum_k |w_k| x amax / 127 (the row's step), 1 vs 2 threads bit for bit, against the scalar table bit for bit without a
// prologue (same codes, same INT32 sums, same epilogue) and within twice the rule's step term with one, every INT8
// tactic of the table bit for bit to its default; the pass with INT8 weights against the PyTorch FP32 reference (mse
// rtol, cosines and mfsim atol 6.4e-2: see kI8PassMseRtol), against the scalar table's INT8 pass (1e-5 / 2e-6) and row
// stability bit for bit. A table without INT8 kernels must refuse INT8 (kUnsupported from the op and the engine; a
// "SKIP" line with the reason).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cpu/kernels.h"
#include "lfdn/ddim_score.h"
#include "lfdn/engine.h"
#include "lfdn/half.h"
#include "lfdn/linear.h"
#include "lfdn/tactic_select.h"
#include "lfdn/tactics.h"
#include "lfdn/noise.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace {

struct Array {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<char> bytes;
  template <class T> const T* as() const { return reinterpret_cast<const T*>(bytes.data()); }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

std::map<std::string, Array> g_arrays;
std::map<std::string, double> g_scalars;
int g_failures = 0, g_checks = 0;

bool load(const std::string& dir) {
  std::ifstream idx(dir + "/index.txt");
  if (!idx) return false;
  std::string line;
  while (std::getline(idx, line)) {
    std::istringstream ss(line);
    std::string kind, name;
    ss >> kind >> name;
    if (kind == "scalar") {
      ss >> g_scalars[name];
    } else if (kind == "array") {
      Array a;
      ss >> a.dtype;
      int64_t d;
      while (ss >> d) a.shape.push_back(d);
      const size_t es = a.dtype == "i8" ? 1 : a.dtype == "u16" ? 2 : a.dtype == "u64" ? 8 : 4;
      a.bytes.resize(static_cast<size_t>(a.numel()) * es);
      std::ifstream f(dir + "/" + name + ".bin", std::ios::binary);
      if (!f.read(a.bytes.data(), static_cast<std::streamsize>(a.bytes.size()))) {
        std::fprintf(stderr, "cannot read %s.bin\n", name.c_str());
        return false;
      }
      g_arrays[name] = std::move(a);
    }
  }
  return true;
}

const Array& arr(const std::string& name) {
  auto it = g_arrays.find(name);
  if (it == g_arrays.end()) {
    std::fprintf(stderr, "fixture lacks array %s\n", name.c_str());
    std::exit(2);
  }
  return it->second;
}
const float* f32(const std::string& name) { return arr(name).as<float>(); }
double scalar(const std::string& name) {
  auto it = g_scalars.find(name);
  if (it == g_scalars.end()) {
    std::fprintf(stderr, "fixture lacks scalar %s\n", name.c_str());
    std::exit(2);
  }
  return it->second;
}

// max over i of |got - want| / (atol + rtol |want|): <= 1 passes
void expect_close(const std::string& what, const float* got, const float* want, int64_t n, double rtol, double atol) {
  double worst = 0.0, max_abs = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double q = d / (atol + rtol * std::fabs(static_cast<double>(want[i])));
    if (!(q <= worst)) worst = q;  // NaN propagates
    if (d > max_abs) max_abs = d;
  }
  const bool ok = worst <= 1.0;
  ++g_checks;
  if (!ok) ++g_failures;
  std::printf("%s %-44s max abs err %.3e (%.2f of tolerance rtol %.0e atol %.0e)\n", ok ? "PASS" : "FAIL",
              what.c_str(), max_abs, worst, rtol, atol);
}

void expect_equal(const std::string& what, const float* a, const float* b, int64_t n) {
  const bool ok = std::memcmp(a, b, sizeof(float) * static_cast<size_t>(n)) == 0;
  ++g_checks;
  if (!ok) ++g_failures;
  std::printf("%s %-44s bit-identical\n", ok ? "PASS" : "FAIL", what.c_str());
}

void expect(const std::string& what, bool ok) {
  ++g_checks;
  if (!ok) ++g_failures;
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
}

int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  const int64_t oa = ia < 0 ? int64_t{INT32_MIN} - ia : ia, ob = ib < 0 ? int64_t{INT32_MIN} - ib : ib;
  return oa > ob ? oa - ob : ob - oa;
}

// BF16 bits of x rounded to nearest even (the rule of vcvtne2ps2bf16 and of lfdn_edge's f32_to_bf16_bits), for
// finite x and infinities; NaN stays a quiet NaN.
uint16_t bf16_rne(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((b >> 16) | 0x40u);
  return static_cast<uint16_t>((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

float bf16_value(uint16_t h) {
  const uint32_t b = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

std::vector<uint16_t> to_bf16(const float* x, int64_t n) {
  std::vector<uint16_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_rne(x[i]);
  return out;
}

// A linear fixture's weights as FP32 values (FP16 fixtures: their FP16 values).
std::vector<float> weights_f32(const Array& w) {
  std::vector<float> out(static_cast<size_t>(w.numel()));
  for (int64_t i = 0; i < w.numel(); ++i)
    out[i] = w.dtype == "u16" ? lfdn::half_to_float(w.as<uint16_t>()[i]) : w.as<float>()[i];
  return out;
}

// ---------------------------------------------------------------------------------------------------- ops
void check_noise(const std::string& isa) {
  const Array& keys = arr("noise.keys");
  const int64_t rows = keys.numel(), dim = static_cast<int64_t>(scalar("noise.dim"));
  std::vector<float> out(static_cast<size_t>(rows * dim));
  lfdn::NoiseParams p;
  p.out = out.data();
  p.rows = rows;
  p.dim = dim;
  p.seed = static_cast<uint64_t>(scalar("noise.seed"));
  p.stream = static_cast<uint32_t>(scalar("noise.stream"));
  p.a = 0.0f;
  p.b = 1.0f;
  p.image_keys = keys.as<uint64_t>();
  expect(isa + " noise: status", lfdn::noise_inject_cpu(p) == lfdn::kOk);
  const float* want = f32("noise.want");
  int64_t worst = 0, exact = 0;
  for (int64_t i = 0; i < rows * dim; ++i) {
    const int64_t u = ulp_distance(out[i], want[i]);
    worst = u > worst ? u : worst;
    exact += u == 0;
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s noise vs numpy Philox: max %lld ulp, %lld of %lld bit-identical", isa.c_str(),
                static_cast<long long>(worst), static_cast<long long>(exact), static_cast<long long>(rows * dim));
  expect(buf, worst <= 1);
}

// bf16: the case's weights rounded to BF16 (lfdn::WeightType::kBF16; the op rounds the activations too).
// *status (optional): what fused_linear_cpu / the tactic returned.
std::vector<float> run_linear(const std::string& c, int threads, const lfdn::LinearTactic* tactic = nullptr,
                              bool* applied = nullptr, bool bf16 = false, int* status = nullptr) {
  const Array& x = arr("lin." + c + ".x");
  const Array& w = arr("lin." + c + ".w");
  const int64_t rows = x.shape[0], k = x.shape[1], n = w.shape[0];
  const lfdn::WeightType wt =
      bf16 ? lfdn::WeightType::kBF16 : w.dtype == "u16" ? lfdn::WeightType::kF16 : lfdn::WeightType::kF32;
  std::vector<char> packed(lfdn::packed_linear_cpu_bytes(k, n, wt));
  if (bf16) {
    const std::vector<float> wf = weights_f32(w);
    lfdn::pack_linear_cpu(to_bf16(wf.data(), w.numel()).data(), wt, k, n, packed.data());
  } else {
    lfdn::pack_linear_cpu(w.bytes.data(), wt, k, n, packed.data());
  }
  std::vector<float> out(static_cast<size_t>(rows * n));
  std::vector<char> ws(lfdn::fused_linear_cpu_workspace_bytes(rows, k, n, threads));
  lfdn::FusedLinearParams p;
  p.x = x.as<float>();
  p.out = out.data();
  p.weight = packed.data();
  p.wtype = wt;
  p.bias = f32("lin." + c + ".b");
  p.prologue = static_cast<lfdn::Prologue>(static_cast<int>(scalar("lin." + c + ".prologue")));
  if (p.prologue == lfdn::Prologue::kGroupNormSilu) {
    p.gamma = f32("lin." + c + ".g");
    p.beta = f32("lin." + c + ".be");
  }
  if (g_arrays.count("lin." + c + ".res")) p.residual = f32("lin." + c + ".res");
  p.rows = rows;
  p.in_dim = k;
  p.out_dim = n;
  p.workspace = ws.data();
  p.workspace_bytes = ws.size();
  p.threads = threads;
  if (tactic != nullptr) {
    if (applied) *applied = tactic->applies(p);
    if (!tactic->applies(p) || tactic->run(p) != lfdn::kOk) out.assign(out.size(), NAN);
    return out;
  }
  const int rc = lfdn::fused_linear_cpu(p);
  if (status) *status = rc;
  if (rc != lfdn::kOk) out.assign(out.size(), NAN);
  return out;
}

std::vector<std::string> linear_cases() {
  std::vector<std::string> cases;
  for (const auto& kv : g_arrays) {
    const std::string& name = kv.first;
    if (name.rfind("lin.", 0) == 0 && name.size() > 6 && name.compare(name.size() - 2, 2, ".x") == 0)
      cases.push_back(name.substr(4, name.size() - 6));
  }
  return cases;
}

void check_linear(const std::string& isa, std::map<std::string, std::vector<float>>* scalar_out) {
  for (const std::string& c : linear_cases()) {
    const std::vector<float> got = run_linear(c, 2);
    expect_close(isa + " fused_linear[" + c + "] vs torch", got.data(), f32("lin." + c + ".want"),
                 static_cast<int64_t>(got.size()), 1e-4, 1e-4);
    const std::vector<float> one = run_linear(c, 1);
    expect_equal(isa + " fused_linear[" + c + "] 1 vs 2 threads", one.data(), got.data(),
                 static_cast<int64_t>(got.size()));
    if (isa == "scalar") {
      (*scalar_out)[c] = got;
    } else {
      expect_close(isa + " fused_linear[" + c + "] vs scalar table", got.data(), (*scalar_out)[c].data(),
                   static_cast<int64_t>(got.size()), 1e-5, 1e-5);
    }
  }
}

void check_ddim(const std::string& isa) {
  const Array& y = arr("ddim.y");
  const int64_t rows = y.shape[0], dim = y.shape[1];
  const Array& offs = arr("ddim.offsets");
  const float* coef = f32("ddim.coef");
  std::vector<float> x(f32("ddim.x"), f32("ddim.x") + rows * dim);
  std::vector<float> mse(rows), mfsim(rows), cos(static_cast<size_t>(rows * (offs.numel() - 1)));
  lfdn::DdimScoreParams p;
  p.x0_hat = y.as<float>();
  p.rows = rows;
  p.dim = dim;
  p.update = true;
  p.x = x.data();
  p.noise = f32("ddim.noise");
  p.sqrt_ab_cur = coef[0];
  p.sqrt_1m_ab_cur = coef[1];
  p.c_x0 = coef[2];
  p.c_eps = coef[3];
  p.sigma = coef[4];
  p.scores = true;
  p.z0 = f32("ddim.z0");
  p.stage_offsets = offs.as<int32_t>();
  p.num_stages = static_cast<int>(offs.numel() - 1);
  p.mse = mse.data();
  p.mfsim = mfsim.data();
  p.stage_cos = cos.data();
  expect(isa + " ddim_score: status", lfdn::ddim_score_cpu(p) == lfdn::kOk);
  expect_close(isa + " ddim update x vs torch", x.data(), f32("ddim.want_x"), rows * dim, 1e-5, 1e-5);
  expect_close(isa + " ddim mse vs torch", mse.data(), f32("ddim.want_mse"), rows, 1e-5, 0);
  expect_close(isa + " ddim stage cosines vs torch", cos.data(), f32("ddim.want_cos"), rows * p.num_stages, 1e-4, 1e-6);
  expect_close(isa + " ddim mfsim vs torch", mfsim.data(), f32("ddim.want_mfsim"), rows, 1e-4, 1e-6);
}

// ---------------------------------------------------------------------------------------------------- pass
struct SpecHolder {
  lfdn::EngineSpec spec;
  std::vector<std::vector<uint16_t>> bf16;  // the BF16 weights of a "bf16" spec (converted from the FP32 ones)
};

std::unique_ptr<SpecHolder> make_spec(const std::string& prec) {
  std::unique_ptr<SpecHolder> h(new SpecHolder);
  lfdn::EngineSpec& s = h->spec;
  const std::string p = "spec.";
  s.in_dim = static_cast<int64_t>(scalar(p + "in_dim"));
  s.width = static_cast<int64_t>(scalar(p + "width"));
  s.depth = static_cast<int64_t>(scalar(p + "depth"));
  s.steps = static_cast<int32_t>(scalar(p + "steps"));
  s.wtype = prec == "fp16"   ? lfdn::WeightType::kF16
            : prec == "bf16" ? lfdn::WeightType::kBF16
            : prec == "int8" ? lfdn::WeightType::kI8
                             : lfdn::WeightType::kF32;
  const std::string w = "spec." + (prec == "bf16" ? std::string("fp32") : prec) + ".";
  h->bf16.reserve(static_cast<size_t>(2 * s.depth + 2));  // no reallocation: the spec keeps pointers into it
  auto weight = [&](const std::string& name) -> const void* {
    const Array& a = arr(w + name);
    if (prec != "bf16") return a.bytes.data();
    h->bf16.push_back(to_bf16(a.as<float>(), a.numel()));
    return h->bf16.back().data();
  };
  s.inp_w = weight("inp_w");
  s.inp_b = f32(p + "inp_b");
  if (prec == "int8") {  // one FP32 scale per output channel of each weight
    s.inp_ws = f32(w + "inp_w_scale");
    s.out_ws = f32(w + "out_w_scale");
  }
  for (int64_t i = 0; i < s.depth; ++i) {
    const std::string k = "." + std::to_string(i);
    s.fc1_w.push_back(weight("fc1_w" + k));
    s.fc2_w.push_back(weight("fc2_w" + k));
    if (prec == "int8") {
      s.fc1_ws.push_back(f32(w + "fc1_w_scale" + k));
      s.fc2_ws.push_back(f32(w + "fc2_w_scale" + k));
    }
    s.gn1_g.push_back(f32(p + "gn1_g" + k));
    s.gn1_b.push_back(f32(p + "gn1_b" + k));
    s.gn2_g.push_back(f32(p + "gn2_g" + k));
    s.gn2_b.push_back(f32(p + "gn2_b" + k));
    s.fc2_b.push_back(f32(p + "fc2_b" + k));
  }
  if (s.depth > 0) s.fc1_bias = f32(p + "fc1_bias");
  s.out_g = f32(p + "out_g");
  s.out_b = f32(p + "out_b");
  s.out_w = weight("out_w");
  s.out_bias = f32(p + "out_bias");
  s.gn_eps = static_cast<float>(scalar(p + "gn_eps"));
  s.cos_eps = static_cast<float>(scalar(p + "cos_eps"));
  s.q_a = static_cast<float>(scalar(p + "q_a"));
  s.q_b = static_cast<float>(scalar(p + "q_b"));
  s.seed = static_cast<uint64_t>(scalar(p + "seed"));
  const float* coef = f32(p + "coef");
  const int32_t coef_rows = static_cast<int32_t>(arr(p + "coef").numel() / 5);  // steps - 1 or steps
  for (int32_t i = 0; i < coef_rows; ++i)
    s.coef.push_back({coef[5 * i], coef[5 * i + 1], coef[5 * i + 2], coef[5 * i + 3], coef[5 * i + 4]});
  const Array& offs = arr(p + "stage_offsets");
  s.stage_offsets.assign(offs.as<int32_t>(), offs.as<int32_t>() + offs.numel());
  return h;
}

struct Scores {
  std::vector<float> mse, mfsim, cos;
};

// The pass with INT8 weights (per-channel symmetric) and per-row dynamic INT8 activations against the PyTorch
// FP32 reference: the FP16 tolerances x 32 = the BF16 ones x 4 (mse rtol, cosines and mfsim atol 6.4e-2; half an
// INT8 step is 2^-8 of the row's largest |value|, so smaller values keep fewer bits than BF16's 2^-9 relative
// rounding). Measured on every table (scalar, avx512, neon): mse 2.1e-3 relative, cosines 1.95e-2, mfsim 5.2e-3.
// A SIMD table's INT8 pass against the scalar table's: the FP32 pass's 1e-5 / 2e-6 (the same codes and INT32 sums;
// only the FP32 prologues differ, measured 1.2e-7 mse, 3e-8 cosines).
constexpr double kI8PassMseRtol = 6.4e-2, kI8PassCosAtol = 6.4e-2;
constexpr double kI8PassVsScalarMseRtol = 1e-5, kI8PassVsScalarCosAtol = 2e-6;

Scores score(const lfdn::CpuEngine& e, const float* z0, int64_t rows, int64_t stages) {
  Scores s;
  s.mse.resize(rows);
  s.mfsim.resize(rows);
  s.cos.resize(static_cast<size_t>(rows * stages));
  if (e.score(z0, rows, s.mse.data(), s.mfsim.data(), s.cos.data(), nullptr) != lfdn::kOk) {
    s.mse.assign(rows, NAN);
    s.mfsim.assign(rows, NAN);
  }
  return s;
}

void check_pass(const std::string& isa, const std::string& prec, std::map<std::string, Scores>* scalar_out) {
  std::unique_ptr<SpecHolder> h = make_spec(prec);
  const Array& z = arr("pass.z0");
  const int64_t rows = z.shape[0], C = z.shape[1];
  const int64_t stages = static_cast<int64_t>(h->spec.stage_offsets.size()) - 1;
  std::unique_ptr<lfdn::CpuEngine> e2, e1;
  const bool ok = lfdn::CpuEngine::create(h->spec, rows, 2, &e2) == lfdn::kOk &&
                  lfdn::CpuEngine::create(h->spec, rows, 1, &e1) == lfdn::kOk;
  expect(isa + " pass " + prec + ": engines created", ok);
  if (!ok) return;
  const Scores full = score(*e2, z.as<float>(), rows, stages);
  const std::string t = isa + " pass " + prec;
  // BF16: the FP16 tolerances x 8 = 2^(11-8), the ratio of the two formats' unit roundoffs (test_native_bf16.py)
  const double mse_rtol = prec == "int8" ? kI8PassMseRtol : prec == "bf16" ? 1.6e-2 : prec == "fp16" ? 2e-3 : 1e-4;
  const double cos_atol = prec == "int8" ? kI8PassCosAtol : prec == "bf16" ? 1.6e-2 : prec == "fp16" ? 2e-3 : 1e-5;
  expect_close(t + " mse vs PyTorch reference", full.mse.data(), f32("pass.want_mse"), rows, mse_rtol, 0);
  expect_close(t + " stage cosines vs PyTorch", full.cos.data(), f32("pass.want_cos"), rows * stages, 0, cos_atol);
  expect_close(t + " mfsim vs PyTorch reference", full.mfsim.data(), f32("pass.want_mfsim"), rows, 0, cos_atol);
  // row stability: rows [a, b) scored alone with one thread give the same bits as inside the full batch
  const int64_t ranges[][2] = {{0, 1}, {3, 10}, {1, 14}, {10, rows}};
  bool same = true;
  for (const auto& r : ranges) {
    const int64_t a = r[0], b = r[1] < rows ? r[1] : rows;
    const Scores part = score(*e1, z.as<float>() + a * C, b - a, stages);
    same = same && std::memcmp(part.mse.data(), full.mse.data() + a, 4 * (b - a)) == 0 &&
           std::memcmp(part.mfsim.data(), full.mfsim.data() + a, 4 * (b - a)) == 0 &&
           std::memcmp(part.cos.data(), full.cos.data() + a * stages, 4 * (b - a) * stages) == 0;
  }
  expect(t + " row stability (batch 1/7/13/rest, 1 vs 2 threads): bit-identical", same);
  if (prec == "bf16") return;  // one table computes BF16: no other table to compare with
  if (isa == "scalar") {
    (*scalar_out)[prec] = full;
  } else {
    const Scores& s = (*scalar_out)[prec];
    const bool i8 = prec == "int8";
    expect_close(t + " mse vs scalar table", full.mse.data(), s.mse.data(), rows,
                 i8 ? kI8PassVsScalarMseRtol : 1e-5, 0);
    expect_close(t + " stage cosines vs scalar table", full.cos.data(), s.cos.data(), rows * stages, 0,
                 i8 ? kI8PassVsScalarCosAtol : 2e-6);
  }
}

void check_tactics(const std::string& isa) {
  int n = 0;
  const lfdn::LinearTactic* table = lfdn::cpu_linear_tactics(&n);
  int variants = 0;
  bool same = true, wrong_differs = true;
  for (const std::string& c : linear_cases()) {
    const std::vector<float> base = run_linear(c, 2);
    for (int i = 0; i < n; ++i) {
      if (isa != lfdn::cpu_tactic_isa(i)) continue;
      bool applied = false;
      const std::vector<float> got = run_linear(c, 2, &table[i], &applied);
      if (!applied) continue;
      if (table[i].test_only) {
        wrong_differs = wrong_differs && std::memcmp(got.data(), base.data(), 4 * got.size()) != 0;
        continue;
      }
      ++variants;
      same = same && std::memcmp(got.data(), base.data(), 4 * got.size()) == 0;
    }
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s tactics: %d (tactic, case) runs bit-identical to the default blocking", isa.c_str(),
                variants);
  expect(buf, same && variants > 0);
  expect(isa + " tactics: the test-only wrong tactic differs on every case", wrong_differs);

  // the engine's selection on its own layers: candidates verified and (fake) timed, the wrong one fastest
  std::unique_ptr<SpecHolder> h = make_spec("fp32");
  const Array& z = arr("pass.z0");
  const int64_t rows = z.shape[0];
  const int64_t stages = static_cast<int64_t>(h->spec.stage_offsets.size()) - 1;
  std::unique_ptr<lfdn::CpuEngine> e;
  if (lfdn::CpuEngine::create(h->spec, rows, 2, &e) != lfdn::kOk) {
    expect(isa + " tactics: engine created", false);
    return;
  }
  const Scores ref = score(*e, z.as<float>(), rows, stages);
  lfdn::TacticSelectOptions o;
  o.test_only = {"cpu.test.drop_last_kblock"};
  o.warmup = 0;
  o.samples = 2;
  o.first_samples = 1;
  auto fake = [&](const lfdn::LinearTactic& t, int reps, double* seconds) {
    *seconds = reps * (t.test_only ? 1e-9 : 1e-3 + 1e-6 * (&t - table));
    return static_cast<int>(lfdn::kOk);
  };
  bool chosen_ok = true, rejected = true;
  for (int b = 0; b < e->num_buckets(); ++b)
    for (int k = 0; k < lfdn::CpuEngine::kLayerKinds; ++k) {
      lfdn::TacticSelection sel;
      const int rc = e->select(b, k, o, &sel, fake);
      chosen_ok = chosen_ok && rc == lfdn::kOk && sel.chosen >= 0 && !table[sel.chosen].test_only &&
                  isa == lfdn::cpu_tactic_isa(sel.chosen);
      for (const auto& r : sel.results)
        if (r.test_only) rejected = rejected && r.applies && !r.passed && r.max_err_ratio > 1.0;
      // a different tactic per (bucket, kind): rotate through the table's applicable ones
      int pick = -1, seen = 0;
      for (int i = 0; i < n; ++i)
        if (!table[i].test_only && isa == lfdn::cpu_tactic_isa(i) && table[i].applies(e->tactic_problem(b, k)))
          if (seen++ == (3 * b + k) % 3 || pick < 0) pick = i;
      chosen_ok = chosen_ok && e->set_tactic(b, k, pick) == lfdn::kOk;
    }
  expect(isa + " tactics: selection chose a verified tactic of the table in every (bucket, layer)", chosen_ok);
  expect(isa + " tactics: the wrong tactic rejected by verification although timed fastest", rejected);
  const Scores full = score(*e, z.as<float>(), rows, stages);
  bool stable = std::memcmp(full.mse.data(), ref.mse.data(), 4 * rows) == 0 &&
                std::memcmp(full.cos.data(), ref.cos.data(), 4 * rows * stages) == 0;
  const int64_t C = z.shape[1];
  const int64_t ranges[][2] = {{0, 1}, {1, 9}, {9, rows}};
  for (const auto& r : ranges) {
    const int64_t a = r[0], bnd = r[1] < rows ? r[1] : rows;
    if (bnd <= a) continue;
    const Scores part = score(*e, z.as<float>() + a * C, bnd - a, stages);
    stable = stable && std::memcmp(part.mse.data(), full.mse.data() + a, 4 * (bnd - a)) == 0 &&
             std::memcmp(part.cos.data(), full.cos.data() + a * stages, 4 * (bnd - a) * stages) == 0;
  }
  expect(isa + " tactics: pass with a tactic per bucket bit-identical to the default, every batch split", stable);
}

// ---------------------------------------------------------------------------------------------------- BF16
// Why the active table has no BF16 kernels (printed with the skip).
std::string bf16_unavailable(const std::string& isa) {
  if (isa != "avx512") return "the " + isa + " table has no BF16 kernels (only AVX512_BF16's vdpbf16ps computes BF16)";
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512bf16")) return "this CPU does not report AVX512_BF16";
#endif
  return "the BF16 kernels are not compiled in (the compiler lacks -mavx512bf16)";
}

// float64 reference of linear case c with FP32 operands (the unrounded activations after the prologue and the
// case's weights), and per output the scale of the BF16 rule: sum_k |a_k w_k| + |bias| (+ |residual|).
void linear_reference_f64(const std::string& c, std::vector<double>* ref, std::vector<double>* scale) {
  const Array& xa = arr("lin." + c + ".x");
  const Array& wa = arr("lin." + c + ".w");
  const int64_t rows = xa.shape[0], K = xa.shape[1], N = wa.shape[0];
  const std::vector<float> w = weights_f32(wa);
  const float* b = f32("lin." + c + ".b");
  const int prologue = static_cast<int>(scalar("lin." + c + ".prologue"));
  const float* res = g_arrays.count("lin." + c + ".res") ? f32("lin." + c + ".res") : nullptr;
  const double eps = lfdn::FusedLinearParams().gn_eps;
  auto silu = [](double v) { return v / (1.0 + std::exp(-v)); };
  ref->assign(static_cast<size_t>(rows * N), 0.0);
  scale->assign(static_cast<size_t>(rows * N), 0.0);
  std::vector<double> a(static_cast<size_t>(K));
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = xa.as<float>() + r * K;
    double mean = 0.0, var = 0.0;
    for (int64_t k = 0; k < K; ++k) mean += x[k];
    mean /= static_cast<double>(K);
    for (int64_t k = 0; k < K; ++k) var += (x[k] - mean) * (x[k] - mean);
    const double rstd = 1.0 / std::sqrt(var / static_cast<double>(K) + eps);
    for (int64_t k = 0; k < K; ++k)
      a[k] = prologue == 2 ? silu((x[k] - mean) * rstd * f32("lin." + c + ".g")[k] + f32("lin." + c + ".be")[k])
             : prologue == 1 ? silu(x[k])
                             : static_cast<double>(x[k]);
    for (int64_t n = 0; n < N; ++n) {
      double acc = b[n], mag = std::fabs(static_cast<double>(b[n]));
      for (int64_t k = 0; k < K; ++k) {
        acc += a[k] * w[n * K + k];
        mag += std::fabs(a[k] * w[n * K + k]);
      }
      if (res) {
        acc += res[r * N + n];
        mag += std::fabs(static_cast<double>(res[r * N + n]));
      }
      (*ref)[r * N + n] = acc;
      (*scale)[r * N + n] = mag;
    }
  }
}

// The BF16 rule (lfdn/tactic_select.h, test_native_bf16.py): |got - ref| <= 1e-5 + 2^-7 x 1.01 x scale.
constexpr double kBf16Atol = 1e-5, kBf16Srel = 1.01 / 128.0;

void expect_bf16_rule(const std::string& what, const float* got, const std::vector<double>& ref,
                      const std::vector<double>& scale) {
  double worst = 0.0, max_abs = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
    const double q = d / (kBf16Atol + kBf16Srel * scale[i]);
    if (!(q <= worst)) worst = q;  // NaN propagates
    if (d > max_abs) max_abs = d;
  }
  const bool ok = worst <= 1.0;
  ++g_checks;
  if (!ok) ++g_failures;
  std::printf("%s %-44s max abs err %.3e (%.2f of tolerance 1e-5 + 2^-7 x 1.01 x sum|a w|)\n", ok ? "PASS" : "FAIL",
              what.c_str(), max_abs, worst);
}

// BF16 weights and activations (FP32 accumulation) on the active table: the conversion kernel against the
// scalar round-to-nearest-even, every linear case against the float64 FP32-operand reference under the BF16
// rule, 1 vs 2 threads, and the whole pass with BF16 weights against the PyTorch FP32 reference. A table
// without BF16 kernels must refuse BF16 (kUnsupported: never computed another way); the checks then skip with
// the reason.
void check_bf16(const std::string& isa) {
  const lfdn::cpu::Kernels& t = lfdn::cpu::kernels();
  if (t.gemm_bf16 == nullptr) {
    int rc = lfdn::kOk;
    run_linear(linear_cases().front(), 2, nullptr, nullptr, true, &rc);
    std::unique_ptr<SpecHolder> h = make_spec("bf16");
    std::unique_ptr<lfdn::CpuEngine> e;
    const int rc_engine = lfdn::CpuEngine::create(h->spec, 4, 1, &e);
    expect(isa + " bf16: fused_linear and the engine refuse BF16 (kUnsupported) without BF16 kernels",
           rc == lfdn::kUnsupported && rc_engine == lfdn::kUnsupported);
    std::printf("SKIP %s bf16 ops and pass: %s\n", isa.c_str(), bf16_unavailable(isa).c_str());
    return;
  }
  const lfdn::TacticTolerance tol = lfdn::tactic_tolerance(lfdn::WeightType::kBF16);
  expect(isa + " bf16: the tactic rule is this program's (rtol 0, atol 1e-5, srel 2^-7 x 1.01)",
         tol.rtol == 0.0 && tol.atol == kBf16Atol && tol.srel == kBf16Srel);

  // conversion: ties, signed zeros, infinities, FLT_MAX (rounds to inf), tails of every length class, odd
  // lengths (dst[n] = 0, the k-pair padding) and in place
  std::vector<float> v = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f, -2.5f, 0.0f, -0.0f,
                          INFINITY, -INFINITY, 3.4028235e38f, -1.0f - 0x1p-8f, 65504.0f, 1e-30f};
  uint32_t st = 12345;
  while (v.size() < 75) {
    st = st * 1664525u + 1013904223u;
    v.push_back((static_cast<float>(st >> 8) / 16777216.0f - 0.5f) * std::ldexp(1.0f, static_cast<int>(st % 40) - 20));
  }
  bool conv_ok = true;
  for (int64_t n : {1, 2, 15, 16, 17, 31, 32, 33, 64, 75}) {
    std::vector<uint16_t> got(static_cast<size_t>(n + 1), 0xFFFFu);
    t.f32_to_bf16(v.data(), n, got.data());
    std::vector<float> inplace(v.begin(), v.begin() + n + (n % 2));
    t.f32_to_bf16(inplace.data(), n, reinterpret_cast<uint16_t*>(inplace.data()));
    const uint16_t* ip = reinterpret_cast<const uint16_t*>(inplace.data());
    for (int64_t i = 0; i < n; ++i) conv_ok = conv_ok && got[i] == bf16_rne(v[i]) && ip[i] == got[i];
    if (n % 2) conv_ok = conv_ok && got[n] == 0 && ip[n] == 0;
  }
  expect(isa + " bf16: f32_to_bf16 = round to nearest even, padding, in place (bit-identical)", conv_ok);

  for (const std::string& c : linear_cases()) {
    int rc = -1;
    const std::vector<float> got = run_linear(c, 2, nullptr, nullptr, true, &rc);
    const std::vector<float> one = run_linear(c, 1, nullptr, nullptr, true);
    std::vector<double> ref, sc;
    linear_reference_f64(c, &ref, &sc);
    expect_bf16_rule(isa + " bf16 fused_linear[" + c + "] vs FP32 operands", got.data(), ref, sc);
    expect_equal(isa + " bf16 fused_linear[" + c + "] 1 vs 2 threads", one.data(), got.data(),
                 static_cast<int64_t>(got.size()));
    // the rule is not met by accident: these are the BF16 products (the FP32 op gives other bits)
    const std::vector<float> f32op = run_linear(c, 2);
    expect(isa + " bf16 fused_linear[" + c + "]: status ok, BF16 arithmetic (differs from the FP32 op)",
           rc == lfdn::kOk && std::memcmp(got.data(), f32op.data(), 4 * got.size()) != 0);
  }
  std::map<std::string, Scores> unused;
  check_pass(isa, "bf16", &unused);
}


// ---------------------------------------------------------------------------------------------------- INT8
// Why the active table has no INT8 kernels (printed with the skip).
std::string i8_unavailable(const std::string& isa) {
  if (isa == "neon") {
#if defined(__aarch64__) && defined(__linux__)
    if ((getauxval(AT_HWCAP) & (1UL << 20)) == 0)  // HWCAP_ASIMDDP
      return "this CPU does not report the dot-product extension (HWCAP_ASIMDDP: sdot); a Cortex-A53/A72 class core";
#endif
    return "the sdot kernels are not compiled in (the compiler lacks -march=armv8.2-a+dotprod)";
  }
  if (isa == "avx512") {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512vnni")) return "this CPU does not report AVX512_VNNI (vpdpbusd)";
#endif
    return "the VNNI kernels are not compiled in (the compiler lacks -mavx512vnni)";
  }
  return "the " + isa + " table has no INT8 kernels on this build and CPU";
}

std::vector<std::string> i8_cases() {
  std::vector<std::string> cases;
  for (const auto& kv : g_arrays) {
    const std::string& name = kv.first;
    if (name.rfind("lin8.", 0) == 0 && name.size() > 7 && name.compare(name.size() - 2, 2, ".x") == 0)
      cases.push_back(name.substr(5, name.size() - 7));
  }
  return cases;
}

int i8_prologue(const std::string& c) { return static_cast<int>(scalar("lin8." + c + ".prologue")); }

// INT8 linear case c (int8 weights + per-channel scales packed by pack_linear_cpu_i8) on the active table, or with
// a tactic. *status (optional): what packing and then fused_linear_cpu / the tactic returned.
std::vector<float> run_linear_i8(const std::string& c, int threads, const lfdn::LinearTactic* tactic = nullptr,
                                 bool* applied = nullptr, int* status = nullptr) {
  const Array& x = arr("lin8." + c + ".x");
  const Array& q = arr("lin8." + c + ".q");
  const int64_t rows = x.shape[0], k = x.shape[1], n = q.shape[0];
  std::vector<char> packed(lfdn::packed_linear_cpu_bytes(k, n, lfdn::WeightType::kI8));
  std::vector<float> out(static_cast<size_t>(rows * n), NAN);
  int rc = lfdn::pack_linear_cpu_i8(q.as<int8_t>(), f32("lin8." + c + ".s"), k, n, packed.data());
  if (status) *status = rc;
  if (rc != lfdn::kOk) return out;
  std::vector<char> ws(lfdn::fused_linear_cpu_workspace_bytes(rows, k, n, threads));
  lfdn::FusedLinearParams p;
  p.x = x.as<float>();
  p.out = out.data();
  p.weight = packed.data();
  p.wtype = lfdn::WeightType::kI8;
  p.bias = f32("lin8." + c + ".b");
  p.prologue = static_cast<lfdn::Prologue>(i8_prologue(c));
  if (p.prologue == lfdn::Prologue::kGroupNormSilu) {
    p.gamma = f32("lin8." + c + ".g");
    p.beta = f32("lin8." + c + ".be");
  }
  if (g_arrays.count("lin8." + c + ".res")) p.residual = f32("lin8." + c + ".res");
  p.rows = rows;
  p.in_dim = k;
  p.out_dim = n;
  p.workspace = ws.data();
  p.workspace_bytes = ws.size();
  p.threads = threads;
  if (tactic != nullptr) {
    if (applied) *applied = tactic->applies(p);
    if (!tactic->applies(p) || tactic->run(p) != lfdn::kOk) out.assign(out.size(), NAN);
    return out;
  }
  rc = lfdn::fused_linear_cpu(p);
  if (status) *status = rc;
  if (rc != lfdn::kOk) out.assign(out.size(), NAN);
  return out;
}

// float64 reference of INT8 case c: the prologue in float64, the dequantized weights q * scale exactly, the
// activations unquantized; per output the scale of the INT8 rule: sum_k |w_k| x the row's step amax / 127
// (amax of the float64 prologue output), what rounding each activation to its step can move the output by twice.
void i8_reference_f64(const std::string& c, std::vector<double>* ref, std::vector<double>* scale) {
  const Array& xa = arr("lin8." + c + ".x");
  const Array& qa = arr("lin8." + c + ".q");
  const int64_t rows = xa.shape[0], K = xa.shape[1], N = qa.shape[0];
  const int8_t* q = qa.as<int8_t>();
  const float* ws = f32("lin8." + c + ".s");
  const float* b = f32("lin8." + c + ".b");
  const float* g = f32("lin8." + c + ".g");
  const float* be = f32("lin8." + c + ".be");
  const int prologue = i8_prologue(c);
  const float* res = g_arrays.count("lin8." + c + ".res") ? f32("lin8." + c + ".res") : nullptr;
  const double eps = lfdn::FusedLinearParams().gn_eps;
  auto silu = [](double v) { return v / (1.0 + std::exp(-v)); };
  ref->assign(static_cast<size_t>(rows * N), 0.0);
  scale->assign(static_cast<size_t>(rows * N), 0.0);
  std::vector<double> a(static_cast<size_t>(K)), w(static_cast<size_t>(K));
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = xa.as<float>() + r * K;
    double mean = 0.0, var = 0.0;
    for (int64_t k = 0; k < K; ++k) mean += x[k];
    mean /= static_cast<double>(K);
    for (int64_t k = 0; k < K; ++k) var += (x[k] - mean) * (x[k] - mean);
    const double rstd = 1.0 / std::sqrt(var / static_cast<double>(K) + eps);
    double amax = 0.0;
    for (int64_t k = 0; k < K; ++k) {
      a[k] = prologue == 2 ? silu((x[k] - mean) * rstd * g[k] + be[k]) : prologue == 1 ? silu(x[k]) : x[k];
      amax = std::fabs(a[k]) > amax ? std::fabs(a[k]) : amax;  // (not fmax: GCC 12 for AArch64 ICEs on it)
    }
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) w[k] = static_cast<double>(q[n * K + k]) * static_cast<double>(ws[n]);
      double acc = b[n], wsum = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        acc += a[k] * w[k];
        wsum += std::fabs(w[k]);
      }
      if (res) acc += res[r * N + n];
      (*ref)[r * N + n] = acc;
      (*scale)[r * N + n] = wsum * amax / 127.0;
    }
  }
}

// The INT8 rule of lfdn/tactic_select.h (tactic_tolerance(kI8)): |got - ref| <= 1e-5 + 1e-5 |ref| + 0.5 x 1.01
// x sum_k |w_k| x step; `steps` scales the last term (2: two results each within half a step of the reference).
constexpr double kI8Atol = 1e-5, kI8Rtol = 1e-5, kI8Srel = 0.5 * 1.01;

void expect_i8_rule(const std::string& what, const float* got, const std::vector<double>& ref,
                    const std::vector<double>& scale, double steps = 1.0) {
  double worst = 0.0, max_abs = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
    const double q = d / (kI8Atol + kI8Rtol * std::fabs(ref[i]) + steps * kI8Srel * scale[i]);
    if (!(q <= worst)) worst = q;  // NaN propagates
    if (d > max_abs) max_abs = d;
  }
  const bool ok = worst <= 1.0;
  ++g_checks;
  if (!ok) ++g_failures;
  std::printf("%s %-44s max abs err %.3e (%.2f of tolerance 1e-5 + 1e-5|ref| + %.1f x 0.505 x sum|w| x step)\n",
              ok ? "PASS" : "FAIL", what.c_str(), max_abs, worst, steps);
}

uint32_t lcg(uint32_t* st) {
  *st = *st * 1664525u + 1013904223u;
  return *st >> 8;
}

// The table's gemm_i8 and gemm_i8_pa against the scalar table's on the same values, every row count up to mr_max,
// k-quad counts 1..37, with and without accumulation, random and extreme (+-127) codes and weights: the INT32
// results must be equal once the table's code offset x the column sums of the block is taken off.
void check_i8_gemm(const std::string& isa, const lfdn::cpu::Kernels& t) {
  const lfdn::cpu::Kernels& sc = lfdn::cpu::scalar_kernels();
  const int nr = lfdn::cpu::kNR, off = t.i8_act_offset;
  uint32_t st = 777;
  int calls = 0;
  bool same = true;
  for (int pattern = 0; pattern < 3; ++pattern)
    for (int mr = 1; mr <= t.mr_max; ++mr)
      for (int64_t kc4 : {1, 2, 3, 4, 5, 8, 17, 37}) {
        const int64_t lda4 = kc4 + 3;
        std::vector<int8_t> qa(static_cast<size_t>(mr * kc4 * 4)), wb(static_cast<size_t>(kc4 * nr * 4));
        auto val = [&]() -> int8_t {
          if (pattern == 1) return static_cast<int8_t>(lcg(&st) & 1 ? 127 : -127);
          if (pattern == 2) return static_cast<int8_t>(-127);
          return static_cast<int8_t>(static_cast<int>(lcg(&st) % 255) - 127);
        };
        for (auto& v : qa) v = val();
        for (auto& v : wb) v = pattern == 2 ? static_cast<int8_t>(lcg(&st) & 1 ? 127 : -127) : val();
        // signed codes (scalar) and the table's codes, in the row layout (stride lda4) and k-quad-major
        std::vector<uint32_t> a_s(static_cast<size_t>(mr * lda4), 0xDEADBEEFu), a_t(a_s.size(), 0xDEADBEEFu);
        std::vector<uint32_t> pa_s(static_cast<size_t>(mr * kc4)), pa_t(pa_s.size());
        for (int r = 0; r < mr; ++r)
          for (int64_t k = 0; k < kc4; ++k) {
            uint32_t vs = 0, vt = 0;
            for (int b = 0; b < 4; ++b) {
              const int q = qa[(r * kc4 + k) * 4 + b];
              vs |= static_cast<uint32_t>(static_cast<uint8_t>(q)) << (8 * b);
              vt |= static_cast<uint32_t>(static_cast<uint8_t>(q + off)) << (8 * b);
            }
            a_s[r * lda4 + k] = vs;
            a_t[r * lda4 + k] = vt;
            pa_s[k * mr + r] = vs;
            pa_t[k * mr + r] = vt;
          }
        std::vector<uint32_t> bw(static_cast<size_t>(kc4 * nr));
        std::memcpy(bw.data(), wb.data(), wb.size());
        std::vector<int32_t> colsum(nr, 0);
        for (int64_t k = 0; k < kc4; ++k)
          for (int j = 0; j < nr; ++j)
            for (int b = 0; b < 4; ++b) colsum[j] += wb[(k * nr + j) * 4 + b];
        std::vector<int32_t> c0(static_cast<size_t>(mr * nr));
        for (auto& v : c0) v = static_cast<int32_t>(lcg(&st) % 2000001) - 1000000;
        for (int accumulate = 0; accumulate < 2; ++accumulate)
          for (int pa = 0; pa < 2; ++pa) {
            if (pa && t.gemm_i8_pa == nullptr) continue;
            std::vector<int32_t> cs = c0, ct = c0;
            if (pa) {
              sc.gemm_i8_pa(mr, kc4, pa_s.data(), bw.data(), cs.data(), accumulate);
              t.gemm_i8_pa(mr, kc4, pa_t.data(), bw.data(), ct.data(), accumulate);
            } else {
              sc.gemm_i8(mr, kc4, a_s.data(), lda4, bw.data(), cs.data(), accumulate);
              t.gemm_i8(mr, kc4, a_t.data(), lda4, bw.data(), ct.data(), accumulate);
            }
            ++calls;
            for (int r = 0; r < mr; ++r)
              for (int j = 0; j < nr; ++j) same = same && ct[r * nr + j] - off * colsum[j] == cs[r * nr + j];
          }
      }
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "%s int8: gemm_i8 / gemm_i8_pa = scalar table's INT32 results (%d calls: mr 1..%d, 1..37 k-quads, "
                "accumulate, +-127)", isa.c_str(), calls, t.mr_max);
  expect(buf, same && calls > 0);
}

// The matrix-engine entries (gemm_i8_tile, gemm_i8_tile_2p: x86 AMX tiles where usable) against the scalar
// table's gemm_i8 on the same codes: one and two panels (bstride / cstride apart), every row count up to their
// caps, k-quad counts below, at and above the 16-quad tile depth, with and without accumulation.
void check_i8_tile(const std::string& isa, const lfdn::cpu::Kernels& t) {
  if (t.gemm_i8_tile == nullptr && t.gemm_i8_tile_2p == nullptr) return;
  const lfdn::cpu::Kernels& sc = lfdn::cpu::scalar_kernels();
  const int nr = lfdn::cpu::kNR, off = t.i8_act_offset;
  uint32_t st = 99;
  int calls = 0;
  bool same = true;
  for (int two = 0; two < 2; ++two) {
    const int cap = two ? t.mr_max_i8_tile_2p : t.mr_max_i8_tile;
    if ((two ? (void*)t.gemm_i8_tile_2p : (void*)t.gemm_i8_tile) == nullptr) continue;
    for (int mr = 1; mr <= cap; ++mr)
      for (int64_t kc4 : {1, 15, 16, 17, 37, 48}) {
        const int64_t lda4 = kc4 + 5, np = two ? 2 : 1, bstride = kc4 * nr + 16, cstride = mr * nr + 16;
        std::vector<uint32_t> a_s(static_cast<size_t>(mr * lda4), 0xDEADBEEFu), a_t(a_s.size(), 0xDEADBEEFu);
        for (int r = 0; r < mr; ++r)
          for (int64_t k = 0; k < kc4; ++k) {
            uint32_t vs = 0, vt = 0;
            for (int b = 0; b < 4; ++b) {
              const int q = static_cast<int>(lcg(&st) % 255) - 127;
              vs |= static_cast<uint32_t>(static_cast<uint8_t>(q)) << (8 * b);
              vt |= static_cast<uint32_t>(static_cast<uint8_t>(q + off)) << (8 * b);
            }
            a_s[r * lda4 + k] = vs;
            a_t[r * lda4 + k] = vt;
          }
        std::vector<int8_t> wb(static_cast<size_t>(np * bstride * 4));
        for (auto& v : wb) v = static_cast<int8_t>(static_cast<int>(lcg(&st) % 255) - 127);
        std::vector<uint32_t> bw(static_cast<size_t>(np * bstride));
        std::memcpy(bw.data(), wb.data(), wb.size());
        std::vector<int32_t> c0(static_cast<size_t>(np * cstride));
        for (auto& v : c0) v = static_cast<int32_t>(lcg(&st) % 2000001) - 1000000;
        for (int accumulate = 0; accumulate < 2; ++accumulate) {
          std::vector<int32_t> ct = c0;
          if (two) {
            t.gemm_i8_tile_2p(mr, kc4, a_t.data(), lda4, bw.data(), bstride, ct.data(), cstride, accumulate);
          } else {
            t.gemm_i8_tile(mr, kc4, a_t.data(), lda4, bw.data(), ct.data(), accumulate);
          }
          ++calls;
          for (int64_t p = 0; p < np; ++p) {
            std::vector<int32_t> cs(c0.begin() + p * cstride, c0.begin() + p * cstride + mr * nr);
            sc.gemm_i8(mr, kc4, a_s.data(), lda4, bw.data() + p * bstride, cs.data(), accumulate);
            for (int r = 0; r < mr; ++r)
              for (int j = 0; j < nr; ++j) {
                int32_t colsum = 0;
                for (int64_t k = 0; k < kc4; ++k)
                  for (int b = 0; b < 4; ++b) colsum += wb[((p * bstride) + k * nr + j) * 4 + b];
                same = same && ct[p * cstride + r * nr + j] - off * colsum == cs[r * nr + j];
              }
          }
        }
      }
  }
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "%s int8: gemm_i8_tile / gemm_i8_tile_2p = scalar table's INT32 results (%d calls: mr 1..%d / 1..%d, "
                "1..48 k-quads, accumulate)", isa.c_str(), calls, t.mr_max_i8_tile, t.mr_max_i8_tile_2p);
  expect(buf, same && calls > 0);
}

// The table's quantize_i8 against quantize_i8_rows_portable (the rule of kernels.h) with its code offset: every
// byte written (codes and the padding of the last quad; nothing after it) and the scale's bits, on rows of length
// 1..37, 64, 100 and 131: random values of several magnitudes, ties (x * inv exactly k + 1/2), all zeros, -0.0,
// the maximum in the tail, +-inf and NaN in the body and in the tail.
void check_i8_quantize(const std::string& isa, const lfdn::cpu::Kernels& t) {
  std::vector<int64_t> lengths;
  for (int64_t n = 1; n <= 37; ++n) lengths.push_back(n);
  for (int64_t n : {64, 100, 131}) lengths.push_back(n);
  uint32_t st = 4242;
  int rows = 0, bad_rows = 0;
  for (int64_t n : lengths)
    for (int pattern = 0; pattern < 11; ++pattern) {
      std::vector<float> x(static_cast<size_t>(n));
      const float mag = std::ldexp(1.0f, static_cast<int>(lcg(&st) % 60) - 30);
      for (auto& v : x) v = (static_cast<float>(lcg(&st)) / 16777216.0f - 0.5f) * mag;
      const int64_t pos = static_cast<int64_t>(lcg(&st) % static_cast<uint32_t>(n));
      switch (pattern) {
        case 1:  // ties: amax 127 (inv 1): values k + 1/2
          for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(static_cast<int>(lcg(&st) % 254) - 127) + 0.5f;
          x[pos] = (lcg(&st) & 1) ? 127.0f : -127.0f;
          break;
        case 2:  // ties: amax 254 (inv 0.5): odd integers
          for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(2 * static_cast<int>(lcg(&st) % 254) - 253);
          x[pos] = -254.0f;
          break;
        case 3: x.assign(x.size(), 0.0f); break;
        case 4: x.assign(x.size(), -0.0f); break;
        case 5: x[n - 1] = 3.0f * mag; break;  // the maximum in the last element (the tail)
        case 6: x[pos] = INFINITY; break;
        case 7: x[pos] = -INFINITY; break;
        case 8: x[pos] = NAN; break;
        case 9: x[n - 1] = NAN; break;
        case 10: x[pos] = 0.0f; x[0] = -3.5f * mag; break;
        default: break;
      }
      const int64_t n4 = (n + 3) / 4;
      std::vector<uint32_t> got(static_cast<size_t>(n4 + 2), 0xA5A5A5A5u), want(got.size(), 0xA5A5A5A5u);
      float sg = -1.0f, sw = -2.0f;
      t.quantize_i8(x.data(), n, got.data(), &sg);
      lfdn::cpu::quantize_i8_rows_portable(x.data(), n, t.i8_act_offset, want.data(), &sw);
      const bool same_scale = std::isnan(sw) ? std::isnan(sg) : std::memcmp(&sg, &sw, 4) == 0;
      const bool ok = same_scale && std::memcmp(got.data(), want.data(), 4 * got.size()) == 0;
      ++rows;
      if (!ok) {
        if (bad_rows++ < 5)
          std::printf("  quantize_i8 mismatch: n %lld pattern %d\n", static_cast<long long>(n), pattern);
      }
    }
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "%s int8: quantize_i8 = the portable rule, bit for bit (%d rows: n 1..37/64/100/131, ties, 0, inf, "
                "NaN)",
                isa.c_str(), rows);
  expect(buf, bad_rows == 0 && rows > 0);
}

// INT8 on the active table: the kernels against the scalar ones, the quantization against the portable rule, the
// probe, every INT8 linear case against the float64 reference under the INT8 rule, 1 vs 2 threads, against the
// scalar table (bit for bit without a prologue: same codes, same INT32, same epilogue), every INT8 tactic of the
// table bit for bit to its default, and the whole pass. Without INT8 kernels: refused (kUnsupported), skipped.
void check_int8(const std::string& isa, std::map<std::string, std::vector<float>>* scalar_out,
                std::map<std::string, Scores>* pass_scalar) {
  const lfdn::cpu::Kernels& t = lfdn::cpu::kernels();
  if (t.gemm_i8 == nullptr) {
    int rc = lfdn::kOk;
    run_linear_i8(i8_cases().front(), 2, nullptr, nullptr, &rc);
    std::unique_ptr<SpecHolder> h = make_spec("int8");
    std::unique_ptr<lfdn::CpuEngine> e;
    const int rc_engine = lfdn::CpuEngine::create(h->spec, 4, 1, &e);
    expect(isa + " int8: fused_linear and the engine refuse INT8 (kUnsupported) without INT8 kernels",
           rc == lfdn::kUnsupported && rc_engine == lfdn::kUnsupported && t.quantize_i8 == nullptr &&
               t.gemm_i8_pa == nullptr && t.i8_dot_loop == nullptr);
    std::printf("SKIP %s int8 ops and pass: %s\n", isa.c_str(), i8_unavailable(isa).c_str());
    return;
  }
  const lfdn::TacticTolerance tol = lfdn::tactic_tolerance(lfdn::WeightType::kI8);
  expect(isa + " int8: the tactic rule is this program's (rtol 1e-5, atol 1e-5, srel 0.5 x 1.01)",
         tol.rtol == kI8Rtol && tol.atol == kI8Atol && tol.srel == kI8Srel);
  const bool x86 = isa == "avx512" || isa == "avx2";  // vpdpbusd: unsigned x signed bytes
  expect(isa + " int8: code offset " + std::to_string(t.i8_act_offset) + " (scalar, neon: 0; x86 vpdpbusd: 128)",
         t.i8_act_offset == (x86 ? 128 : 0) && t.quantize_i8 != nullptr && t.gemm_i8_pa != nullptr);
  if (isa != "scalar") check_i8_gemm(isa, t);
  check_i8_tile(isa, t);
  check_i8_quantize(isa, t);
  if (t.i8_dot_loop != nullptr) {  // twice the rounds, twice the operations; the sink moves with the rounds
    float s1 = 0.0f, s2 = 0.0f;
    const double ops1 = t.i8_dot_loop(1000, &s1), ops2 = t.i8_dot_loop(2000, &s2);
    expect(isa + " int8: i8_dot_loop counts its operations and computes them",
           ops1 > 0 && ops2 == 2 * ops1 && std::isfinite(s1) && std::isfinite(s2) && s1 != s2);
  }
  int tactic_runs = 0;
  bool tactics_same = true;
  int n = 0;
  const lfdn::LinearTactic* table = lfdn::cpu_linear_tactics(&n);
  for (const std::string& c : i8_cases()) {
    int rc = -1;
    const std::vector<float> got = run_linear_i8(c, 2, nullptr, nullptr, &rc);
    const std::vector<float> one = run_linear_i8(c, 1);
    std::vector<double> ref, sc;
    i8_reference_f64(c, &ref, &sc);
    expect(isa + " int8 fused_linear[" + c + "]: status ok", rc == lfdn::kOk);
    expect_i8_rule(isa + " int8 fused_linear[" + c + "] vs float64", got.data(), ref, sc);
    expect_equal(isa + " int8 fused_linear[" + c + "] 1 vs 2 threads", one.data(), got.data(),
                 static_cast<int64_t>(got.size()));
    if (isa == "scalar") {
      (*scalar_out)[c] = got;
    } else if (i8_prologue(c) == 0) {
      expect_equal(isa + " int8 fused_linear[" + c + "] vs scalar table", got.data(), (*scalar_out)[c].data(),
                   static_cast<int64_t>(got.size()));
    } else {  // the FP32 prologues of two tables may round an activation to the neighbouring code
      expect_i8_rule(isa + " int8 fused_linear[" + c + "] vs scalar table", got.data(),
                     std::vector<double>((*scalar_out)[c].begin(), (*scalar_out)[c].end()), sc, 2.0);
    }
    for (int i = 0; i < n; ++i) {
      if (isa != lfdn::cpu_tactic_isa(i) || table[i].test_only) continue;
      bool applied = false;
      const std::vector<float> v = run_linear_i8(c, 2, &table[i], &applied);
      if (!applied) continue;
      ++tactic_runs;
      tactics_same = tactics_same && std::memcmp(v.data(), got.data(), 4 * got.size()) == 0;
    }
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s int8 tactics: %d (tactic, case) runs bit-identical to the default blocking",
                isa.c_str(), tactic_runs);
  expect(buf, tactics_same && tactic_runs > 0);
  check_pass(isa, "int8", pass_scalar);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FIXTURE_DIR [--require ISA]...\n", argv[0]);
    return 2;
  }
  if (!load(argv[1])) {
    std::fprintf(stderr, "cannot read fixtures in %s\n", argv[1]);
    return 2;
  }
  std::vector<std::string> isas;
  for (const char* name : {"scalar", "avx2", "avx512", "neon"})
    if (lfdn::cpu::table_by_name(name) != nullptr) isas.push_back(name);
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--require") != 0) continue;
    bool found = false;
    for (const std::string& s : isas) found = found || s == argv[i + 1];
    expect(std::string("kernel table ") + argv[i + 1] + " is compiled in and supported here", found);
  }
  std::printf("kernel tables: ");
  for (const std::string& s : isas) std::printf("%s ", s.c_str());
  std::printf("(auto: %s)\n", lfdn::cpu::table_by_name("auto")->name);
  std::printf("int8 kernels: ");
  for (const std::string& s : isas)
    if (lfdn::cpu::table_by_name(s.c_str())->gemm_i8 != nullptr) std::printf("%s ", s.c_str());
  std::printf("\n");
#if defined(__aarch64__) && defined(__linux__)
  // which INT8 kernels the neon table takes: sdot with ASIMDDP, smmla (same INT32 sums) with I8MM too
  std::printf("cpu int8 features:%s%s\n", (getauxval(AT_HWCAP) & (1UL << 20)) ? " asimddp" : "",
              (getauxval(AT_HWCAP2) & (1UL << 13)) ? " i8mm" : "");
#endif
  std::map<std::string, std::vector<float>> lin_scalar, lin8_scalar;
  std::map<std::string, Scores> pass_scalar;
  for (const std::string& isa : isas) {
    lfdn::cpu::select_isa(isa.c_str());
    if (std::string(lfdn::cpu::kernels().name) != isa) {
      expect("select " + isa, false);
      continue;
    }
    check_noise(isa);
    check_linear(isa, &lin_scalar);
    check_ddim(isa);
    check_pass(isa, "fp32", &pass_scalar);
    check_pass(isa, "fp16", &pass_scalar);
    check_tactics(isa);
    check_bf16(isa);
    check_int8(isa, &lin8_scalar, &pass_scalar);
  }
  std::printf("%d of %d checks passed\n", g_checks - g_failures, g_checks);
  return g_failures == 0 ? 0 : 1;
}
