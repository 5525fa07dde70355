// lfdn_edge._C.CpuEngine: the native CPU scoring engine (op 4 on packed weights and a preallocated workspace).
#include <chrono>
#include <cstring>
#include <map>
#include <memory>

#include "bindings/common.h"
#include "bindings/spec.h"
#include "lfdn/engine.h"
#include "lfdn/tactic_select.h"
#include "lfdn/tactics.h"

namespace lfdn_py {

namespace {

class PyCpuEngine {
 public:
  PyCpuEngine(const py::dict& spec, int64_t max_batch, int threads) {
    if (max_batch < 1) throw py::value_error("max_batch must be >= 1");
    if (threads < 0) throw py::value_error("threads must be >= 0 (0: all cores)");
    ParsedSpec ps = parse_spec(spec);
    num_stages_ = static_cast<int64_t>(ps.spec.stage_offsets.size()) - 1;
    in_dim_ = ps.spec.in_dim;
    precision_ = precision_name(ps.spec.wtype);
    if (ps.spec.wtype == lfdn::WeightType::kBF16) require_bf16_kernels("CpuEngine");
    if (ps.spec.wtype == lfdn::WeightType::kI8) require_i8_kernels("CpuEngine");
    int rc;
    {
      py::gil_scoped_release nogil;
      rc = lfdn::CpuEngine::create(ps.spec, max_batch, threads, &engine_);
    }
    check(rc, "CpuEngine");
  }

  py::dict score(py::object z0_obj, bool return_recon) const {
    F32 z0 = as_f32(z0_obj, "z0");
    if (z0.ndim() != 2 || z0.shape(1) != in_dim_)
      throw py::value_error("z0 must have shape (rows, " + std::to_string(in_dim_) + "), got " + shape_str(z0));
    const int64_t rows = z0.shape(0);
    if (rows < 1) throw py::value_error("empty batch: z0 needs at least one row");
    if (rows > engine_->max_batch())
      throw py::value_error("batch of " + std::to_string(rows) + " rows is above the engine's workspace (max batch " +
                            std::to_string(engine_->max_batch()) + "); split the batch or rebuild with a larger max");
    py::array_t<float> mse(rows), mfsim(rows), cos({rows, num_stages_});
    py::array_t<float> recon;
    float* rp = nullptr;
    if (return_recon) {
      recon = py::array_t<float>({rows, in_dim_});
      rp = recon.mutable_data();
    }
    int rc;
    {
      py::gil_scoped_release nogil;
      rc = engine_->score(z0.data(), rows, mse.mutable_data(), mfsim.mutable_data(), cos.mutable_data(), rp);
    }
    if (rc == lfdn::kUnsupported && precision_ == "bf16") require_bf16_kernels("CpuEngine.score");
    if (rc == lfdn::kUnsupported && precision_ == "int8") require_i8_kernels("CpuEngine.score");
    check(rc, "CpuEngine.score");
    py::dict out;
    out["mse"] = mse;
    out["mfsim"] = mfsim;
    out["stage_cos"] = cos;
    if (return_recon) out["recon"] = recon;
    return out;
  }

  void check_slot(int bucket, int kind) const {
    if (bucket < 0 || bucket >= engine_->num_buckets())
      throw py::value_error("bucket " + std::to_string(bucket) + " out of range [0, " +
                            std::to_string(engine_->num_buckets()) + ")");
    if (kind < 0 || kind >= lfdn::CpuEngine::kLayerKinds)
      throw py::value_error("layer kind must be 0 (inp), 1 (block) or 2 (out), got " + std::to_string(kind));
    if (kind == 1 && engine_->view().depth == 0) throw py::value_error("this model has no block layers");
  }

  py::dict tactic_problem(int bucket, int kind) const {
    check_slot(bucket, kind);
    const lfdn::FusedLinearParams p = engine_->tactic_problem(bucket, kind);
    py::dict d;
    d["rows"] = p.rows;
    d["in_dim"] = p.in_dim;
    d["out_dim"] = p.out_dim;
    d["prologue"] = p.prologue == lfdn::Prologue::kSilu ? "silu" : p.prologue == lfdn::Prologue::kGroupNormSilu ? "gn_silu" : "none";
    d["wtype"] = precision_;
    d["bucket_bound"] = lfdn::tactic_bucket_bound(bucket);
    return d;
  }

  py::dict select_tactic(int bucket, int kind, const std::string& forced, const std::vector<std::string>& test_only,
                         const std::map<std::string, double>& fake_times, int warmup, int samples, int inner,
                         double baseline_margin, bool cold_cache, int first_samples, int finalists,
                         const std::vector<std::string>& exclude, const std::string& journal) const {
    check_slot(bucket, kind);
    if (warmup < 0 || samples < 1 || inner < 0) throw py::value_error("warmup >= 0, samples >= 1, inner >= 0 required");
    lfdn::TacticSelectOptions o;
    o.forced = forced;
    o.test_only = test_only;
    o.warmup = warmup;
    o.samples = samples;
    o.inner = inner;
    o.baseline_margin = baseline_margin;
    if (first_samples < 0 || finalists < 1) throw py::value_error("first_samples >= 0 and finalists >= 1 required");
    o.first_samples = first_samples;
    o.finalists = finalists;
    o.exclude = exclude;
    if (!journal.empty()) {
      const std::string key = "kind" + std::to_string(kind);
      o.on_event = [journal, key, bucket](const char* ev, const lfdn::TacticCandidateResult& r) {
        journal_append(journal, ev, key, bucket, r.name, r.status, r.passed, r.note);
      };
    }
    lfdn::TacticSelection sel;
    // test hook: with fake_times the named tactics report these seconds per run and every other one 1 s per run
    // (not measured), so a test can make any tactic "fastest" and prove that verification, not speed, decides
    std::function<int(const lfdn::LinearTactic&, int, double*)> fake;
    if (!fake_times.empty())
      fake = [&fake_times](const lfdn::LinearTactic& t, int reps, double* seconds) {
        auto it = fake_times.find(t.name);
        *seconds = (it != fake_times.end() ? it->second : 1.0) * reps;
        return static_cast<int>(lfdn::kOk);
      };
    int rc;
    {
      py::gil_scoped_release nogil;
      rc = engine_->select(bucket, kind, o, &sel, fake, cold_cache);
    }
    if (rc == lfdn::kBadArgument && !sel.error.empty()) throw py::value_error("LFDN_EDGE_TACTIC / forced tactic: " + sel.error);
    if (rc != lfdn::kOk && rc != lfdn::kUnsupported) check(rc, "CpuEngine.select_tactic");
    py::dict d;
    d["chosen"] = sel.chosen >= 0 ? py::object(py::str(sel.chosen_name)) : py::object(py::none());
    d["error"] = sel.error;
    py::list res;
    for (const auto& r : sel.results) res.append(candidate_dict(r));
    d["results"] = res;
    return d;
  }

  void set_tactic(int bucket, int kind, py::object name, bool allow_test_only) {
    check_slot(bucket, kind);
    int idx = -1;
    std::string nm;
    if (!name.is_none()) {
      nm = cast_arg<std::string>(name, "tactic name", "a str or None");
      idx = lfdn::cpu_tactic_index(nm.c_str());
      if (idx < 0) throw py::value_error("unknown CPU tactic '" + nm + "' (_C.cpu_linear_tactics() lists them)");
      int n = 0;
      const lfdn::LinearTactic* t = lfdn::cpu_linear_tactics(&n);
      if (t[idx].test_only && !allow_test_only)
        throw py::value_error("CPU tactic '" + nm + "' is test-only (deliberately wrong) and never used by an engine");
      if (std::strcmp(lfdn::cpu_tactic_isa(idx), engine_->isa()) != 0)
        throw py::value_error("CPU tactic '" + nm + "' computes with the " + lfdn::cpu_tactic_isa(idx) +
                              " table; this engine's numerics class is " + engine_->isa() +
                              " (one ISA for all batch buckets; LFDN_EDGE_CPU_ISA selects it at load)");
      if (!t[idx].applies(engine_->tactic_problem(bucket, kind)))
        throw py::value_error("CPU tactic '" + nm + "' does not apply to this layer on this machine");
    }
    check(engine_->set_tactic(bucket, kind, idx, allow_test_only), "CpuEngine.set_tactic");
  }

  py::object get_tactic(int bucket, int kind) const {
    check_slot(bucket, kind);
    const int i = engine_->tactic(bucket, kind);
    if (i < 0) return py::none();
    int n = 0;
    return py::str(lfdn::cpu_linear_tactics(&n)[i].name);
  }

  const lfdn::CpuEngine& engine() const { return *engine_; }
  int64_t in_dim() const { return in_dim_; }
  int64_t num_stages() const { return num_stages_; }
  const std::string& precision() const { return precision_; }

 private:
  std::unique_ptr<lfdn::CpuEngine> engine_;
  int64_t in_dim_ = 0, num_stages_ = 0;
  std::string precision_;
};

}  // namespace

void bind_engine(py::module_& m) {
  py::class_<PyCpuEngine>(m, "CpuEngine",
                          "Native CPU scoring engine: packed weights (FP32, or FP16 storage with FP32 arithmetic), "
                          "folded timestep biases, Philox noise and a workspace for max_batch rows.")
      .def(py::init<const py::dict&, int64_t, int>(), py::arg("spec"), py::arg("max_batch"), py::arg("threads") = 0)
      .def("score", &PyCpuEngine::score, py::arg("z0"), py::arg("return_recon") = false,
           "z0 (rows, in_dim) float -> {'mse': (rows,), 'mfsim': (rows,), 'stage_cos': (rows, M)[, 'recon']}")
      .def_property_readonly("max_batch", [](const PyCpuEngine& e) { return e.engine().max_batch(); })
      .def_property_readonly("threads", [](const PyCpuEngine& e) { return e.engine().threads(); })
      .def_property_readonly("weight_bytes", [](const PyCpuEngine& e) { return e.engine().weight_bytes(); })
      .def_property_readonly("workspace_bytes", [](const PyCpuEngine& e) { return e.engine().workspace_bytes(); })
      .def_property_readonly("in_dim", &PyCpuEngine::in_dim)
      .def_property_readonly("num_stages", &PyCpuEngine::num_stages)
      .def_property_readonly("precision", &PyCpuEngine::precision)
      .def_property_readonly("isa", [](const PyCpuEngine& e) { return std::string(e.engine().isa()); },
                             "The kernel table (numerics class) of this engine's tactics: the active one at creation.")
      .def_property_readonly("num_buckets", [](const PyCpuEngine& e) { return e.engine().num_buckets(); },
                             "Batch buckets up to max_batch (upper bounds 1, 8, 64, 256, then x4; _C.tactic_bucket).")
      .def("tactic_problem", &PyCpuEngine::tactic_problem, py::arg("bucket"), py::arg("kind"),
           "The op-2 problem tactics are selected on for (bucket, layer kind 0 inp / 1 block / 2 out).")
      .def("select_tactic", &PyCpuEngine::select_tactic, py::arg("bucket"), py::arg("kind"), py::kw_only(),
           py::arg("forced") = "", py::arg("test_only") = std::vector<std::string>{},
           py::arg("fake_times") = std::map<std::string, double>{}, py::arg("warmup") = 2, py::arg("samples") = 9,
           py::arg("inner") = 0, py::arg("baseline_margin") = 0.02, py::arg("cold_cache") = true,
           py::arg("first_samples") = 3, py::arg("finalists") = 4,
           py::arg("exclude") = std::vector<std::string>{}, py::arg("journal") = "",
           "Verify and time every applicable CPU tactic of this engine's ISA on the (bucket, kind) problem; "
           "returns {'chosen': name or None, 'error', 'results': [...]} without applying it (set_tactic does). "
           "forced: only that tactic (ValueError when unknown, of another ISA or not applicable). test_only: "
           "test-only tactics to include. fake_times (tests): {name: seconds per run} replaces the timer, "
           "unnamed tactics then report 1 s. cold_cache: each timed sample is one run after a cache flush (as "
           "in a pass, whose weights stream from DRAM); False: back-to-back runs, weights cache-resident. Two rounds: "
           "first_samples samples each, then `samples` more for the `finalists` fastest and the default "
           "(first_samples 0: one round of `samples`). exclude: tactics never offered (note 'excluded'). journal: "
           "a file that gets one JSON line per candidate event ('start' before it runs, 'done' after), written "
           "before the next step, so a crash of this process names the candidate (runtime/tactic_isolation.py).")
      .def("set_tactic", &PyCpuEngine::set_tactic, py::arg("bucket"), py::arg("kind"), py::arg("name"),
           py::kw_only(), py::arg("allow_test_only") = false,
           "Run tactic `name` (None: the default blocking) for that bucket and layer kind.")
      .def("get_tactic", &PyCpuEngine::get_tactic, py::arg("bucket"), py::arg("kind"),
           "The tactic name set for (bucket, kind), None for the default blocking.");
  m.def("cpu_linear_tactics", [] {
    int n = 0;
    const lfdn::LinearTactic* t = lfdn::cpu_linear_tactics(&n);
    py::list out;
    for (int i = 0; i < n; ++i) {
      py::dict d;
      d["name"] = t[i].name;
      d["isa"] = std::string(lfdn::cpu_tactic_isa(i));
      d["test_only"] = t[i].test_only;
      d["default"] = lfdn::cpu_default_tactic(lfdn::cpu_tactic_isa(i)) == i;
      out.append(d);
    }
    return out;
  }, "The CPU tactic table: [{'name', 'isa', 'test_only', 'default'}] (default: the fixed blocking before tactics).");
  m.def("tactic_bucket", &lfdn::tactic_bucket, py::arg("rows"), "Batch bucket of a batch size (lfdn/tactic_select.h).");
  m.def("tactic_bucket_bound", &lfdn::tactic_bucket_bound, py::arg("bucket"), "Upper bound (rows) of a bucket.");
}

}  // namespace lfdn_py
