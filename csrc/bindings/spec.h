// Parsing of the engine spec dict (built by lfdn_edge.engine.native_pack) into lfdn::EngineSpec.
#pragma once
#include <vector>

#include "bindings/common.h"
#include "lfdn/engine.h"

namespace lfdn_py {

struct ParsedSpec {
  lfdn::EngineSpec spec;
  std::vector<py::array> keep;  // the arrays the spec points into
};

// ValueError / TypeError / KeyError naming the offending entry.
ParsedSpec parse_spec(const py::dict& d);

}  // namespace lfdn_py
