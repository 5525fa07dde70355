// Internal to the CPU backend: the inner kernels, one table per instruction set, picked at run time.
// Each SIMD table lives in its own translation unit compiled with its ISA flags (AVX2: -mavx2 -mfma -mf16c;
// AVX-512: -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c) and is used only when the CPU reports
// those features, so the rest of the library stays at the portable baseline. On AArch64 the NEON table
// needs no flags (Advanced SIMD is part of the base architecture) and is chosen when HWCAP reports it.
// The loops the SIMD tables share (micro-kernels, FP16 widening, moments, GroupNorm-SiLU, SiLU, the FMA probe)
// are written once in kernels_isa.inl over a per-ISA vector-ops trait; each table's file includes it inside its
// anonymous namespace, so every instantiation has internal linkage and that file's ISA flags only.
#pragma once
#include <cstddef>
#include <cstdint>

#include "lfdn/linear.h"

namespace lfdn {
namespace cpu {

constexpr int kNR = kCpuPanel;  // outputs per packed weight panel
constexpr int kMR = 6;          // rows per micro-kernel call of the AVX2 and scalar tables
constexpr int kMRLimit = 16;    // no table takes more rows per call (Kernels::mr_max)
constexpr int64_t kKC = 256;    // k-block: a 16 x 256 FP32 weight block (16 KiB) stays in L1 across row groups
constexpr int64_t kMC = 96;     // row block: bounds the activation slab a thread re-reads per panel
// Limits of the blocking variants (tactics_cpu.cpp): the workspace is sized for them whatever tactic runs.
constexpr int64_t kMCMax = 256;  // row block
constexpr int64_t kKCMax = 512;  // k-block (the FP16 conversion buffer)
constexpr int kNPMax = 2;        // weight panels per micro-kernel call

struct Kernels {
  const char* name;
  int mr_max;  // rows per gemm call (<= kMRLimit); the caller splits a row block into near-equal groups
  // c[r*kNR + j] (+)= sum_{k < kc} a[r*lda + k] * b[k*kNR + j], r < mr <= mr_max; accumulate: add to c, else set.
  void (*gemm_f32)(int mr, int64_t kc, const float* a, int64_t lda, const float* b, float* c, int accumulate);
  // Same with the activations packed k-major per row group: a[k*mr + r] (one sequential broadcast stream instead
  // of mr strided ones); null: the caller keeps the (rows, k) layout.
  void (*gemm_f32_pa)(int mr, int64_t kc, const float* a, const float* b, float* c, int accumulate);
  // Same with FP16 weights converted on the fly; null: the caller converts blocks with f16_to_f32 first.
  void (*gemm_f16)(int mr, int64_t kc, const float* a, int64_t lda, const uint16_t* b, float* c, int accumulate);
  void (*f16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  // mean and 1/sqrt(var + eps) of x[0..n) in FP32 (two passes: mean, then centred squares)
  void (*moments)(const float* x, int64_t n, float eps, float* mean, float* rstd);
  // out = SiLU((x - mean) * rstd * g + b)
  void (*gn_silu)(const float* x, int64_t n, float mean, float rstd, const float* g, const float* b, float* out);
  // out = SiLU(x)
  void (*silu)(const float* x, int64_t n, float* out);
  // Machine probe: `iters` rounds of independent FMA chains in the table's widest registers (register-only, no
  // memory traffic); returns the floating-point operations done (2 per lane per FMA). *sink defeats elimination.
  double (*fma_loop)(int64_t iters, float* sink);
  // BF16 weights and activations, FP32 accumulation (null: this table / CPU has no BF16 dot product; a BF16
  // layer is then refused with kUnsupported, never computed another way). Units are k-pairs: a[r*lda2 + k2]
  // holds the BF16 activations 2*k2 (low half) and 2*k2+1 (high half) of row r; b[k2*kNR + j] the BF16 weights
  // of output j at the same two k. c[r*kNR + j] (+)= sum over k2 < kc2 of both products, one chain per output.
  void (*gemm_bf16)(int mr, int64_t kc2, const uint32_t* a, int64_t lda2, const uint32_t* b, float* c,
                    int accumulate) = nullptr;
  // Same with the activations packed k-pair-major per row group: a[k2*mr + r] (one sequential broadcast stream).
  void (*gemm_bf16_pa)(int mr, int64_t kc2, const uint32_t* a, const uint32_t* b, float* c, int accumulate) = nullptr;
  // dst[0..n) = BF16(src[0..n)) rounded to nearest even (then dst[n] = 0 when n is odd: the k-pair padding).
  // dst may be src itself (in-place narrowing: every block is loaded before its half-size result is stored).
  void (*f32_to_bf16)(const float* src, int64_t n, uint16_t* dst) = nullptr;
  // Machine probe of the BF16 path: `iters` rounds of independent vdpbf16ps chains (4 flops per FP32 lane:
  // two products, two adds); null without BF16 kernels.
  double (*bf16_dot_loop)(int64_t iters, float* sink) = nullptr;
  // Two adjacent weight panels per call (32 outputs; 2 x mr accumulators, 2 weight loads per mr broadcasts):
  // b holds panel 0 at b[k*kNR + j] and panel 1 at b[bstride + k*kNR + j]; c likewise at c and c + cstride.
  // Each output is the same FMA chain as gemm_f32 / gemm_f32_pa computes for it (bit-identical results);
  // null: the table has no two-panel kernel. mr <= mr_max.
  void (*gemm_f32_2p)(int mr, int64_t kc, const float* a, int64_t lda, const float* b, int64_t bstride, float* c,
                      int64_t cstride, int accumulate) = nullptr;
  void (*gemm_f32_2p_pa)(int mr, int64_t kc, const float* a, const float* b, int64_t bstride, float* c,
                         int64_t cstride, int accumulate) = nullptr;
  int mr_max_2p = 0;  // rows per two-panel call (<= kMRLimit); 0: mr_max

  // ---- INT8 (WeightType::kI8; null: this table / CPU has no INT8 dot product and an INT8 layer is refused with
  // kUnsupported, never computed another way). Units are k-quads: b[k4*kNR + j] holds the int8 weights of output
  // j at k = 4*k4 .. 4*k4+3 (lowest byte first, pack_linear_cpu_i8); a[r*lda4 + k4] the row's 4 activation
  // codes at the same k, as quantize_i8 wrote them. c[r*kNR + j] (+)= sum over k4 < kc4 of the 4 products of
  // code * weight, in INT32, exactly (no saturation can occur: |code| <= 255, |w| <= 127, in_dim <= 2^16).
  // The code of activation value q (an int in [-127, 127]) is q + i8_act_offset: 0 for tables that multiply
  // signed bytes (scalar, NEON sdot), 128 for x86 vpdpbusd (unsigned x signed bytes). With an offset the caller
  // subtracts i8_act_offset * colsum[j] (packed_i8_colsums) from every output: the INT32 results are then
  // the exact sum of q * w on every table, bit-identical across tables.
  void (*gemm_i8)(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                  int accumulate) = nullptr;
  // Same with the activations packed k-quad-major per row group: a[k4*mr + r] (one sequential broadcast stream).
  void (*gemm_i8_pa)(int mr, int64_t kc4, const uint32_t* a, const uint32_t* b, int32_t* c, int accumulate) = nullptr;
  int i8_act_offset = 0;
  // One row's dynamic symmetric quantization (the same on every table, bit for bit): amax = max |x[k]|; when amax
  // is 0 every code is the offset and *scale = 0; when amax is not finite (inf or NaN in the row) every code is
  // the offset and *scale = NaN (the outputs become NaN, as the FP32 path would give inf/NaN); else inv =
  // 127.0f / amax (FP32 division), q[k] = round_half_even(x[k] * inv) clamped to [-127, 127] (FP32 multiply),
  // *scale = amax / 127.0f. dst gets (n + 3) / 4 dwords of codes (q + i8_act_offset as bytes, k-quads, the
  // padding of the last quad the code of 0).
  void (*quantize_i8)(const float* x, int64_t n, uint32_t* dst, float* scale) = nullptr;
  // Machine probe of the INT8 path: `iters` rounds of independent dot-product chains (2 ops per byte product);
  // null without INT8 kernels.
  double (*i8_dot_loop)(int64_t iters, float* sink) = nullptr;
  // The same INT32 sums on a matrix engine (x86 AMX-INT8 tiles; gemm_i8's codes and semantics, row-major
  // activations only, mr <= mr_max_i8_tile rows); null where the CPU or OS has none. Only the `.amx` tactics use it.
  void (*gemm_i8_tile)(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                       int accumulate) = nullptr;
  int mr_max_i8_tile = 0;
  // Two weight panels per tile call (32 outputs; 2 x 2 C tiles over up to 2 x 16 rows: each A and B tile loaded
  // once per two tdpbusd), b / c as gemm_f32_2p's (bstride, cstride); mr <= mr_max_i8_tile_2p. Same INT32 sums.
  void (*gemm_i8_tile_2p)(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int64_t bstride,
                          int32_t* c, int64_t cstride, int accumulate) = nullptr;
  int mr_max_i8_tile_2p = 0;
  // Machine probe of the tile path (independent tdpbusd chains, 2 ops per byte product); null without tiles.
  double (*i8_tile_dot_loop)(int64_t iters, float* sink) = nullptr;
  // The INT8 epilogue of one row of one panel (nn <= 16 outputs), the same on every table bit for bit:
  // out[j] = float(c[j] - offset * colsum[j]) * sa * ws[j] (two FP32 multiplies, in this order), then + bias[j],
  // then + res[j] (bias / res may be null). Null: the caller's portable loop (the same arithmetic).
  void (*i8_epilogue)(const int32_t* c, int nn, int offset, const int32_t* colsum, float sa, const float* ws,
                      const float* bias, const float* res, float* out) = nullptr;
};

const Kernels& scalar_kernels();
const Kernels* avx2_kernels();    // null when not compiled in (non-x86 builds)
const Kernels* avx512_kernels();  // null when not compiled in
const Kernels* neon_kernels();    // null when not compiled in (non-AArch64 builds)

// The active table: the best the CPU supports (avx512 > avx2 > scalar on x86-64, neon > scalar on AArch64).
// LFDN_EDGE_CPU_ISA=<name> at first use selects another one (ignored, with the automatic choice kept, when
// that table is not available here).
const Kernels& kernels();
// Select "auto" or a table name ("scalar", "avx2", "avx512", "neon"); false when unavailable on this build/CPU.
bool select_isa(const char* name);
// The table of that name if compiled in and supported by this CPU, else null ("auto": the automatic choice).
const Kernels* table_by_name(const char* name);
bool cpu_has_avx2_fma_f16c();
bool cpu_has_avx512();  // AVX-512 F, BW, VL, DQ (+ FMA, F16C)
bool cpu_has_neon();    // AArch64 Advanced SIMD (HWCAP_ASIMD) and FP
bool cpu_has_avx512_bf16();  // cpu_has_avx512() and AVX512_BF16 (vdpbf16ps), with the BF16 kernels compiled in
// True when $LFDN_EDGE_CPU_FEATURES_OFF (comma-separated, read when the kernel tables are first built) names the
// feature: avx512vnni, avxvnni, amx, dotprod. The kernels of a feature turned off are not offered, as on a CPU
// without it (how the tests check the refusals on a CPU that has every feature).
bool cpu_feature_off(const char* name);
bool cpu_has_avx512_vnni();  // cpu_has_avx512() and AVX512_VNNI (vpdpbusd zmm), with the VNNI kernels compiled in
bool cpu_has_avx_vnni();     // cpu_has_avx2_fma_f16c() and AVX-VNNI (vpdpbusd ymm, VEX), with its kernels compiled in
bool cpu_has_neon_dotprod(); // cpu_has_neon() and the dot-product extension (sdot; HWCAP_ASIMDDP), kernels compiled in

// The portable INT8 row quantization (the rule of Kernels::quantize_i8), for tables without a vector one and
// as the reference: offset 0 (signed codes) or 128 (unsigned codes).
void quantize_i8_rows_portable(const float* x, int64_t n, int offset, uint32_t* dst, float* scale);

// kernels_avx512bf16.cpp (compiled with -mavx512bf16; only reached when cpu_has_avx512_bf16())
void avx512bf16_gemm(int mr, int64_t kc2, const uint32_t* a, int64_t lda2, const uint32_t* b, float* c,
                     int accumulate);
void avx512bf16_gemm_pa(int mr, int64_t kc2, const uint32_t* a, const uint32_t* b, float* c, int accumulate);
void avx512bf16_f32_to_bf16(const float* src, int64_t n, uint16_t* dst);
double avx512bf16_dot_loop(int64_t iters, float* sink);

// kernels_avx512vnni.cpp (compiled with -mavx512vnni; only reached when cpu_has_avx512_vnni()): codes are
// unsigned (q + 128), i8_act_offset 128.
void avx512vnni_gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                        int accumulate);
void avx512vnni_gemm_i8_pa(int mr, int64_t kc4, const uint32_t* a, const uint32_t* b, int32_t* c, int accumulate);
void avx512vnni_quantize_i8(const float* x, int64_t n, uint32_t* dst, float* scale);
void avx512vnni_i8_epilogue(const int32_t* c, int nn, int offset, const int32_t* colsum, float sa, const float* ws,
                            const float* bias, const float* res, float* out);
double avx512vnni_dot_loop(int64_t iters, float* sink);

// kernels_avxvnni.cpp (compiled with -mavx2 -mfma -mavxvnni; only reached when cpu_has_avx_vnni()): the avx2 table's
// INT8 entries, unsigned codes (q + 128), i8_act_offset 128.
void avxvnni_gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                     int accumulate);
void avxvnni_gemm_i8_pa(int mr, int64_t kc4, const uint32_t* a, const uint32_t* b, int32_t* c, int accumulate);
void avxvnni_quantize_i8(const float* x, int64_t n, uint32_t* dst, float* scale);
void avxvnni_i8_epilogue(const int32_t* c, int nn, int offset, const int32_t* colsum, float sa, const float* ws,
                         const float* bias, const float* res, float* out);
double avxvnni_dot_loop(int64_t iters, float* sink);

// kernels_avx512amx.cpp (compiled with -mamx-tile -mamx-int8): usable() checks CPUID, XCR0 and asks Linux for the
// tile data permission (once); the kernel is reached only when it returned true. Codes as the VNNI path (q + 128).
bool avx512amx_usable();
void avx512amx_gemm_i8(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int32_t* c,
                       int accumulate);
double avx512amx_dot_loop(int64_t iters, float* sink);
void avx512amx_gemm_i8_2p(int mr, int64_t kc4, const uint32_t* a, int64_t lda4, const uint32_t* b, int64_t bstride,
                          int32_t* c, int64_t cstride, int accumulate);

}  // namespace cpu
}  // namespace lfdn
