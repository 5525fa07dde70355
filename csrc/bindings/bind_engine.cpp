// lfdn_edge._C.CpuEngine: the native CPU scoring engine (op 4 on packed weights and a preallocated workspace).
#include <memory>

#include "bindings/common.h"
#include "bindings/spec.h"
#include "lfdn/engine.h"

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
    check(rc, "CpuEngine.score");
    py::dict out;
    out["mse"] = mse;
    out["mfsim"] = mfsim;
    out["stage_cos"] = cos;
    if (return_recon) out["recon"] = recon;
    return out;
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
      .def_property_readonly("precision", &PyCpuEngine::precision);
}

}  // namespace lfdn_py
