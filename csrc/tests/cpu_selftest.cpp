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
#include "lfdn/linear.h"
#include "lfdn/tactic_select.h"
#include "lfdn/tactics.h"
#include "lfdn/noise.h"

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
      const size_t es = a.dtype == "u16" ? 2 : a.dtype == "u64" ? 8 : 4;
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

std::vector<float> run_linear(const std::string& c, int threads, const lfdn::LinearTactic* tactic = nullptr,
                              bool* applied = nullptr) {
  const Array& x = arr("lin." + c + ".x");
  const Array& w = arr("lin." + c + ".w");
  const int64_t rows = x.shape[0], k = x.shape[1], n = w.shape[0];
  const lfdn::WeightType wt = w.dtype == "u16" ? lfdn::WeightType::kF16 : lfdn::WeightType::kF32;
  std::vector<char> packed(lfdn::packed_linear_cpu_bytes(k, n, wt));
  lfdn::pack_linear_cpu(w.bytes.data(), wt, k, n, packed.data());
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
  if (lfdn::fused_linear_cpu(p) != lfdn::kOk) out.assign(out.size(), NAN);
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
};

std::unique_ptr<SpecHolder> make_spec(const std::string& prec) {
  std::unique_ptr<SpecHolder> h(new SpecHolder);
  lfdn::EngineSpec& s = h->spec;
  const std::string p = "spec.";
  s.in_dim = static_cast<int64_t>(scalar(p + "in_dim"));
  s.width = static_cast<int64_t>(scalar(p + "width"));
  s.depth = static_cast<int64_t>(scalar(p + "depth"));
  s.steps = static_cast<int32_t>(scalar(p + "steps"));
  s.wtype = prec == "fp16" ? lfdn::WeightType::kF16 : lfdn::WeightType::kF32;
  const std::string w = "spec." + prec + ".";
  s.inp_w = arr(w + "inp_w").bytes.data();
  s.inp_b = f32(p + "inp_b");
  for (int64_t i = 0; i < s.depth; ++i) {
    const std::string k = "." + std::to_string(i);
    s.fc1_w.push_back(arr(w + "fc1_w" + k).bytes.data());
    s.fc2_w.push_back(arr(w + "fc2_w" + k).bytes.data());
    s.gn1_g.push_back(f32(p + "gn1_g" + k));
    s.gn1_b.push_back(f32(p + "gn1_b" + k));
    s.gn2_g.push_back(f32(p + "gn2_g" + k));
    s.gn2_b.push_back(f32(p + "gn2_b" + k));
    s.fc2_b.push_back(f32(p + "fc2_b" + k));
  }
  if (s.depth > 0) s.fc1_bias = f32(p + "fc1_bias");
  s.out_g = f32(p + "out_g");
  s.out_b = f32(p + "out_b");
  s.out_w = arr(w + "out_w").bytes.data();
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
  const double mse_rtol = prec == "fp16" ? 2e-3 : 1e-4, cos_atol = prec == "fp16" ? 2e-3 : 1e-5;
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
  if (isa == "scalar") {
    (*scalar_out)[prec] = full;
  } else {
    const Scores& s = (*scalar_out)[prec];
    expect_close(t + " mse vs scalar table", full.mse.data(), s.mse.data(), rows, 1e-5, 0);
    expect_close(t + " stage cosines vs scalar table", full.cos.data(), s.cos.data(), rows * stages, 0, 2e-6);
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
  std::map<std::string, std::vector<float>> lin_scalar;
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
  }
  std::printf("%d of %d checks passed\n", g_checks - g_failures, g_checks);
  return g_failures == 0 ? 0 : 1;
}
