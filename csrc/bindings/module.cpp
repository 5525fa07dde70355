// lfdn_edge._C: pybind11 binding of the torch-free core. numpy buffers in and out for the CPU; raw device
// pointers (ints) and stream handles for CUDA, which lfdn_edge/native.py takes from torch tensors.
#include <string>

#include "bindings/common.h"
#include "cpu/kernels.h"
#include "cpu/team.h"

#ifndef LFDN_EDGE_VERSION
#define LFDN_EDGE_VERSION "unknown"
#endif
#ifndef LFDN_CUDA_ARCHS
#define LFDN_CUDA_ARCHS ""
#endif
#ifndef LFDN_CUDA_VERSION
#define LFDN_CUDA_VERSION ""
#endif
#ifndef LFDN_BUILD_TYPE
#define LFDN_BUILD_TYPE ""
#endif

namespace py = pybind11;

namespace lfdn_py {
void bind_arch(py::module_& m);  // bind_arch.cpp: lfdn/cuda_arch.h, in every build
}  // namespace lfdn_py

namespace {

py::list split_list(const std::string& s) {
  py::list out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(',', start);
    const std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) out.append(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

py::dict build_info() {
  py::dict d;
  d["version"] = LFDN_EDGE_VERSION;
  d["build_type"] = LFDN_BUILD_TYPE;
  d["compiler"] = std::string(
#if defined(__clang__)
      "clang " __clang_version__
#elif defined(__GNUC__)
      "gcc " __VERSION__
#elif defined(_MSC_VER)
      "msvc " + std::to_string(_MSC_VER)
#else
      "unknown"
#endif
  );
  d["cpu"] = true;
  py::list isas;
  isas.append("scalar");
  if (lfdn::cpu::avx2_kernels() != nullptr) isas.append("avx2");
  if (lfdn::cpu::avx512_kernels() != nullptr) isas.append("avx512");
  if (lfdn::cpu::neon_kernels() != nullptr) isas.append("neon");
  d["cpu_kernels"] = isas;  // compiled in
  py::list usable;          // compiled in and supported by this CPU (what set_cpu_isa accepts)
  for (const char* name : {"scalar", "avx2", "avx512", "neon"})
    if (lfdn::cpu::table_by_name(name) != nullptr) usable.append(name);
  d["cpu_kernels_usable"] = usable;
  d["cpu_kernels_active"] = lfdn::cpu::kernels().name;
  d["cpu_has_avx2_fma_f16c"] = lfdn::cpu::cpu_has_avx2_fma_f16c();
  d["cpu_has_avx512"] = lfdn::cpu::cpu_has_avx512();
  d["cpu_has_avx512_bf16"] = lfdn::cpu::cpu_has_avx512_bf16();  // compiled in and reported by the CPU
  d["cpu_bf16_active"] = lfdn::cpu::kernels().gemm_bf16 != nullptr;  // precision "bf16" runs with the active table
  d["cpu_has_avx512_vnni"] = lfdn::cpu::cpu_has_avx512_vnni();  // INT8 kernels compiled in and reported by the CPU
  d["cpu_has_avx_vnni"] = lfdn::cpu::cpu_has_avx_vnni();
  d["cpu_has_neon_dotprod"] = lfdn::cpu::cpu_has_neon_dotprod();
  d["cpu_int8_active"] = lfdn::cpu::kernels().gemm_i8 != nullptr;  // precision "int8" runs with the active table
  d["cpu_has_neon"] = lfdn::cpu::cpu_has_neon();
  d["cpu_threading"] = "std::thread team (work-claiming phases)";
  d["cpu_threads"] = lfdn::cpu::default_threads();
#if defined(LFDN_WITH_CUDA)
  d["cuda"] = true;
  d["cuda_version"] = LFDN_CUDA_VERSION;
#else
  d["cuda"] = false;
  d["cuda_version"] = py::none();
#endif
  // e.g. ["80-real", "86-real", "87-real", "89-real", "90-real", "90-virtual"]: SASS for each -real entry,
  // PTX (JIT-compiled by the driver on newer GPUs) for each -virtual entry.
  d["cuda_archs"] = split_list(LFDN_CUDA_ARCHS);
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "lfdn-edge native core: fused CPU (and CUDA, when compiled) kernels and the native scoring engine";
  m.def("build_info", &build_info, "What was compiled: version, CPU kernel tables, threads, CUDA and its architectures");
  lfdn_py::bind_ops(m);
  lfdn_py::bind_engine(m);
  lfdn_py::bind_arch(m);
#if defined(LFDN_WITH_CUDA)
  lfdn_py::bind_cuda(m);
  lfdn_py::bind_capture(m);
#endif
}
