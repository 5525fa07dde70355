// Run-time choice of the CPU kernel table (see kernels.h).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cpu/kernels.h"

namespace lfdn {
namespace cpu {

#if !defined(LFDN_HAVE_AVX2_KERNELS)
const Kernels* avx2_kernels() { return nullptr; }
#endif

bool cpu_has_avx2_fma_f16c() {
#if defined(LFDN_HAVE_AVX2_KERNELS) && (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

namespace {

const Kernels* auto_table() {
  if (cpu_has_avx2_fma_f16c()) return avx2_kernels();
  return &scalar_kernels();
}

const Kernels* initial_table() {
  const char* env = std::getenv("LFDN_EDGE_CPU_ISA");
  if (env != nullptr && std::strcmp(env, "scalar") == 0) return &scalar_kernels();
  return auto_table();
}

std::atomic<const Kernels*>& active() {
  static std::atomic<const Kernels*> table{initial_table()};
  return table;
}

}  // namespace

const Kernels& kernels() { return *active().load(std::memory_order_acquire); }

bool select_isa(const char* name) {
  const Kernels* t = nullptr;
  if (std::strcmp(name, "auto") == 0) t = auto_table();
  else if (std::strcmp(name, "scalar") == 0) t = &scalar_kernels();
  else if (std::strcmp(name, "avx2") == 0 && cpu_has_avx2_fma_f16c()) t = avx2_kernels();
  if (t == nullptr) return false;
  active().store(t, std::memory_order_release);
  return true;
}

}  // namespace cpu
}  // namespace lfdn
