// Op 2 on the CPU: prologue (GroupNorm + SiLU, or SiLU) into an activation buffer, then a cache-blocked
// GEMM over packed weight panels with the bias / residual epilogue. Threads claim runs of consecutive
// output panels (guided schedule: long contiguous weight streams first, a balanced tail), so each weight
// panel is streamed from memory exactly once per row block.
#include <cstring>

#include "cpu/kernels.h"
#include "cpu/ops_internal.h"
#include "cpu/team.h"
#include "lfdn/gn_stats.h"
#include "lfdn/half.h"
#include "lfdn/linear.h"

namespace lfdn {

namespace {

int64_t num_panels(int64_t out_dim) { return (out_dim + kCpuPanel - 1) / kCpuPanel; }

inline void prefetch(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 0, 3);
#else
  (void)p;
#endif
}

bool overlaps(const void* a, size_t abytes, const void* b, size_t bbytes) {
  const char* pa = static_cast<const char*>(a);
  const char* pb = static_cast<const char*>(b);
  return pa < pb + bbytes && pb < pa + abytes;
}

}  // namespace

// GroupNorm + affine + SiLU of one row into out. The table's SIMD statistics are FP32 without scaling: when they
// overflowed (|x - mean| above ~1.8e19, or a sum above FLT_MAX: then rstd is 0 or the mean not finite) on a row
// of finite values, the row is redone with the shared rule of lfdn/gn_stats.h (scaled by a power of two first),
// which the CUDA kernels use for every row. Rows that did not overflow are untouched (bit-identical to before),
// rows holding NaN or inf propagate them as before.
static void gn_silu_row(const cpu::Kernels& kr, const float* xr, int64_t K, float eps, const float* gamma,
                 const float* beta, float* out) {
  float mean, rstd;
  kr.moments(xr, K, eps, &mean, &rstd);
  if (!(rstd > 0.0f) || !(mean - mean == 0.0f)) {  // rstd 0 or NaN, mean inf or NaN
    bool finite = true;
    for (int64_t k = 0; k < K && finite; ++k) finite = xr[k] - xr[k] == 0.0f;
    if (finite) {
      const GnStats st = gn_row_stats(xr, K, eps);
      for (int64_t k = 0; k < K; ++k) out[k] = gn_normalize(xr[k], st) * gamma[k] + beta[k];
      kr.silu(out, K, out);
      return;
    }
  }
  kr.gn_silu(xr, K, mean, rstd, gamma, beta, out);
}

int check_fused_linear_params(const FusedLinearParams& p) {
  if (p.rows < 0 || p.in_dim <= 0 || p.out_dim <= 0) return kBadSize;
  if (p.in_dim > (int64_t{1} << 30) || p.out_dim > (int64_t{1} << 30)) return kBadSize;
  if (p.rows == 0) return kOk;
  if (p.x == nullptr || p.out == nullptr || p.weight == nullptr) return kNullPointer;
  if (p.prologue == Prologue::kGroupNormSilu && (p.gamma == nullptr || p.beta == nullptr)) return kNullPointer;
  if (p.prologue != Prologue::kNone && p.prologue != Prologue::kSilu && p.prologue != Prologue::kGroupNormSilu)
    return kBadArgument;
  if (p.wtype != WeightType::kF32 && p.wtype != WeightType::kF16 && p.wtype != WeightType::kBF16 &&
      p.wtype != WeightType::kI8)
    return kBadArgument;
  // INT8: |code| <= 255, |w| <= 127: INT32 sums stay exact up to 2^16 inputs
  if (p.wtype == WeightType::kI8 && p.in_dim > (int64_t{1} << 16)) return kBadSize;
  if (!(p.gn_eps > 0.0f)) return kBadArgument;
  // out may alias residual (in-place add) but never the input: other threads still read it.
  if (overlaps(p.x, sizeof(float) * p.rows * p.in_dim, p.out, sizeof(float) * p.rows * p.out_dim))
    return kBadArgument;
  if (p.residual != nullptr && p.residual != p.out &&
      overlaps(p.residual, sizeof(float) * p.rows * p.out_dim, p.out, sizeof(float) * p.rows * p.out_dim))
    return kBadArgument;
  return kOk;
}

namespace {
size_t i8_body_bytes(int64_t in_dim, int64_t out_dim) {
  return static_cast<size_t>(num_panels(out_dim)) * kCpuPanel * static_cast<size_t>((in_dim + 3) / 4 * 4);
}
}  // namespace

const float* packed_i8_scales(const void* packed, int64_t in_dim, int64_t out_dim) {
  return reinterpret_cast<const float*>(static_cast<const char*>(packed) + i8_body_bytes(in_dim, out_dim));
}

const int32_t* packed_i8_colsums(const void* packed, int64_t in_dim, int64_t out_dim) {
  return reinterpret_cast<const int32_t*>(packed_i8_scales(packed, in_dim, out_dim) + num_panels(out_dim) * kCpuPanel);
}

int pack_linear_cpu_i8(const int8_t* q, const float* scale, int64_t in_dim, int64_t out_dim, void* dst) {
  if (q == nullptr || scale == nullptr || dst == nullptr) return kNullPointer;
  if (in_dim <= 0 || out_dim <= 0) return kBadSize;
  if (in_dim > (int64_t{1} << 16) || out_dim > (int64_t{1} << 30)) return kBadSize;
  for (int64_t n = 0; n < out_dim; ++n)
    if (!(scale[n] > 0.0f && scale[n] <= 3.4e38f)) return kBadArgument;
  for (int64_t i = 0; i < in_dim * out_dim; ++i)
    if (q[i] == -128) return kBadArgument;  // the scheme is symmetric: [-127, 127]
  const int64_t np = num_panels(out_dim), k4n = (in_dim + 3) / 4;
  std::memset(dst, 0, packed_linear_cpu_bytes(in_dim, out_dim, WeightType::kI8));
  int8_t* d = static_cast<int8_t*>(dst);
  float* sc = const_cast<float*>(packed_i8_scales(dst, in_dim, out_dim));
  int32_t* cs = const_cast<int32_t*>(packed_i8_colsums(dst, in_dim, out_dim));
  for (int64_t p = 0; p < np; ++p)
    for (int j = 0; j < kCpuPanel; ++j) {
      const int64_t n = p * kCpuPanel + j;
      if (n >= out_dim) continue;
      int32_t sum = 0;
      for (int64_t k = 0; k < in_dim; ++k) {
        const int8_t w = q[n * in_dim + k];
        d[((p * k4n + k / 4) * kCpuPanel + j) * 4 + (k & 3)] = w;
        sum += w;
      }
      sc[n] = scale[n];
      cs[n] = sum;
    }
  return kOk;
}

size_t packed_linear_cpu_bytes(int64_t in_dim, int64_t out_dim, WeightType wtype) {
  if (wtype == WeightType::kI8)  // k-quads, then the trailer: FP32 scales and INT32 column sums per output
    return i8_body_bytes(in_dim, out_dim) + static_cast<size_t>(num_panels(out_dim)) * kCpuPanel * 8;
  if (wtype == WeightType::kBF16)  // k-pairs: in_dim rounded up to even
    return static_cast<size_t>(num_panels(out_dim)) * kCpuPanel * static_cast<size_t>((in_dim + 1) / 2 * 2) * 2;
  return static_cast<size_t>(num_panels(out_dim)) * kCpuPanel * static_cast<size_t>(in_dim) *
         weight_type_size(wtype);
}

int pack_linear_cpu(const void* src, WeightType wtype, int64_t in_dim, int64_t out_dim, void* dst) {
  if (src == nullptr || dst == nullptr) return kNullPointer;
  if (in_dim <= 0 || out_dim <= 0) return kBadSize;
  if (wtype != WeightType::kF32 && wtype != WeightType::kF16 && wtype != WeightType::kBF16) return kBadArgument;
  const int64_t np = num_panels(out_dim);
  if (wtype == WeightType::kBF16) {
    // [panel][k2][kCpuPanel][2]: output j's weights for k = 2*k2 (low half) and 2*k2+1, zero-padded in n and k
    const int64_t k2n = (in_dim + 1) / 2;
    const uint16_t* s = static_cast<const uint16_t*>(src);
    uint16_t* d = static_cast<uint16_t*>(dst);
    std::memset(d, 0, packed_linear_cpu_bytes(in_dim, out_dim, wtype));
    for (int64_t p = 0; p < np; ++p)
      for (int64_t k = 0; k < in_dim; ++k)
        for (int j = 0; j < kCpuPanel; ++j) {
          const int64_t n = p * kCpuPanel + j;
          if (n < out_dim) d[((p * k2n + k / 2) * kCpuPanel + j) * 2 + (k & 1)] = s[n * in_dim + k];
        }
    return kOk;
  }
  for (int64_t p = 0; p < np; ++p) {
    for (int64_t k = 0; k < in_dim; ++k) {
      for (int j = 0; j < kCpuPanel; ++j) {
        const int64_t n = p * kCpuPanel + j;
        const int64_t d = (p * in_dim + k) * kCpuPanel + j;
        if (wtype == WeightType::kF32) {
          static_cast<float*>(dst)[d] = n < out_dim ? static_cast<const float*>(src)[n * in_dim + k] : 0.0f;
        } else {
          static_cast<uint16_t*>(dst)[d] = n < out_dim ? static_cast<const uint16_t*>(src)[n * in_dim + k] : 0;
        }
      }
    }
  }
  return kOk;
}

namespace cpu {

namespace {

struct LinearWs {
  float* act;    // (rows, in_dim) prologue output, row-major or packed per row group (see RowGroups)
  float* cbuf;   // per thread: kNPMax x (kMCMax, kNR) accumulators of one panel unit
  float* bconv;  // per thread: (kKCMax, kNR) FP32 copy of an FP16 weight block
  float* row;    // per thread: (in_dim) one prologue row before it is scattered into the packed layout
  uint32_t* codes;  // per thread: ((in_dim + 3) / 4) INT8 codes of one row before they are scattered
};

constexpr int64_t kCStride = kMCMax * kNR;  // floats between the accumulators of the panels of a unit

// (rows, in_dim) floats; INT8 keeps each row's codes ((in_dim + 3) / 4 dwords <= in_dim) and, after all rows,
// one FP32 scale per row: hence the extra float per row.
size_t act_bytes(int64_t rows, int64_t in_dim) { return align_up(sizeof(float) * rows * (in_dim + 1)); }
size_t cbuf_bytes() { return align_up(sizeof(float) * kNPMax * kCStride); }
size_t bconv_bytes() { return align_up(sizeof(float) * kKCMax * kNR); }
size_t codes_bytes(int64_t in_dim) { return align_up(static_cast<size_t>((in_dim + 3) / 4 * 4)); }
size_t per_thread_bytes(int64_t in_dim) {
  return cbuf_bytes() + bconv_bytes() + align_up(sizeof(float) * in_dim) + codes_bytes(in_dim);
}

LinearWs carve(void* ws, int64_t rows, int64_t in_dim, int tid) {
  char* base = static_cast<char*>(ws);
  LinearWs w;
  w.act = reinterpret_cast<float*>(base);
  char* t = base + act_bytes(rows, in_dim) + per_thread_bytes(in_dim) * tid;
  w.cbuf = reinterpret_cast<float*>(t);
  w.bconv = reinterpret_cast<float*>(t + cbuf_bytes());
  w.row = reinterpret_cast<float*>(t + cbuf_bytes() + bconv_bytes());
  w.codes = reinterpret_cast<uint32_t*>(t + cbuf_bytes() + bconv_bytes() + align_up(sizeof(float) * in_dim));
  return w;
}

// The row groups of the row block starting at m0: near-equal groups of at most mr rows (e.g. 64 rows with
// the AVX-512 table are 6 groups of 11/11/11/11/10/10, not 5 x 12 + 4); the first `extra` have base + 1 rows.
struct RowGroups {
  int64_t mc, groups, base, extra;
  RowGroups(int64_t rows, int64_t m0, int mr, int64_t block) {
    mc = rows - m0 < block ? rows - m0 : block;
    groups = (mc + mr - 1) / mr;
    base = mc / groups;
    extra = mc % groups;
  }
  int64_t start(int64_t g) const { return g * base + (g < extra ? g : extra); }
  int size(int64_t g) const { return static_cast<int>(base + (g < extra ? 1 : 0)); }
  int64_t group_of(int64_t local_row) const {
    const int64_t big = extra * (base + 1);
    return local_row < big ? local_row / (base + 1) : extra + (local_row - big) / base;
  }
};

// A config with every default resolved against its table and the problem.
struct Resolved {
  const Kernels* kr;
  int mr;
  int64_t kc, mc;
  int np;
  bool pack_a, panel_major, drop_last;
  bool i8_tile;  // INT8 on the table's matrix engine (AMX): mr up to mr_max_i8_tile, row-major activations
};

Resolved resolve(const LinearConfig* cfg, const FusedLinearParams& p) {
  static const LinearConfig kDefault;
  const LinearConfig& c = cfg ? *cfg : kDefault;
  Resolved r;
  r.kr = c.kr ? c.kr : &kernels();
  const bool two = c.np >= 2 && p.wtype == WeightType::kF32 && r.kr->gemm_f32_2p != nullptr &&
                   r.kr->gemm_f32_2p_pa != nullptr;
  r.np = two ? 2 : 1;
  const int mr_cap = two && r.kr->mr_max_2p > 0 ? r.kr->mr_max_2p : r.kr->mr_max;
  r.mr = c.mr > 0 && c.mr < mr_cap ? c.mr : (c.mr > 0 || !two ? mr_cap : r.kr->mr_max);
  r.kc = c.kc > 0 ? (c.kc < kKCMax ? c.kc : kKCMax) : default_kc(r.mr);
  r.mc = c.mc > 0 ? (c.mc < kMCMax ? c.mc : kMCMax) : kMC;
  r.pack_a = c.pack_a;
  r.panel_major = c.panel_major;
  r.drop_last = c.drop_last_kblock;
  r.i8_tile = c.i8_tile && p.wtype == WeightType::kI8 && r.kr->gemm_i8_tile != nullptr;
  if (r.i8_tile) {
    const bool two_tiles = c.np >= 2 && r.kr->gemm_i8_tile_2p != nullptr;
    const int cap = two_tiles ? r.kr->mr_max_i8_tile_2p : r.kr->mr_max_i8_tile;
    r.np = two_tiles ? 2 : 1;
    r.mr = c.mr > 0 && c.mr < cap ? c.mr : cap;
    r.pack_a = false;
  }
  return r;
}

}  // namespace

int64_t default_kc(int mr) { return mr > kMR ? kKC * kMR / mr / 16 * 16 : kKC; }

size_t linear_workspace_bytes(int64_t rows, int64_t in_dim, int threads) {
  return act_bytes(rows, in_dim) + per_thread_bytes(in_dim) * static_cast<size_t>(threads > 0 ? threads : 1);
}

int fused_linear_phases(const FusedLinearParams& p) {
  return p.prologue == Prologue::kNone && p.wtype != WeightType::kBF16 && p.wtype != WeightType::kI8 ? 1 : 2;
}

namespace {

// bias, residual, store the valid columns of one panel of a row block
void store_panel(const FusedLinearParams& p, const float* cbuf, int64_t m0, int64_t mc, int64_t panel) {
  const int64_t N = p.out_dim, n0 = panel * kNR;
  const int nn = static_cast<int>(N - n0 < kNR ? N - n0 : kNR);
  for (int64_t r = 0; r < mc; ++r) {
    const float* c = cbuf + r * kNR;
    float* o = p.out + (m0 + r) * N + n0;
    const float* res = p.residual ? p.residual + (m0 + r) * N + n0 : nullptr;
    for (int j = 0; j < nn; ++j) {
      float v = c[j];
      if (p.bias) v += p.bias[n0 + j];
      if (res) v += res[j];
      o[j] = v;
    }
  }
}

// The prologue of row r (SiLU or GroupNorm + SiLU into `row`; without one: the input row itself), FP32: the input
// of the BF16 and INT8 paths' row conversion.
const float* prologue_row(const Kernels& kr, const FusedLinearParams& p, int64_t r, float* row) {
  const float* xr = p.x + r * p.in_dim;
  if (p.prologue == Prologue::kSilu) {
    kr.silu(xr, p.in_dim, row);
    return row;
  }
  if (p.prologue == Prologue::kGroupNormSilu) {
    gn_silu_row(kr, xr, p.in_dim, p.gn_eps, p.gamma, p.beta, row);
    return row;
  }
  return xr;
}

// Row r's converted units (n dwords: BF16 k-pairs or INT8 k-quads) into its row group's unit-major slab of A
// (A[group start * n + k * mr + r]: one sequential broadcast stream for the micro-kernel).
void scatter_to_group(const uint32_t* t, int64_t n, int64_t r, int64_t rows, const Resolved& cf, uint32_t* A) {
  const int64_t m0 = r / cf.mc * cf.mc;
  const RowGroups rg(rows, m0, cf.mr, cf.mc);
  const int64_t g = rg.group_of(r - m0), g0 = rg.start(g);
  const int mr = rg.size(g);
  uint32_t* dst = A + (m0 + g0) * n + (r - m0 - g0);
  for (int64_t k = 0; k < n; ++k) dst[k * mr] = t[k];
}

// BF16: the prologue (always a phase, also without one: the input is rounded to BF16) writes each row as BF16
// k-pairs into the activation buffer ((rows, K2) dwords, half the FP32 row's bytes); the GEMM is the FP32 path's
// blocking with k-blocks of k-pairs and table.gemm_bf16. The caller has checked that the table has the BF16
// kernels (kUnsupported otherwise); should the table be switched to one without them while a pass runs, the
// outputs are NaN, never a result of another arithmetic. Of a config it uses the table, mr, mc and the test-only
// flag (the k-block in pairs stays the table's; one panel per call).
void run_fused_linear_bf16(const FusedLinearParams& p, void* workspace, Runner& run, const Resolved& cf) {
  const Kernels& kr = *cf.kr;
  const int64_t K = p.in_dim, N = p.out_dim, K2 = (K + 1) / 2;
  const LinearWs w = carve(workspace, p.rows, K, run.slot());
  uint32_t* A = reinterpret_cast<uint32_t*>(w.act);
  const bool ok = kr.gemm_bf16 != nullptr && kr.f32_to_bf16 != nullptr;
  // more than one row group: each group's BF16 activations k-pair-major (A[group start * K2 + k2 * mr + r]),
  // one sequential broadcast stream as in the FP32 path; the chains, hence the results, are the same
  const bool packed = ok && cf.pack_a && kr.gemm_bf16_pa != nullptr && p.rows > cf.mr;
  run.phase(p.rows, run.chunk_for(p.rows), [&](int64_t r0, int64_t r1) {
    if (!ok) return;
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = prologue_row(kr, p, r, w.row);
      if (!packed) {
        kr.f32_to_bf16(src, K, reinterpret_cast<uint16_t*>(A + r * K2));
        continue;
      }
      uint32_t* t = reinterpret_cast<uint32_t*>(w.row);  // the row's k-pairs (in place when src is w.row)
      kr.f32_to_bf16(src, K, reinterpret_cast<uint16_t*>(t));
      scatter_to_group(t, K2, r, p.rows, cf, A);
    }
  });
  const uint32_t* B = static_cast<const uint32_t*>(p.weight);
  const int64_t npanels = num_panels(N);
  const size_t weight_bytes = static_cast<size_t>(npanels) * kNR * K2 * 4;
  const int64_t nblocks = (p.rows + cf.mc - 1) / cf.mc;
  const int64_t items = nblocks * npanels;
  // k-block of k-pairs: 128 pairs with 12 rows per group, an 8 KiB weight block beside a 6 KiB activation slice
  const int64_t kcb = default_kc(kr.mr_max);
  auto gemm_items = [&](int64_t i0, int64_t i1) {
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t bi = cf.panel_major ? item % nblocks : item / npanels;
      const int64_t panel = cf.panel_major ? item / nblocks : item % npanels;
      const int64_t m0 = bi * cf.mc;
      const RowGroups rg(p.rows, m0, cf.mr, cf.mc);
      const int64_t mc = rg.mc, groups = rg.groups;
      if (!ok) {
        for (int64_t r = 0; r < mc * kNR; ++r) w.cbuf[r] = __builtin_nanf("");
        store_panel(p, w.cbuf, m0, mc, panel);
        continue;
      }
      // test-only wrong config: the last k-block is skipped (one block: its second half)
      const int64_t kend = !cf.drop_last ? K2 : K2 > kcb ? (K2 - 1) / kcb * kcb : K2 / 2;
      if (kend == 0)
        for (int64_t i = 0; i < mc * kNR; ++i) w.cbuf[i] = 0.0f;
      for (int64_t k0 = 0; k0 < kend; k0 += kcb) {
        const int64_t kc = kend - k0 < kcb ? kend - k0 : kcb;
        const size_t boff = static_cast<size_t>((panel * K2 + k0) * kNR);
        const size_t next_off = (boff + static_cast<size_t>(kc) * kNR) * 4;
        const int64_t next_lines = (kc * kNR * 4 + 63) / 64;
        const int64_t per_group = (next_lines + groups - 1) / groups;
        for (int64_t g = 0; g < groups; ++g) {
          if (mc > 2 * kMR) {
            for (int64_t l = g * per_group; l < (g + 1) * per_group && l < next_lines; ++l) {
              const size_t off = next_off + static_cast<size_t>(l) * 64;
              if (off < weight_bytes) prefetch(static_cast<const char*>(p.weight) + off);
            }
          }
          const int64_t r = rg.start(g);
          const int mr = rg.size(g);
          if (packed) {
            kr.gemm_bf16_pa(mr, kc, A + (m0 + r) * K2 + k0 * mr, B + boff, w.cbuf + r * kNR, k0 > 0);
          } else {
            kr.gemm_bf16(mr, kc, A + (m0 + r) * K2 + k0, K2, B + boff, w.cbuf + r * kNR, k0 > 0);
          }
        }
      }
      store_panel(p, w.cbuf, m0, mc, panel);
    }
  };
  run.phase_guided(items, 1, gemm_items);
}

// INT8: the prologue phase (always one, also without a prologue) quantizes each row (Kernels::quantize_i8: one
// dynamic symmetric scale per row, codes in k-quads) into the activation buffer ((rows, K4) dwords; the row scales
// after them); the GEMM is the BF16 path's blocking with k-blocks of k-quads and table.gemm_i8 into INT32
// accumulators; the epilogue converts once per output: v = float(acc - offset * colsum[n]) * a_scale[row] *
// w_scale[n] (two FP32 multiplies, in this order), then + bias, + residual. The caller has checked the INT8 kernels
// (kUnsupported otherwise); a table switched to one without them mid-pass gives NaN outputs, never another
// arithmetic's. Of a config it uses the table, mr, mc, pack_a, panel order and the test-only flag.
void store_panel_i8(const Kernels& kr, const FusedLinearParams& p, const int32_t* cbuf, const float* ascale,
                    int offset, int64_t m0, int64_t mc, int64_t panel) {
  const int64_t N = p.out_dim, n0 = panel * kNR;
  const int nn = static_cast<int>(N - n0 < kNR ? N - n0 : kNR);
  const float* ws = packed_i8_scales(p.weight, p.in_dim, N) + n0;
  const int32_t* cs = packed_i8_colsums(p.weight, p.in_dim, N) + n0;
  if (kr.i8_epilogue_rows != nullptr) {
    kr.i8_epilogue_rows(cbuf, mc, nn, offset, cs, ascale + m0, ws, p.bias ? p.bias + n0 : nullptr,
                        p.residual ? p.residual + m0 * N + n0 : nullptr, N, p.out + m0 * N + n0, N);
    return;
  }
  for (int64_t r = 0; r < mc; ++r) {
    const int32_t* c = cbuf + r * kNR;
    const float sa = ascale[m0 + r];
    float* o = p.out + (m0 + r) * N + n0;
    const float* res = p.residual ? p.residual + (m0 + r) * N + n0 : nullptr;
    if (kr.i8_epilogue != nullptr) {
      kr.i8_epilogue(c, nn, offset, cs, sa, ws, p.bias ? p.bias + n0 : nullptr, res, o);
      continue;
    }
    for (int j = 0; j < nn; ++j) {
      float v = static_cast<float>(c[j] - offset * cs[j]) * sa;
      v = v * ws[j];
      if (p.bias) v += p.bias[n0 + j];
      if (res) v += res[j];
      o[j] = v;
    }
  }
}

void run_fused_linear_i8(const FusedLinearParams& p, void* workspace, Runner& run, const Resolved& cf) {
  const Kernels& kr = *cf.kr;
  const int64_t K = p.in_dim, N = p.out_dim, K4 = (K + 3) / 4;
  const LinearWs w = carve(workspace, p.rows, K, run.slot());
  uint32_t* A = reinterpret_cast<uint32_t*>(w.act);
  float* ascale = w.act + p.rows * K;  // after every row's codes (K4 <= K dwords per row)
  const bool ok = kr.gemm_i8 != nullptr && kr.quantize_i8 != nullptr;
  const bool packed = ok && !cf.i8_tile && cf.pack_a && kr.gemm_i8_pa != nullptr && p.rows > cf.mr;
  const auto gemm_rows = cf.i8_tile ? kr.gemm_i8_tile : kr.gemm_i8;
  run.phase(p.rows, run.chunk_for(p.rows), [&](int64_t r0, int64_t r1) {
    if (!ok) return;
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = prologue_row(kr, p, r, w.row);
      if (!packed) {
        kr.quantize_i8(src, K, A + r * K4, ascale + r);
        continue;
      }
      uint32_t* t = w.codes;
      kr.quantize_i8(src, K, t, ascale + r);
      scatter_to_group(t, K4, r, p.rows, cf, A);
    }
  });
  const uint32_t* B = static_cast<const uint32_t*>(p.weight);
  const int64_t npanels = num_panels(N);
  const size_t weight_bytes = static_cast<size_t>(npanels) * kNR * K4 * 4;
  const int npu = cf.i8_tile && cf.np == 2 ? 2 : 1;  // panels per call: two with the 2 x 2 tile kernel
  const int64_t units = (npanels + npu - 1) / npu;
  const int64_t nblocks = (p.rows + cf.mc - 1) / cf.mc;
  const int64_t items = nblocks * units;  // item = (row block, panel unit)
  const int64_t bstride = K4 * kNR;       // dwords between the same k-quad of adjacent panels
  // k-block of k-quads: 128 quads (512 k, an 8 KiB weight block) with 12 rows per group beside a 6 KiB slice;
  // tiles: 192 quads (twelve 16-quad tiles per C load/store; measured +3 % over 96 at 256 rows, 2026-12-06)
  const int64_t kcb = cf.i8_tile ? 192 : default_kc(kr.mr_max);
  int32_t* cbuf = reinterpret_cast<int32_t*>(w.cbuf);
  auto gemm_items = [&](int64_t i0, int64_t i1) {
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t bi = cf.panel_major ? item % nblocks : item / units;
      const int64_t unit = cf.panel_major ? item / nblocks : item % units;
      const int64_t m0 = bi * cf.mc, panel = unit * npu;
      const int np = panel + npu <= npanels ? npu : static_cast<int>(npanels - panel);
      const RowGroups rg(p.rows, m0, cf.mr, cf.mc);
      const int64_t mc = rg.mc, groups = rg.groups;
      if (!ok) {
        for (int64_t r = 0; r < mc; ++r)
          for (int64_t n = panel * kNR; n < (panel + np) * kNR && n < N; ++n) p.out[(m0 + r) * N + n] = __builtin_nanf("");
        continue;
      }
      const int64_t kend = !cf.drop_last ? K4 : K4 > kcb ? (K4 - 1) / kcb * kcb : K4 / 2;
      if (kend == 0)
        for (int q = 0; q < np; ++q)
          for (int64_t i = 0; i < mc * kNR; ++i) cbuf[q * kCStride + i] = 0;
      for (int64_t k0 = 0; k0 < kend; k0 += kcb) {
        const int64_t kc = kend - k0 < kcb ? kend - k0 : kcb;
        const size_t boff = static_cast<size_t>((panel * K4 + k0) * kNR);
        const int64_t next_lines = (kc * kNR * 4 + 63) / 64;
        const int64_t per_group = (next_lines + groups - 1) / groups;
        for (int64_t g = 0; g < groups; ++g) {
          if (mc > 2 * kMR && !cf.i8_tile) {  // tiles: the hardware prefetchers keep up (measured: +7 % at 256 rows without)
            for (int q = 0; q < np; ++q) {
              const size_t next_off = (boff + static_cast<size_t>(q * bstride + kc * kNR)) * 4;
              for (int64_t l = g * per_group; l < (g + 1) * per_group && l < next_lines; ++l) {
                const size_t off = next_off + static_cast<size_t>(l) * 64;
                if (off < weight_bytes) prefetch(static_cast<const char*>(p.weight) + off);
              }
            }
          }
          const int64_t r = rg.start(g);
          const int mr = rg.size(g);
          if (npu == 2) {
            // a short last unit (odd panel count) runs the two-panel kernel with its one panel twice; the copy's
            // sums land in the unused half of cbuf
            kr.gemm_i8_tile_2p(mr, kc, A + (m0 + r) * K4 + k0, K4, B + boff, np == 2 ? bstride : 0, cbuf + r * kNR,
                               kCStride, k0 > 0);
          } else if (packed) {
            kr.gemm_i8_pa(mr, kc, A + (m0 + r) * K4 + k0 * mr, B + boff, cbuf + r * kNR, k0 > 0);
          } else {
            gemm_rows(mr, kc, A + (m0 + r) * K4 + k0, K4, B + boff, cbuf + r * kNR, k0 > 0);
          }
        }
      }
      for (int q = 0; q < np; ++q)
        store_panel_i8(kr, p, cbuf + q * kCStride, ascale, kr.i8_act_offset, m0, mc, panel + q);
    }
  };
  run.phase_guided(items, 1, gemm_items);
}

}  // namespace

void run_fused_linear(const FusedLinearParams& p, void* workspace, Runner& run, const LinearConfig* cfg) {
  if (p.rows == 0) return;
  const Resolved cf = resolve(cfg, p);
  const Kernels& kr = *cf.kr;
  if (p.wtype == WeightType::kBF16) {
    run_fused_linear_bf16(p, workspace, run, cf);
    return;
  }
  if (p.wtype == WeightType::kI8) {
    run_fused_linear_i8(p, workspace, run, cf);
    return;
  }
  const int64_t K = p.in_dim, N = p.out_dim;
  const LinearWs w = carve(workspace, p.rows, K, run.slot());

  // Packed activations: with a table that has the packed kernel and more than one row group, the prologue
  // writes each row group k-major (act[group start * K + k * mr + r]), so the micro-kernel reads one
  // sequential broadcast stream instead of mr strided rows (AVX-512, 64 rows: +12% GEMM throughput). The FMA
  // chains are the same as with the row-major layout, so the layout never changes a result.
  const bool packed = cf.pack_a && p.prologue != Prologue::kNone && kr.gemm_f32_pa != nullptr && p.rows > cf.mr;
  const float* A = p.x;
  if (p.prologue != Prologue::kNone) {
    run.phase(p.rows, run.chunk_for(p.rows), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = p.x + r * K;
        float* ar = packed ? w.row : w.act + r * K;
        if (p.prologue == Prologue::kSilu) {
          kr.silu(xr, K, ar);
        } else {
          gn_silu_row(kr, xr, K, p.gn_eps, p.gamma, p.beta, ar);
        }
        if (packed) {
          const int64_t m0 = r / cf.mc * cf.mc;
          const RowGroups rg(p.rows, m0, cf.mr, cf.mc);
          const int64_t g = rg.group_of(r - m0), g0 = rg.start(g);
          const int mr = rg.size(g);
          float* dst = w.act + (m0 + g0) * K + (r - m0 - g0);
          for (int64_t k = 0; k < K; ++k) dst[k * mr] = ar[k];
        }
      }
    });
    A = w.act;
  }

  const bool f16 = p.wtype == WeightType::kF16;
  const size_t esize = weight_type_size(p.wtype);
  const int64_t npanels = num_panels(N);
  const int64_t units = (npanels + cf.np - 1) / cf.np;  // panel units of np panels (the last may be short)
  const size_t weight_bytes = static_cast<size_t>(npanels) * kNR * K * esize;
  const int64_t nblocks = (p.rows + cf.mc - 1) / cf.mc;
  const int64_t items = nblocks * units;  // item = (row block, panel unit)
  // k-block: the default gives a table with more rows per group a shorter block, so that a group's activation
  // slice stays at 6 KiB beside the weight block in L1 (AVX-512, 12 rows: 128; AVX2 / NEON / scalar, 6 rows:
  // 256). The block size never changes a result: the accumulators are stored and reloaded exactly between blocks.
  const int64_t kcb = cf.kc;
  const int64_t bstride = K * kNR;  // elements between the same k of adjacent panels
  auto gemm_items = [&](int64_t i0, int64_t i1) {
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t bi = cf.panel_major ? item % nblocks : item / units;
      const int64_t unit = cf.panel_major ? item / nblocks : item % units;
      const int64_t m0 = bi * cf.mc, panel = unit * cf.np;
      const int np = panel + cf.np <= npanels ? cf.np : static_cast<int>(npanels - panel);
      // Which group a row is in never changes its result (one FMA chain per output, k in order).
      const RowGroups rg(p.rows, m0, cf.mr, cf.mc);
      const int64_t mc = rg.mc, groups = rg.groups;
      // FP16 weights: convert each k-block once and reuse it for all row groups, unless there is only one
      // group and the table has an on-the-fly FP16 kernel (small batches: memory-bound, convert in registers).
      const bool direct_f16 = f16 && groups == 1 && !packed && kr.gemm_f16 != nullptr;
      // test-only wrong config: the last k-block is skipped (one block: its second half)
      const int64_t kend = !cf.drop_last ? K : K > kcb ? (K - 1) / kcb * kcb : K / 2;
      for (int64_t k0 = 0; k0 < kend; k0 += kcb) {
        const int64_t kc = kend - k0 < kcb ? kend - k0 : kcb;
        const size_t boff = static_cast<size_t>((panel * K + k0) * kNR);
        const float* b32 = nullptr;
        if (!f16) {
          b32 = static_cast<const float*>(p.weight) + boff;
        } else if (!direct_f16) {
          kr.f16_to_f32(static_cast<const uint16_t*>(p.weight) + boff, w.bconv, kc * kNR);
          b32 = w.bconv;
        }
        // Software prefetch of the weight block that follows in memory (the next k-block of this panel,
        // or the next panel), spread over the row groups: weights stream from DRAM once per pass, and the
        // hardware prefetchers alone leave the first lines of each block waiting. (Two-panel units: the
        // second panel's next block too.)
        const int64_t next_lines = (kc * kNR * static_cast<int64_t>(esize) + 63) / 64;
        const int64_t per_group = (next_lines + groups - 1) / groups;
        for (int64_t g = 0; g < groups; ++g) {
          if (mc > 2 * kMR) {  // small batches are a plain stream: the hardware prefetchers handle it
            for (int q = 0; q < np; ++q) {
              const size_t next_off = (boff + static_cast<size_t>(q * bstride + kc * kNR)) * esize;
              for (int64_t l = g * per_group; l < (g + 1) * per_group && l < next_lines; ++l) {
                const size_t off = next_off + static_cast<size_t>(l) * 64;
                if (off < weight_bytes) prefetch(static_cast<const char*>(p.weight) + off);
              }
            }
          }
          const int64_t r = rg.start(g);
          const int mr = rg.size(g);
          float* c = w.cbuf + r * kNR;
          if (cf.np == 2) {
            // a short last unit (odd panel count) runs the same two-panel kernel with its one panel twice (the
            // second copy's accumulators land in the unused half of cbuf): groups may exceed the one-panel
            // kernel's mr_max, and every output keeps the two-panel kernel's chain
            const int64_t bs = np == 2 ? bstride : 0;
            if (packed) {
              kr.gemm_f32_2p_pa(mr, kc, A + (m0 + r) * K + k0 * mr, b32, bs, c, kCStride, k0 > 0);
            } else {
              kr.gemm_f32_2p(mr, kc, A + (m0 + r) * K + k0, K, b32, bs, c, kCStride, k0 > 0);
            }
            continue;
          }
          if (packed) {
            kr.gemm_f32_pa(mr, kc, A + (m0 + r) * K + k0 * mr, b32, c, k0 > 0);
            continue;
          }
          const float* a = A + (m0 + r) * K + k0;
          if (direct_f16) {
            kr.gemm_f16(mr, kc, a, K, static_cast<const uint16_t*>(p.weight) + boff, c, k0 > 0);
          } else {
            kr.gemm_f32(mr, kc, a, K, b32, c, k0 > 0);
          }
        }
      }
      if (kend == 0) {  // (test-only config, K = 1: no k-block ran) the bias alone
        for (int64_t i = 0; i < mc * kNR; ++i) w.cbuf[i] = 0.0f;
        if (np == 2)
          for (int64_t i = 0; i < mc * kNR; ++i) w.cbuf[kCStride + i] = 0.0f;
      }
      for (int q = 0; q < np; ++q) store_panel(p, w.cbuf + q * kCStride, m0, mc, panel + q);
    }
  };
  run.phase_guided(items, 1, gemm_items);
}

}  // namespace cpu

size_t fused_linear_cpu_workspace_bytes(int64_t rows, int64_t in_dim, int64_t /*out_dim*/, int threads) {
  return cpu::linear_workspace_bytes(rows, in_dim, cpu::resolve_threads(threads));
}

int fused_linear_cpu(const FusedLinearParams& p) {
  int rc = check_fused_linear_params(p);
  if (rc != kOk) return rc;
  if (p.rows == 0) return kOk;
  if (p.wtype == WeightType::kBF16 && cpu::kernels().gemm_bf16 == nullptr) return kUnsupported;
  if (p.wtype == WeightType::kI8 && cpu::kernels().gemm_i8 == nullptr) return kUnsupported;
  const int nt = cpu::resolve_threads(p.threads);
  if (p.workspace == nullptr) return kNullPointer;
  if (p.workspace_bytes < cpu::linear_workspace_bytes(p.rows, p.in_dim, nt)) return kWorkspaceTooSmall;
  cpu::team_run(nt, cpu::fused_linear_phases(p), [&](cpu::Runner& r) { cpu::run_fused_linear(p, p.workspace, r); });
  return kOk;
}

}  // namespace lfdn
