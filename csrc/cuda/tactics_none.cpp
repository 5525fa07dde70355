// CPU-only build (LFDN_EDGE_CUDA=OFF or no nvcc): the CUDA tactic table of lfdn/tactics.h is empty.
#include "lfdn/tactics.h"

namespace lfdn {

const LinearTactic* cuda_linear_tactics(int* n) {
  static const LinearTactic kNone[1] = {{"", nullptr, nullptr, true}};  // never listed: *n is 0
  if (n) *n = 0;
  return kNone;
}

}  // namespace lfdn
