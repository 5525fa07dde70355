// Helpers of the pybind11 binding: numpy argument checks and status codes -> Python exceptions.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "lfdn/common.h"
#include "lfdn/linear.h"
#include "lfdn/tactic_select.h"

namespace lfdn_py {

namespace py = pybind11;

// Device (or virtual) addresses as Python ints: the CUDA entry points and the launch-capture bindings.
using Ptr = std::uintptr_t;
template <typename T>
T* ptr(Ptr p) {
  return reinterpret_cast<T*>(p);
}
using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;

// Raise for a non-ok status: ValueError for bad arguments, RuntimeError for CUDA/unsupported.
void raise_status(int rc, const std::string& what);
inline void check(int rc, const std::string& what) {
  if (rc != lfdn::kOk) raise_status(rc, what);
}

// obj converted to T, or a TypeError naming the argument, the expected type and the type given (pybind11's own
// cast_error is a RuntimeError "Unable to cast ..." that names neither).
template <class T>
T cast_arg(py::handle obj, const std::string& name, const char* expected) {
  try {
    return obj.cast<T>();
  } catch (const py::cast_error&) {
    throw py::type_error(name + " must be " + expected + ", got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  }
}

// The one sequence-of-int argument of the bindings, stage offsets (ddim_score, cuda_ddim_score, the engine spec):
// at most kMaxStages + 1 entries (ValueError) and, for a numpy array, 1-D with an integer dtype (TypeError), both
// checked before any entry is converted. pybind11's list caster converts entry by entry through Python after
// reserving len() entries: with numpy 1.x every 1-element row of a 2-D array converts to an int, so a
// (2**28, 1) broadcast view (no memory behind it) took 2**28 conversions, minutes (the binding fuzz's hang);
// a range(2**31) did the same under any numpy.
template <>
std::vector<int32_t> cast_arg<std::vector<int32_t>>(py::handle obj, const std::string& name, const char* expected);

std::string shape_str(const py::array& a);
// "fp32", "fp16", "bf16"
std::string precision_name(lfdn::WeightType t);
// RuntimeError (saying why and what to use instead) unless the active CPU kernel table has the BF16 kernels.
void require_bf16_kernels(const std::string& what);
// RuntimeError unless the active CPU kernel table has INT8 kernels (no silent fallback).
void require_i8_kernels(const std::string& what);

// A floating-point array converted to C-contiguous float32; TypeError for None or non-float dtypes.
F32 as_f32(py::handle obj, const std::string& name);
// Same, and its shape must equal `shape` (-1 matches any size): ValueError otherwise.
F32 as_f32_shape(py::handle obj, const std::string& name, const std::vector<int64_t>& shape);

// A Linear weight (out, in): float32, float16 (FP16 bits) or uint16 (BF16 bits), C-contiguous. wtype is set from the dtype.
py::array as_weight(py::handle obj, const std::string& name, int64_t out_dim, int64_t in_dim,
                    lfdn::WeightType* wtype);
// A Linear weight of any shape: must be 2-D (out_dim, in_dim); both are read from it.
py::array as_weight_2d(py::handle obj, const std::string& name, int64_t* out_dim, int64_t* in_dim,
                       lfdn::WeightType* wtype);

// One candidate of a selection (lfdn/tactic_select.h) as a dict: name, test_only, applies, passed, status,
// max_err_ratio, median_s, samples_s, note.
py::dict candidate_dict(const lfdn::TacticCandidateResult& r);

// A selection journal (lfdn_edge/runtime/tactic_isolation.py reads it): one JSON line per candidate event,
// {"event", "key", "bucket", "name", "status", "passed", "note"}, appended with a single write(2) on a file
// opened for that line, so every line before a crash of this process is on disk. Empty path: no journal.
void journal_append(const std::string& path, const char* event, const std::string& key, int64_t bucket,
                    const std::string& name, int status, bool passed, const std::string& note);

// "none" | "silu" | "gn_silu" -> the fused-linear prologue; ValueError otherwise.
lfdn::Prologue parse_prologue(const std::string& s);

void bind_ops(py::module_& m);
void bind_engine(py::module_& m);
#if defined(LFDN_WITH_CUDA)
void bind_cuda(py::module_& m);
void bind_capture(py::module_& m);  // bind_capture.cpp: the launch capture (lfdn/cuda_launch.h)
#endif

}  // namespace lfdn_py
