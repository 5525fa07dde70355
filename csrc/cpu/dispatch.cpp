// Run-time choice of the CPU kernel table (see kernels.h).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cpu/kernels.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace lfdn {
namespace cpu {

#if !defined(LFDN_HAVE_AVX2_KERNELS)
const Kernels* avx2_kernels() { return nullptr; }
#endif
#if !defined(LFDN_HAVE_AVX512_KERNELS)
const Kernels* avx512_kernels() { return nullptr; }
#endif
#if !defined(LFDN_HAVE_NEON_KERNELS)
const Kernels* neon_kernels() { return nullptr; }
#endif

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define LFDN_X86_CPU_CHECKS 1
#endif

bool cpu_has_avx2_fma_f16c() {
#if defined(LFDN_HAVE_AVX2_KERNELS) && defined(LFDN_X86_CPU_CHECKS)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(LFDN_HAVE_AVX512_KERNELS) && defined(LFDN_X86_CPU_CHECKS)
  __builtin_cpu_init();
  // __builtin_cpu_supports also requires the OS to save the zmm/opmask state (XCR0), as the AVX2 check does
  return cpu_has_avx2_fma_f16c() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

bool cpu_has_avx512_bf16() {
#if defined(LFDN_HAVE_AVX512BF16_KERNELS) && defined(LFDN_X86_CPU_CHECKS)
  __builtin_cpu_init();
  return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

bool cpu_has_neon() {
#if defined(LFDN_HAVE_NEON_KERNELS) && defined(__aarch64__) && defined(__linux__)
  const unsigned long hw = getauxval(AT_HWCAP);
  return (hw & HWCAP_FP) != 0 && (hw & HWCAP_ASIMD) != 0;
#elif defined(LFDN_HAVE_NEON_KERNELS) && defined(__aarch64__)
  return true;  // Advanced SIMD is mandatory in AArch64 (other OSes: no HWCAP to ask)
#else
  return false;
#endif
}

namespace {

const Kernels* auto_table() {
  if (cpu_has_avx512()) return avx512_kernels();
  if (cpu_has_avx2_fma_f16c()) return avx2_kernels();
  if (cpu_has_neon()) return neon_kernels();
  return &scalar_kernels();
}

const Kernels* initial_table() {
  const char* env = std::getenv("LFDN_EDGE_CPU_ISA");
  if (env != nullptr && *env != '\0') {
    const Kernels* t = table_by_name(env);
    if (t != nullptr) return t;
  }
  return auto_table();
}

std::atomic<const Kernels*>& active() {
  static std::atomic<const Kernels*> table{initial_table()};
  return table;
}

}  // namespace

const Kernels* table_by_name(const char* name) {
  if (std::strcmp(name, "auto") == 0) return auto_table();
  if (std::strcmp(name, "scalar") == 0) return &scalar_kernels();
  if (std::strcmp(name, "avx2") == 0 && cpu_has_avx2_fma_f16c()) return avx2_kernels();
  if (std::strcmp(name, "avx512") == 0 && cpu_has_avx512()) return avx512_kernels();
  if (std::strcmp(name, "neon") == 0 && cpu_has_neon()) return neon_kernels();
  return nullptr;
}

const Kernels& kernels() { return *active().load(std::memory_order_acquire); }

bool select_isa(const char* name) {
  const Kernels* t = table_by_name(name);
  if (t == nullptr) return false;
  active().store(t, std::memory_order_release);
  return true;
}

}  // namespace cpu
}  // namespace lfdn
