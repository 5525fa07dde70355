// _C.cuda_tactic_arch_support: the tactic-family decision of lfdn/cuda_arch.h (which CUDA tactics a kernel
// compiled as ptx_version / binary_version may run on a device of compute_capability), in every build --
// CPU-only too -- so that it is tested without a GPU (tests/test_cuda_arch.py).
#include <pybind11/pybind11.h>

#include "lfdn/cuda_arch.h"

namespace lfdn_py {

namespace py = pybind11;

void bind_arch(py::module_& m) {
  m.def(
      "cuda_tactic_arch_support",
      [](int ptx_version, int binary_version, int compute_capability) {
        py::dict d;
        d["mma"] = lfdn::tensor_core_tactics_usable(ptx_version, binary_version, compute_capability);
        d["stream"] = lfdn::stream_tactics_usable(ptx_version, binary_version, compute_capability);
        d["legacy_tile"] = lfdn::legacy_tile_usable(ptx_version, binary_version, compute_capability);
        return d;
      },
      py::arg("ptx_version"), py::arg("binary_version"), py::arg("compute_capability"),
      "Which CUDA tactic families a kernel may run, from cudaFuncAttributes.ptxVersion (the virtual architecture "
      "its code was generated from), .binaryVersion (the architecture of the machine code the device runs; the "
      "device's own for JIT-compiled PTX) and the device's compute capability, each major*10+minor (0: "
      "unknown): {'mma': bool, 'stream': bool, 'legacy_tile': bool} (lfdn/cuda_arch.h)");
}

}  // namespace lfdn_py
