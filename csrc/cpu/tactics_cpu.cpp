// The CPU tactics of op 2 (lfdn/tactics.h): kernel table (ISA) x blocking, all over the same packed weight layout
// (pack_linear_cpu), plus one deliberately wrong test-only variant; and the float64 reference the selection
// checks them against (lfdn/tactic_select.h).
//
// Row stability across tactics (docs/NATIVE.md "Tactics"): the blocking variants of one table keep every
// output's FMA chain over k identical (see LinearConfig in ops_internal.h), so they give bit-identical outputs
// for any batch size and thread count; tactics of different tables (ISAs) round differently. An engine therefore
// offers the selection only the tactics of its own table (its numerics class) for every bucket: choosing per
// bucket can never make a row's scores depend on the batch size.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/ops_internal.h"
#include "cpu/team.h"
#include "lfdn/half.h"
#include "lfdn/tactic_select.h"
#include "lfdn/tactics.h"

namespace lfdn {

namespace {

struct CpuTacticSpec {
  const char* name;
  const char* isa;  // table name; "" for the test-only tactic: the active table
  int mr;
  int64_t kc, mc;
  int np;
  bool pack_a, panel_major, drop_last, is_default;
  bool crash;  // TEST ONLY: aborts the process (the isolated selection must survive it, runtime/tactic_isolation.py)
  bool i8_tile = false;  // INT8 weights only: the table's matrix-engine kernel (AMX tiles), mr up to 16
};

// The first entry of each ISA is its default: the fixed blocking of the engine before tactics (mr = the
// table's mr_max, the table-default k-block, row block kMC, one panel, packed activations, row-block-major).
constexpr CpuTacticSpec kSpecs[] = {
    {"cpu.scalar.mr6.kc256.mc96", "scalar", 6, 256, 96, 1, true, false, false, true, false},
    {"cpu.scalar.mr4.kc256.mc96", "scalar", 4, 256, 96, 1, true, false, false, false, false},
    {"cpu.scalar.mr6.kc512.mc96", "scalar", 6, 512, 96, 1, true, false, false, false, false},
    {"cpu.avx2.mr6.kc256.mc96", "avx2", 6, 256, 96, 1, true, false, false, true, false},
    {"cpu.avx2.mr4.kc256.mc96", "avx2", 4, 256, 96, 1, true, false, false, false, false},
    {"cpu.avx2.mr6.kc512.mc96", "avx2", 6, 512, 96, 1, true, false, false, false, false},
    {"cpu.avx2.mr6.kc128.mc96", "avx2", 6, 128, 96, 1, true, false, false, false, false},
    {"cpu.avx2.mr6.kc256.mc192", "avx2", 6, 256, 192, 1, true, false, false, false, false},
    {"cpu.avx2.mr6.kc256.mc96.pm", "avx2", 6, 256, 96, 1, true, true, false, false, false},
    {"cpu.avx2.mr6.kc256.mc96.rowa", "avx2", 6, 256, 96, 1, false, false, false, false, false},
    {"cpu.avx512.mr12.kc128.mc96", "avx512", 12, 128, 96, 1, true, false, false, true, false},
    {"cpu.avx512.mr12.kc256.mc96", "avx512", 12, 256, 96, 1, true, false, false, false, false},
    {"cpu.avx512.mr8.kc192.mc96", "avx512", 8, 192, 96, 1, true, false, false, false, false},
    {"cpu.avx512.mr12.kc128.mc192", "avx512", 12, 128, 192, 1, true, false, false, false, false},
    {"cpu.avx512.mr12.kc128.mc96.pm", "avx512", 12, 128, 96, 1, true, true, false, false, false},
    {"cpu.avx512.mr12.kc128.mc96.rowa", "avx512", 12, 128, 96, 1, false, false, false, false, false},
    {"cpu.avx512.mr12.kc128.mc96.np2", "avx512", 12, 128, 96, 2, true, false, false, false, false},
    {"cpu.avx512.mr12.kc64.mc96.np2", "avx512", 12, 64, 96, 2, true, false, false, false, false},
    {"cpu.avx512.mr8.kc128.mc96.np2", "avx512", 8, 128, 96, 2, true, false, false, false, false},
    {"cpu.avx512.mr12.kc128.mc192.np2", "avx512", 12, 128, 192, 2, true, false, false, false, false},
    {"cpu.avx512.mr6.kc256.mc96.np2", "avx512", 6, 256, 96, 2, true, false, false, false, false},
    {"cpu.avx512.mr12.kc128.mc96.np2.pm", "avx512", 12, 128, 96, 2, true, true, false, false, false},
    {"cpu.avx512.mr14.kc128.mc96.np2", "avx512", 14, 128, 96, 2, true, false, false, false, false},
    {"cpu.avx512.mr14.kc96.mc112.np2", "avx512", 14, 96, 112, 2, true, false, false, false, false},
    {"cpu.avx512.mr14.kc128.mc224.np2.pm", "avx512", 14, 128, 224, 2, true, true, false, false, false},
    // INT8 only (weights kI8): AMX-INT8 tiles; exact INT32 sums, the same as the VNNI kernels'. The whole batch is
    // one row block (mc 256, the most the workspace takes), so each weight block is read once per layer: at 256 rows
    // that was 5230-5360 items/s against 4540-4780 with row blocks of 96 and 4980-5030 of 192 (paper-size model,
    // 2026-12-06), and per-layer timings could not tell them apart (the whole-pass check then kept whichever won).
    {"cpu.avx512.amx.mr16.mc256", "avx512", 16, 0, 256, 1, false, false, false, false, false, true},
    {"cpu.avx512.amx.mr8.mc256", "avx512", 8, 0, 256, 1, false, false, false, false, false, true},
    {"cpu.avx512.amx.mr32.mc256.np2", "avx512", 32, 0, 256, 2, false, false, false, false, false, true},
    {"cpu.neon.mr6.kc256.mc96", "neon", 6, 256, 96, 1, true, false, false, true, false},
    {"cpu.neon.mr4.kc256.mc96", "neon", 4, 256, 96, 1, true, false, false, false, false},
    {"cpu.neon.mr6.kc512.mc96", "neon", 6, 512, 96, 1, true, false, false, false, false},
    {"cpu.neon.mr6.kc256.mc192", "neon", 6, 256, 192, 1, true, false, false, false, false},
    // TEST ONLY: the active table's default blocking without the last k-block; verification must reject it.
    {"cpu.test.drop_last_kblock", "", 0, 0, 96, 1, true, false, true, false, false},
    // TEST ONLY: a candidate that takes its process down (std::abort, when $LFDN_EDGE_TEST_CRASH is 1; otherwise it
    // fails with kUnsupported), as a faulting CUDA candidate takes its context down; offered only when a test
    // names it (tests/test_tactic_isolation.py).
    {"cpu.test.crash", "", 0, 0, 96, 1, true, false, false, false, true},
};
constexpr int kNumSpecs = static_cast<int>(sizeof(kSpecs) / sizeof(kSpecs[0]));

const cpu::Kernels* spec_table(const CpuTacticSpec& s) {
  return *s.isa == '\0' ? &cpu::kernels() : cpu::table_by_name(s.isa);
}

cpu::LinearConfig spec_config(const CpuTacticSpec& s) {
  cpu::LinearConfig c;
  c.kr = spec_table(s);
  c.mr = s.mr;
  c.kc = s.kc;
  c.mc = s.mc;
  c.np = s.np;
  c.pack_a = s.pack_a;
  c.panel_major = s.panel_major;
  c.drop_last_kblock = s.drop_last;
  c.i8_tile = s.i8_tile;
  return c;
}

bool spec_applies(const CpuTacticSpec& s, const FusedLinearParams& p) {
  const cpu::Kernels* t = spec_table(s);
  if (t == nullptr) return false;  // not compiled in or not supported by this CPU
  if (s.i8_tile) {
    if (p.wtype != WeightType::kI8 || t->gemm_i8_tile == nullptr || t->quantize_i8 == nullptr) return false;
    return s.np == 2 ? t->gemm_i8_tile_2p != nullptr && s.mr <= t->mr_max_i8_tile_2p : s.mr <= t->mr_max_i8_tile;
  }
  if (s.mr > (s.np == 2 && t->mr_max_2p > 0 ? t->mr_max_2p : t->mr_max)) return false;
  if (s.np == 2 && (p.wtype != WeightType::kF32 || t->gemm_f32_2p == nullptr || t->gemm_f32_2p_pa == nullptr))
    return false;
  if (p.wtype == WeightType::kBF16) {
    // the BF16 path keeps the table's k-block (in pairs): only variants that change something else apply
    if (t->gemm_bf16 == nullptr) return false;
    if (s.kc != 0 && s.kc != cpu::default_kc(s.mr > 0 ? s.mr : t->mr_max)) return false;
  }
  if (p.wtype == WeightType::kI8) {  // likewise in k-quads
    if (t->gemm_i8 == nullptr || t->quantize_i8 == nullptr) return false;
    if (s.kc != 0 && s.kc != cpu::default_kc(s.mr > 0 ? s.mr : t->mr_max)) return false;
  }
  return true;
}

int spec_run(const CpuTacticSpec& s, const FusedLinearParams& p) {
  int rc = check_fused_linear_params(p);
  if (rc != kOk) return rc;
  if (p.rows == 0) return kOk;
  if (!spec_applies(s, p)) return kUnsupported;
  if (s.crash) {  // armed only by the tests' environment, so that naming it by mistake cannot abort a process
    const char* armed = std::getenv("LFDN_EDGE_TEST_CRASH");
    if (armed != nullptr && armed[0] == '1') std::abort();
    return kUnsupported;
  }
  const int nt = cpu::resolve_threads(p.threads);
  if (p.workspace == nullptr) return kNullPointer;
  if (p.workspace_bytes < cpu::linear_workspace_bytes(p.rows, p.in_dim, nt)) return kWorkspaceTooSmall;
  const cpu::LinearConfig cfg = spec_config(s);
  cpu::team_run(nt, cpu::fused_linear_phases(p), [&](cpu::Runner& r) { cpu::run_fused_linear(p, p.workspace, r, &cfg); });
  return kOk;
}

template <int I>
int run_i(const FusedLinearParams& p) {
  return spec_run(kSpecs[I], p);
}
template <int I>
bool applies_i(const FusedLinearParams& p) {
  return spec_applies(kSpecs[I], p);
}

template <int... I>
struct Table {
  static const LinearTactic* get() {
    static const LinearTactic t[] = {{kSpecs[I].name, &run_i<I>, &applies_i<I>, kSpecs[I].drop_last || kSpecs[I].crash}...};
    return t;
  }
};

template <int N, int... I>
struct MakeTable : MakeTable<N - 1, N - 1, I...> {};
template <int... I>
struct MakeTable<0, I...> {
  using type = Table<I...>;
};

double silu_d(double v) { return v / (1.0 + std::exp(-v)); }

}  // namespace

const LinearTactic* cpu_linear_tactics(int* n) {
  if (n != nullptr) *n = kNumSpecs;
  return MakeTable<kNumSpecs>::type::get();
}

int cpu_tactic_index(const char* name) {
  if (name == nullptr) return -1;
  for (int i = 0; i < kNumSpecs; ++i)
    if (std::strcmp(kSpecs[i].name, name) == 0) return i;
  return -1;
}

const char* cpu_tactic_isa(int index) {
  if (index < 0 || index >= kNumSpecs) return "";
  return *kSpecs[index].isa ? kSpecs[index].isa : cpu::kernels().name;
}

int cpu_default_tactic(const char* isa) {
  if (isa == nullptr) return -1;
  for (int i = 0; i < kNumSpecs; ++i)
    if (kSpecs[i].is_default && std::strcmp(kSpecs[i].isa, isa) == 0)
      return cpu::table_by_name(isa) != nullptr ? i : -1;
  return -1;
}

namespace cpu {
const LinearConfig* tactic_config(int index, LinearConfig* storage) {
  if (index < 0 || index >= kNumSpecs) return nullptr;
  *storage = spec_config(kSpecs[index]);
  return storage->kr != nullptr ? storage : nullptr;
}
}  // namespace cpu

int fused_linear_cpu_reference(const FusedLinearParams& p, double* ref, double* scale) {
  int rc = check_fused_linear_params(p);
  if (rc != kOk) return rc;
  if (ref == nullptr) return kNullPointer;
  const int64_t K = p.in_dim, N = p.out_dim, K2 = (K + 1) / 2, K4 = (K + 3) / 4;
  std::vector<double> a(static_cast<size_t>(K));
  const bool i8 = p.wtype == WeightType::kI8;
  const float* i8_scale = i8 ? packed_i8_scales(p.weight, K, N) : nullptr;
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* xr = p.x + r * K;
    if (p.prologue == Prologue::kGroupNormSilu) {
      double mean = 0.0, var = 0.0;
      for (int64_t k = 0; k < K; ++k) mean += xr[k];
      mean /= static_cast<double>(K);
      for (int64_t k = 0; k < K; ++k) var += (xr[k] - mean) * (xr[k] - mean);
      const double rstd = 1.0 / std::sqrt(var / static_cast<double>(K) + static_cast<double>(p.gn_eps));
      for (int64_t k = 0; k < K; ++k)
        a[k] = silu_d((xr[k] - mean) * rstd * static_cast<double>(p.gamma[k]) + static_cast<double>(p.beta[k]));
    } else if (p.prologue == Prologue::kSilu) {
      for (int64_t k = 0; k < K; ++k) a[k] = silu_d(xr[k]);
    } else {
      for (int64_t k = 0; k < K; ++k) a[k] = xr[k];
    }
    // INT8: the activations of the row are quantized with one step amax / 127; the reference keeps them exact,
    // so its magnitude is what rounding them can change: sum_k |w_k| x one step (tactic_tolerance: half of it)
    double amax = 0.0;
    for (int64_t k = 0; k < K && i8; ++k) amax = std::fmax(amax, std::fabs(a[k]));
    for (int64_t n = 0; n < N; ++n) {
      const int64_t panel = n / kCpuPanel, j = n % kCpuPanel;
      double acc = 0.0, mag = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        double w;
        if (i8) {
          w = static_cast<double>(static_cast<const int8_t*>(p.weight)[((panel * K4 + k / 4) * kCpuPanel + j) * 4 + (k & 3)]) *
              static_cast<double>(i8_scale[n]);
          acc += a[k] * w;
          mag += std::fabs(w) * amax / 127.0;
          continue;
        }
        if (p.wtype == WeightType::kF32) {
          w = static_cast<const float*>(p.weight)[(panel * K + k) * kCpuPanel + j];
        } else if (p.wtype == WeightType::kF16) {
          w = half_to_float(static_cast<const uint16_t*>(p.weight)[(panel * K + k) * kCpuPanel + j]);
        } else {
          const uint32_t bits = static_cast<uint32_t>(static_cast<const uint16_t*>(
                                    p.weight)[((panel * K2 + k / 2) * kCpuPanel + j) * 2 + (k & 1)])
                                << 16;
          float f;
          std::memcpy(&f, &bits, sizeof f);
          w = f;
        }
        acc += a[k] * w;
        mag += std::fabs(a[k] * w);
      }
      if (p.bias) {
        acc += p.bias[n];
        mag += std::fabs(static_cast<double>(p.bias[n]));
      }
      if (p.residual) {
        acc += p.residual[r * N + n];
        mag += std::fabs(static_cast<double>(p.residual[r * N + n]));
      }
      ref[r * N + n] = acc;
      if (scale) scale[r * N + n] = mag;
    }
  }
  return kOk;
}

}  // namespace lfdn
