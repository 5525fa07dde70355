// Run-time choice of the CPU kernel table (see kernels.h).
#include <atomic>
#include <cstdlib>
#include <cmath>
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

bool cpu_feature_off(const char* name) {
  const char* env = std::getenv("LFDN_EDGE_CPU_FEATURES_OFF");
  if (env == nullptr) return false;
  const size_t n = std::strlen(name);
  for (const char* p = env; *p != '\0';) {
    const char* end = std::strchr(p, ',');
    const size_t len = end ? static_cast<size_t>(end - p) : std::strlen(p);
    if (len == n && std::strncmp(p, name, n) == 0) return true;
    if (end == nullptr) break;
    p = end + 1;
  }
  return false;
}

bool cpu_has_avx512_vnni() {
#if defined(LFDN_HAVE_AVX512VNNI_KERNELS) && defined(LFDN_X86_CPU_CHECKS)
  __builtin_cpu_init();
  return cpu_has_avx512() && __builtin_cpu_supports("avx512vnni") && !cpu_feature_off("avx512vnni");
#else
  return false;
#endif
}

bool cpu_has_avx_vnni() {
#if defined(LFDN_HAVE_AVXVNNI_KERNELS) && defined(LFDN_X86_CPU_CHECKS)
  __builtin_cpu_init();
  return cpu_has_avx2_fma_f16c() && __builtin_cpu_supports("avxvnni") && !cpu_feature_off("avxvnni");
#else
  return false;
#endif
}

bool cpu_has_neon_dotprod() {
#if defined(LFDN_HAVE_NEON_DOTPROD_KERNELS) && defined(__aarch64__) && defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
  return cpu_has_neon() && (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0 && !cpu_feature_off("dotprod");
#else
  return false;
#endif
}

void quantize_i8_rows_portable(const float* x, int64_t n, int offset, uint32_t* dst, float* scale) {
  float amax = 0.0f;
  bool finite = true;
  for (int64_t k = 0; k < n; ++k) {
    const float v = x[k];
    if (!(v - v == 0.0f)) finite = false;  // inf or NaN
    const float a = v < 0.0f ? -v : v;
    amax = a > amax ? a : amax;
  }
  const int64_t n4 = (n + 3) / 4;
  uint8_t* d = reinterpret_cast<uint8_t*>(dst);
  if (!finite || amax == 0.0f) {
    for (int64_t k = 0; k < 4 * n4; ++k) d[k] = static_cast<uint8_t>(offset);
    *scale = finite ? 0.0f : __builtin_nanf("");
    return;
  }
  const float inv = 127.0f / amax;
  for (int64_t k = 0; k < n; ++k) {
    float q = std::nearbyint(x[k] * inv);  // round half to even (the default rounding mode)
    q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
    d[k] = static_cast<uint8_t>(static_cast<int>(q) + offset);
  }
  for (int64_t k = n; k < 4 * n4; ++k) d[k] = static_cast<uint8_t>(offset);
  *scale = amax / 127.0f;
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
