#include <fcntl.h>
#include <unistd.h>
#include "bindings/common.h"

#include "cpu/kernels.h"
#include "lfdn/ddim_score.h"

#if defined(LFDN_WITH_CUDA)
#include "lfdn/engine.h"
#endif

namespace lfdn_py {

namespace {
std::string json_str(const std::string& v) {
  std::string o = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      o += ' ';
    } else {
      o += c;
    }
  }
  return o + "\"";
}
}  // namespace

py::dict candidate_dict(const lfdn::TacticCandidateResult& r) {
  py::dict e;
  e["name"] = r.name;
  e["test_only"] = r.test_only;
  e["applies"] = r.applies;
  e["passed"] = r.passed;
  e["status"] = r.status;
  e["max_err_ratio"] = r.max_err_ratio;
  e["median_s"] = r.median_s;
  e["samples_s"] = r.samples_s;
  e["note"] = r.note;
  return e;
}

void journal_append(const std::string& path, const char* event, const std::string& key, int64_t bucket,
                    const std::string& name, int status, bool passed, const std::string& note) {
  if (path.empty()) return;
  const std::string line = "{\"event\": " + json_str(event) + ", \"key\": " + json_str(key) +
                           ", \"bucket\": " + std::to_string(bucket) + ", \"name\": " + json_str(name) +
                           ", \"status\": " + std::to_string(status) + ", \"passed\": " +
                           (passed ? "true" : "false") + ", \"note\": " + json_str(note) + "}\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;  // a journal that cannot be written only loses the crash attribution, never the run
  const ssize_t w = ::write(fd, line.data(), line.size());
  (void)w;
  ::close(fd);
}

std::string precision_name(lfdn::WeightType t) {
  return t == lfdn::WeightType::kF16    ? "fp16"
         : t == lfdn::WeightType::kBF16 ? "bf16"
         : t == lfdn::WeightType::kI8   ? "int8"
                                        : "fp32";
}

void require_i8_kernels(const std::string& what) {
  if (lfdn::cpu::kernels().gemm_i8 != nullptr) return;
  throw std::runtime_error(
      what + ": precision 'int8' needs a kernel table with an INT8 dot product (avx512 on a CPU with "
      "AVX512-VNNI, avx2 on a CPU with AVX-VNNI, neon on a CPU with the dot-product extension, or scalar, the "
      "reference); here the active table is '" + std::string(lfdn::cpu::kernels().name) +
      "', cpu_has_avx512_vnni=" + (lfdn::cpu::cpu_has_avx512_vnni() ? "true" : "false") +
      ", cpu_has_avx_vnni=" + (lfdn::cpu::cpu_has_avx_vnni() ? "true" : "false") +
      ", cpu_has_neon_dotprod=" + (lfdn::cpu::cpu_has_neon_dotprod() ? "true" : "false") +
      ". There is no silent INT8 fallback: use precision 'bf16', 'fp16' or 'fp32', or select the scalar "
      "reference table explicitly (LFDN_EDGE_CPU_ISA=scalar; slow)");
}

void require_bf16_kernels(const std::string& what) {
  if (lfdn::cpu::kernels().gemm_bf16 != nullptr) return;
  throw std::runtime_error(
      what + ": precision 'bf16' needs the avx512 kernel table on a CPU with AVX512_BF16 (vdpbf16ps); here the " +
      "active table is '" + lfdn::cpu::kernels().name + "', cpu_has_avx512_bf16=" +
      (lfdn::cpu::cpu_has_avx512_bf16() ? "true" : "false") +
      ". There is no BF16 fallback: use precision 'fp16' (FP16 weights, FP32 arithmetic) or 'fp32'");
}

void raise_status(int rc, const std::string& what) {
  std::string msg = what + ": " + lfdn::status_message(rc);
  switch (rc) {
    case lfdn::kNullPointer:
    case lfdn::kBadSize:
    case lfdn::kBatchAboveWorkspace:
    case lfdn::kBadArgument:
    case lfdn::kWorkspaceTooSmall:
      throw py::value_error(msg);
#if defined(LFDN_WITH_CUDA)
    case lfdn::kCudaError:
      throw std::runtime_error(msg + " (" + lfdn::cuda_last_error() + ")");
#endif
    default:
      throw std::runtime_error(msg);
  }
}

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

namespace {

std::string want_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + (shape[i] < 0 ? std::string("*") : std::to_string(shape[i]));
  return s + (shape.size() == 1 ? ",)" : ")");
}

bool shape_ok(const py::array& a, const std::vector<int64_t>& shape) {
  if (a.ndim() != static_cast<py::ssize_t>(shape.size())) return false;
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] >= 0 && a.shape(i) != shape[i]) return false;
  return true;
}

}  // namespace

template <>
std::vector<int32_t> cast_arg<std::vector<int32_t>>(py::handle obj, const std::string& name, const char* expected) {
  if (py::isinstance<py::array>(obj)) {
    const auto a = py::reinterpret_borrow<py::array>(obj);
    const char kind = a.dtype().kind();
    if (a.ndim() != 1 || (kind != 'i' && kind != 'u'))
      throw py::type_error(name + " must be " + expected + ", got a " + std::to_string(a.ndim()) +
                           "-D ndarray of dtype " + std::string(py::str(a.dtype())));
  }
  if (PySequence_Check(obj.ptr()) && !py::isinstance<py::str>(obj) && !py::isinstance<py::bytes>(obj)) {
    const Py_ssize_t n = PySequence_Size(obj.ptr());
    if (n < 0) PyErr_Clear();  // no len(): the caster below refuses it
    constexpr Py_ssize_t kMax = lfdn::kMaxStages + 1;
    if (n > kMax)
      throw py::value_error(name + " has " + std::to_string(n) + " entries, at most " + std::to_string(kMax) +
                            " (" + std::to_string(lfdn::kMaxStages) + " stages)");
  }
  try {
    return obj.cast<std::vector<int32_t>>();
  } catch (const py::cast_error&) {
    throw py::type_error(name + " must be " + expected + ", got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  }
}

F32 as_f32(py::handle obj, const std::string& name) {
  if (obj.is_none()) throw py::type_error(name + " is required, got None");
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(name + " must be an array of floats, got " + std::string(py::str(py::type::of(obj))));
  const char kind = a.dtype().kind();
  if (kind != 'f') throw py::type_error(name + " must be floating point, got dtype " + std::string(py::str(a.dtype())));
  return F32::ensure(a);
}

F32 as_f32_shape(py::handle obj, const std::string& name, const std::vector<int64_t>& shape) {
  F32 a = as_f32(obj, name);
  if (!shape_ok(a, shape))
    throw py::value_error(name + " must have shape " + want_str(shape) + ", got " + shape_str(a));
  return a;
}

py::array as_weight(py::handle obj, const std::string& name, int64_t out_dim, int64_t in_dim,
                    lfdn::WeightType* wtype) {
  if (obj.is_none()) throw py::type_error(name + " is required, got None");
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(name + " must be a numpy array");
  const py::dtype dt = a.dtype();
  if (dt.kind() == 'f' && dt.itemsize() == 4) {
    *wtype = lfdn::WeightType::kF32;
  } else if (dt.kind() == 'f' && dt.itemsize() == 2) {
    *wtype = lfdn::WeightType::kF16;
  } else if (dt.kind() == 'u' && dt.itemsize() == 2) {  // numpy has no bfloat16: BF16 bit patterns as uint16
    *wtype = lfdn::WeightType::kBF16;
  } else if (dt.kind() == 'i' && dt.itemsize() == 1) {  // INT8 (with per-output-channel scales beside it)
    *wtype = lfdn::WeightType::kI8;
  } else {
    throw py::type_error(name + " must be float32, float16, uint16 (BF16 bits) or int8, got dtype " +
                         std::string(py::str(dt)));
  }
  if (!shape_ok(a, {out_dim, in_dim}))
    throw py::value_error(name + " must have shape " + want_str({out_dim, in_dim}) + ", got " + shape_str(a));
  return py::module_::import("numpy").attr("ascontiguousarray")(a);
}

py::array as_weight_2d(py::handle obj, const std::string& name, int64_t* out_dim, int64_t* in_dim,
                       lfdn::WeightType* wtype) {
  if (obj.is_none()) throw py::type_error(name + " is required, got None");
  py::array a = py::array::ensure(obj);
  if (!a || a.ndim() != 2) throw py::value_error(name + " must be a 2-D array (out_dim, in_dim)");
  *out_dim = a.shape(0);
  *in_dim = a.shape(1);
  return as_weight(a, name, *out_dim, *in_dim, wtype);
}

lfdn::Prologue parse_prologue(const std::string& s) {
  if (s == "none") return lfdn::Prologue::kNone;
  if (s == "silu") return lfdn::Prologue::kSilu;
  if (s == "gn_silu") return lfdn::Prologue::kGroupNormSilu;
  throw py::value_error("prologue must be 'none', 'silu' or 'gn_silu', got '" + s + "'");
}

}  // namespace lfdn_py
