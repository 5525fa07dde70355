// pybind11 binding of the torch-free core: numpy buffers in, numpy buffers out. No torch here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "lfdn/noise.h"

namespace py = pybind11;

namespace {

py::dict build_info() {
  py::dict d;
  d["version"] = LFDN_EDGE_VERSION;
  d["cpu"] = true;
  d["cuda"] = false;
  d["cuda_archs"] = py::list();
  return d;
}

py::array_t<float> noise_inject(py::object z0_obj, uint64_t seed, uint32_t stream, float a, float b, int64_t dim,
                                py::object keys_obj) {
  using Arr = py::array_t<float, py::array::c_style | py::array::forcecast>;
  using Keys = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
  lfdn::NoiseParams p;
  Arr z0;
  Keys keys;
  int64_t rows = 1;
  if (!z0_obj.is_none()) {
    z0 = Arr::ensure(z0_obj);
    if (!z0 || z0.ndim() != 2) throw std::invalid_argument("z0 must be a 2-D float32 array (rows, dim)");
    rows = z0.shape(0);
    dim = z0.shape(1);
    p.z0 = z0.data();
  }
  if (!keys_obj.is_none()) {
    keys = Keys::ensure(keys_obj);
    if (!keys || keys.ndim() != 1) throw std::invalid_argument("image_keys must be a 1-D uint64 array");
    if (!z0_obj.is_none() && keys.shape(0) != rows)
      throw std::invalid_argument("image_keys must have one key per row of z0");
    rows = keys.shape(0);
    p.image_keys = keys.data();
  }
  if (dim < 0) throw std::invalid_argument("dim must be >= 0");
  py::array_t<float> out({rows, dim});
  p.out = out.mutable_data();
  p.rows = rows;
  p.dim = dim;
  p.seed = seed;
  p.stream = stream;
  p.a = a;
  p.b = b;
  const int rc = lfdn::noise_inject_cpu(p);
  if (rc != 0) throw std::runtime_error(std::string("noise_inject: ") + lfdn::status_message(rc));
  return out;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "lfdn-edge native core (torch-free C++)";
  m.def("build_info", &build_info, "What was compiled: version, CPU, CUDA and its architectures");
  m.def("noise_inject", &noise_inject, py::arg("z0"), py::arg("seed"), py::arg("stream"), py::arg("a") = 0.0f,
        py::arg("b") = 1.0f, py::arg("dim") = -1, py::arg("image_keys") = py::none(),
        "out = a * z0 + b * eps with eps ~ Philox-4x32-10/Box-Muller keyed by (seed, stream, image key, index). "
        "z0=None returns b * eps of shape (rows, dim), rows = len(image_keys) or 1.");
}
