#include "lfdn/common.h"

namespace lfdn {

const char* status_message(int code) {
  switch (code) {
    case kOk: return "ok";
    case kNullPointer: return "a required pointer is null";
    case kBadSize: return "invalid size (zero, negative or too large)";
    case kBatchAboveWorkspace: return "batch above the workspace size (rebuild the engine with a larger max batch)";
    case kBadArgument: return "invalid argument";
    case kCudaError: return "CUDA error";
    case kUnsupported: return "not compiled into this build";
    case kWorkspaceTooSmall: return "workspace smaller than the op needs";
    default: return "unknown error";
  }
}

}  // namespace lfdn
