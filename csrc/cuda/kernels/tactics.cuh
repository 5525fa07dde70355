// Device code of the CUDA tactics (lfdn/cuda_tactics.h): the prologue kernel, the weight-streaming
// split-K kernel (FP16 and INT8 weights), the mma.sync tile kernel, the epilogue kernel of cuBLASLt and the
// reference kernel.
// Compiled for sm_72 .. sm_90; the sm_80-only instructions (cp.async, mma.sync m16n8k16) are guarded by
// __CUDA_ARCH__ and the launchers' `applies` checks the device and the compiled binary at run time.
// Never run on a GPU (none has been lent); executed in CI by the project's PTX interpreter (tools/ptxsim,
// tests/test_ptxsim_kernels.py) with the launches the launchers make, against the CPU reference.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "lfdn/fp16_guard.h"
#include "lfdn/gn_stats.h"
#include "cuda/kernels/tile_map.h"

namespace lfdn {
namespace cuda {
namespace tac {

// ------------------------------------------------------------------------------------------- helpers
__device__ __forceinline__ float silu(float v) { return v / (1.0f + __expf(-v)); }

__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; src_bytes 0 fills the 16 bytes with zeros (sm_80+)
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(src_bytes)
               : "memory");
#else
  (void)smem; (void)gmem; (void)src_bytes;
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

// 8 FP16 (one uint4) -> 8 floats
__device__ __forceinline__ void h8_to_f(const uint4& v, float* f) {
  const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __half22float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

// ------------------------------------------------------------------------------------------- prologue
// One CTA per row r: A[r, k] = half(prologue(x[r, k]) * scale[r]) for k < K, 0 for K <= k < Kp, and
// scale[r] = fp16_row_scale(max_k |prologue(x[r, k])|). GroupNorm(1) statistics by the rule of lfdn/gn_stats.h
// (FP32, fixed reduction order; rows above 2^32 in magnitude scaled by a power of two first).
constexpr int kPrologueThreads = 256;

struct PrologueArgs {
  const float* x;
  const float* gamma;
  const float* beta;
  __half* a;
  float* scale;
  float gn_eps;
  int mode;  // 0 none, 1 SiLU, 2 GN + affine + SiLU
  int64_t K, Kp;
};

__device__ __forceinline__ float block_reduce(float v, float* red, bool is_max) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? gn_nan_max(v, u) : v + u;
  }
  __syncthreads();  // red may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = red[0];
  for (int w = 1; w < kPrologueThreads / 32; ++w) t = is_max ? gn_nan_max(t, red[w]) : t + red[w];
  return t;
}

__device__ __forceinline__ float prologue_value(const PrologueArgs& a, float v, int64_t k, const GnStats& st) {
  if (a.mode == 2) v = gn_normalize(v, st) * a.gamma[k] + a.beta[k];
  if (a.mode >= 1) v = silu(v);
  return v;
}

__global__ void __launch_bounds__(kPrologueThreads) prologue_kernel(PrologueArgs a) {
  __shared__ float red[kPrologueThreads / 32];
  const int64_t r = blockIdx.x;
  const float* xr = a.x + r * a.K;
  GnStats st;
  if (a.mode == 2) {  // the shared rule of lfdn/gn_stats.h: max |x| and the sum, rescaled sum if needed, squares
    float s = 0.0f, mx = 0.0f;
    for (int64_t k = threadIdx.x; k < a.K; k += kPrologueThreads) {
      s += xr[k];
      mx = gn_nan_max(mx, fabsf(xr[k]));
    }
    st.inv_scale = gn_input_scale(block_reduce(mx, red, true));
    float sum = block_reduce(s, red, false);
    if (st.inv_scale != 1.0f) {  // the same value in every thread (a block reduction): a uniform branch
      s = 0.0f;
      for (int64_t k = threadIdx.x; k < a.K; k += kPrologueThreads) s += xr[k] * st.inv_scale;
      sum = block_reduce(s, red, false);
    }
    st.mean = gn_mean(sum, a.K);
    float q = 0.0f;
    for (int64_t k = threadIdx.x; k < a.K; k += kPrologueThreads) {
      const float d = xr[k] * st.inv_scale - st.mean;
      q += d * d;
    }
    st.rstd = gn_rstd(block_reduce(q, red, false), a.K, a.gn_eps, st.inv_scale);
  }
  float m = 0.0f;
  for (int64_t k = threadIdx.x; k < a.K; k += kPrologueThreads) m = gn_nan_max(m, fabsf(prologue_value(a, xr[k], k, st)));
  const float sc = fp16_row_scale(block_reduce(m, red, true));
  __half* ar = a.a + r * a.Kp;
  for (int64_t k = threadIdx.x; k < a.Kp; k += kPrologueThreads)
    ar[k] = __float2half_rn(k < a.K ? prologue_value(a, xr[k], k, st) * sc : 0.0f);
  if (threadIdx.x == 0) a.scale[r] = sc;
}

// ------------------------------------------------------------------------------------------- epilogue value
struct EpilogueArgs {
  float* out;             // (rows, N)
  const float* residual;  // (rows, N) or null, may alias out (read before the write of the same element)
  const float* bias;      // (N) or null
  const float* scale;     // (rows) FP16 guard scales
  int64_t rows, N;
};

__device__ __forceinline__ void store_out(const EpilogueArgs& e, int64_t r, int64_t n, float v) {
  const float s = e.scale[r];
  if (s != 1.0f) v = v / s;  // undo the row's guard scale (a power of two: exact)
  if (e.bias) v += e.bias[n];
  if (e.residual) v += e.residual[r * e.N + n];
  e.out[r * e.N + n] = v;
}

// cuBLASLt's epilogue: d (rows, N) FP32 -> out with the guard scale, bias and residual
__global__ void __launch_bounds__(256) epilogue_kernel(EpilogueArgs e, const float* d) {
  const int64_t total = e.rows * e.N;
  for (int64_t i = blockIdx.x * 256ll + threadIdx.x; i < total; i += static_cast<int64_t>(gridDim.x) * 256)
    store_out(e, i / e.N, i % e.N, d[i]);
}

// ------------------------------------------------------------------------------------------- weight streaming
// CTA: 4 warps, warp w owns NW consecutive output columns n0 + w*NW + j; the CTA covers 4*NW columns and the
// k-slice [blockIdx.y * ks, min(+ks, Kp)). Lane l reads 8 consecutive k (16 bytes) of each of its warp's
// columns per k-step of 256, so one warp-wide load covers 512 contiguous bytes of a weight row. Activations
// A (FP16, rows <= MAXR) are read through L1/L2 (tiny, shared by every CTA). Per thread a STAGES-deep ring
// of its own 16-byte slots is filled by cp.async (sm_80+; no barrier: a thread reads only what it copied),
// or, before sm_80, the next k-step is loaded into registers while the current one is computed.
// After the k-slice: butterfly warp sums (fixed order), partial[split][r][n] written; with more than one
// split the last CTA of the column block (an integer counter, reset by that CTA) sums the partials in split
// order 0..S-1 and writes out: deterministic, independent of which CTA finishes first.
constexpr int kStreamThreads = 128;
constexpr int kStreamStages = 4;
constexpr int kStreamKStep = 256;  // 32 lanes x 8 halves

struct StreamArgs {
  const __half* a;      // (rows, Kp)
  const __half* w;      // (Np, Kp)
  float* partial;       // (splits, rows, Np)
  int* counters;        // (Np / (4 * NW)), zero on entry, zero on exit
  EpilogueArgs e;
  int64_t Kp, Np;
  int64_t ks;           // k-slice length, a multiple of kStreamKStep
  int splits;
};

template <int MAXR, int NW>
__global__ void __launch_bounds__(kStreamThreads) stream_kernel(StreamArgs p) {
  constexpr int kCols = 4 * NW;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  __shared__ __align__(16) uint4 ring[kStreamStages][NW][kStreamThreads];
#endif
  __shared__ int s_last;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int rows = static_cast<int>(p.e.rows);
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kCols + warp * NW;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.y) * p.ks;
  const int64_t k_end = k_begin + p.ks < p.Kp ? k_begin + p.ks : p.Kp;
  const int steps = static_cast<int>((k_end - k_begin + kStreamKStep - 1) / kStreamKStep);

  float acc[MAXR][NW];
#pragma unroll
  for (int r = 0; r < MAXR; ++r)
#pragma unroll
    for (int j = 0; j < NW; ++j) acc[r][j] = 0.0f;

  // k of this lane in step t, and whether it is inside the slice (Kp and ks are multiples of 8)
  auto k_of = [&](int t) { return k_begin + static_cast<int64_t>(t) * kStreamKStep + lane * 8; };

  auto compute = [&](const uint4* wv, int64_t k) {
    float wf[NW][8];
#pragma unroll
    for (int j = 0; j < NW; ++j) h8_to_f(wv[j], wf[j]);
#pragma unroll
    for (int r = 0; r < MAXR; ++r) {
      if (r < rows) {
        const uint4 av = __ldg(reinterpret_cast<const uint4*>(p.a + static_cast<int64_t>(r) * p.Kp + k));
        float af[8];
        h8_to_f(av, af);
#pragma unroll
        for (int j = 0; j < NW; ++j)
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[r][j] = fmaf(af[i], wf[j][i], acc[r][j]);
      }
    }
  };

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  // prologue of the pipeline: stages 0 .. STAGES-2 in flight (an empty group where a step does not exist)
#pragma unroll
  for (int s = 0; s < kStreamStages - 1; ++s) {
    const int64_t k = k_of(s);
    if (s < steps && k < k_end)
#pragma unroll
      for (int j = 0; j < NW; ++j) cp_async16(&ring[s][j][tid], p.w + (n0 + j) * p.Kp + k, 16);
    cp_async_commit();
  }
  for (int t = 0; t < steps; ++t) {
    cp_async_wait<kStreamStages - 2>();  // step t has landed (this thread's own copies)
    const int nt = t + kStreamStages - 1;
    const int64_t kn = k_of(nt);
    if (nt < steps && kn < k_end)
#pragma unroll
      for (int j = 0; j < NW; ++j)
        cp_async16(&ring[nt % kStreamStages][j][tid], p.w + (n0 + j) * p.Kp + kn, 16);
    cp_async_commit();
    const int64_t k = k_of(t);
    if (k < k_end) {
      uint4 wv[NW];
#pragma unroll
      for (int j = 0; j < NW; ++j) wv[j] = ring[t % kStreamStages][j][tid];
      compute(wv, k);
    }
  }
  cp_async_wait<0>();
#else
  // register double buffering: step t + 1 is loaded while step t is computed
  uint4 cur[NW], nxt[NW];
  {
    const int64_t k = k_of(0);
#pragma unroll
    for (int j = 0; j < NW; ++j)
      cur[j] = (steps > 0 && k < k_end) ? __ldg(reinterpret_cast<const uint4*>(p.w + (n0 + j) * p.Kp + k))
                                        : make_uint4(0, 0, 0, 0);
  }
  for (int t = 0; t < steps; ++t) {
    const int64_t kn = k_of(t + 1);
#pragma unroll
    for (int j = 0; j < NW; ++j)
      nxt[j] = (t + 1 < steps && kn < k_end) ? __ldg(reinterpret_cast<const uint4*>(p.w + (n0 + j) * p.Kp + kn))
                                             : make_uint4(0, 0, 0, 0);
    const int64_t k = k_of(t);
    if (k < k_end) compute(cur, k);
#pragma unroll
    for (int j = 0; j < NW; ++j) cur[j] = nxt[j];
  }
#endif

  // warp sums (butterfly: every lane gets the same value, fixed order) -> partial[split][r][n]
  float* part = p.partial + static_cast<int64_t>(blockIdx.y) * p.e.rows * p.Np;
#pragma unroll
  for (int r = 0; r < MAXR; ++r) {
    if (r < rows) {
#pragma unroll
      for (int j = 0; j < NW; ++j) {
        float v = acc[r][j];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == ((r * NW + j) & 31)) part[static_cast<int64_t>(r) * p.Np + n0 + j] = v;
      }
    }
  }
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kCols;
  if (p.splits > 1) {
    __threadfence();  // this CTA's partials visible device-wide before the counter says so
    __syncthreads();
    if (tid == 0) s_last = atomicAdd(&p.counters[blockIdx.x], 1) == p.splits - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    if (tid == 0) p.counters[blockIdx.x] = 0;  // ready for the next call (graph replay)
  } else {
    __syncthreads();  // the partials of the other warps of this CTA
  }
  for (int e = tid; e < rows * kCols; e += kStreamThreads) {
    const int r = e / kCols;
    const int64_t n = c0 + e % kCols;
    if (n >= p.e.N) continue;
    float v = 0.0f;
    for (int s = 0; s < p.splits; ++s)  // split order: deterministic
      v += __ldcg(p.partial + (static_cast<int64_t>(s) * p.e.rows + r) * p.Np + n);
    store_out(p.e, r, n, v);
  }
}

// ------------------------------------------------------------------------------------------- INT8 weight streaming
// The INT8 weight-only variant of the streaming kernel (cuda.i8_stream_r8 / cuda.i8_stream_r16): the same CTA
// shape (4 warps, warp w owns NW consecutive output columns), split-K and deterministic last-CTA reduction, but
// the weights are the int8 codes q (Np, Kp) of the packed CUDA INT8 blob (lfdn/cuda_tactics.h), so a lane's
// 16-byte load is 16 consecutive k of one column (one warp-wide load: 512 contiguous bytes of a weight row,
// a k-step of 512). Each code is dequantized in registers to an exact FP32 value (q + 128 placed in the
// mantissa of 2^23 by one byte permute, then one FP32 subtraction of 2^23 + 128), multiplied by the FP16
// activation (converted to FP32) and accumulated in FP32: a_h * q has at most 11 + 7 significant bits, so
// every product is exact and only the accumulation rounds. The per-output-channel scale is applied ONCE, to
// the k-sum, after the split reduction: out = (sum_k a_h[k] q[n,k]) * scale[n] / guard + bias (+ residual).
constexpr int kI8KStep = 512;  // 32 lanes x 16 codes

struct I8StreamArgs {
  const __half* a;       // (rows, Kp) FP16 activations of the prologue kernel
  const int8_t* q;       // (Np, Kp) int8 codes
  const float* wscale;   // (Np) per-output scales
  float* partial;        // (splits, rows, Np) unscaled k-sums
  int* counters;         // (Np / (4 * NW)), zero on entry, zero on exit
  EpilogueArgs e;
  int64_t Kp, Np;
  int64_t ks;            // k-slice length, a multiple of kI8KStep
  int splits;
};

// 4 int8 codes (one 32-bit word, lowest byte first) -> 4 exact floats
__device__ __forceinline__ void q4_to_f(uint32_t w, float* f) {
  const uint32_t u = w ^ 0x80808080u;  // q + 128 in each byte (offset binary)
  f[0] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7540)) - 8388736.0f;  // bits 0x4B0000uu = 2^23 + u
  f[1] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7541)) - 8388736.0f;
  f[2] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7542)) - 8388736.0f;
  f[3] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7543)) - 8388736.0f;
}

template <int MAXR, int NW>
__global__ void __launch_bounds__(kStreamThreads) i8_stream_kernel(I8StreamArgs p) {
  constexpr int kCols = 4 * NW;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  __shared__ __align__(16) uint4 ring[kStreamStages][NW][kStreamThreads];
#endif
  __shared__ int s_last;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int rows = static_cast<int>(p.e.rows);
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kCols + warp * NW;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.y) * p.ks;
  const int64_t k_end = k_begin + p.ks < p.Kp ? k_begin + p.ks : p.Kp;
  const int steps = static_cast<int>((k_end - k_begin + kI8KStep - 1) / kI8KStep);

  float acc[MAXR][NW];
#pragma unroll
  for (int r = 0; r < MAXR; ++r)
#pragma unroll
    for (int j = 0; j < NW; ++j) acc[r][j] = 0.0f;

  // k of this lane in step t (Kp is a multiple of 32 and ks of 512: a lane's 16 codes are all in or all out)
  auto k_of = [&](int t) { return k_begin + static_cast<int64_t>(t) * kI8KStep + lane * 16; };
  auto wptr = [&](int j, int64_t k) { return p.q + (n0 + j) * p.Kp + k; };

  // 16 codes of each column at k: two halves of 8 k, each dequantized once and used by every row
  auto compute = [&](const uint4* wv, int64_t k) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float wf[NW][8];
#pragma unroll
      for (int j = 0; j < NW; ++j) {
        q4_to_f(h == 0 ? wv[j].x : wv[j].z, wf[j]);
        q4_to_f(h == 0 ? wv[j].y : wv[j].w, wf[j] + 4);
      }
#pragma unroll
      for (int r = 0; r < MAXR; ++r) {
        if (r < rows) {
          const uint4 av =
              __ldg(reinterpret_cast<const uint4*>(p.a + static_cast<int64_t>(r) * p.Kp + k + 8 * h));
          float af[8];
          h8_to_f(av, af);
#pragma unroll
          for (int j = 0; j < NW; ++j)
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[r][j] = fmaf(af[i], wf[j][i], acc[r][j]);
        }
      }
    }
  };

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#pragma unroll
  for (int s = 0; s < kStreamStages - 1; ++s) {
    const int64_t k = k_of(s);
    if (s < steps && k < k_end)
#pragma unroll
      for (int j = 0; j < NW; ++j) cp_async16(&ring[s][j][tid], wptr(j, k), 16);
    cp_async_commit();
  }
  for (int t = 0; t < steps; ++t) {
    cp_async_wait<kStreamStages - 2>();  // step t has landed (this thread's own copies)
    const int nt = t + kStreamStages - 1;
    const int64_t kn = k_of(nt);
    if (nt < steps && kn < k_end)
#pragma unroll
      for (int j = 0; j < NW; ++j) cp_async16(&ring[nt % kStreamStages][j][tid], wptr(j, kn), 16);
    cp_async_commit();
    const int64_t k = k_of(t);
    if (k < k_end) {
      uint4 wv[NW];
#pragma unroll
      for (int j = 0; j < NW; ++j) wv[j] = ring[t % kStreamStages][j][tid];
      compute(wv, k);
    }
  }
  cp_async_wait<0>();
#else
  uint4 cur[NW], nxt[NW];
  {
    const int64_t k = k_of(0);
#pragma unroll
    for (int j = 0; j < NW; ++j)
      cur[j] = (steps > 0 && k < k_end) ? __ldg(reinterpret_cast<const uint4*>(wptr(j, k))) : make_uint4(0, 0, 0, 0);
  }
  for (int t = 0; t < steps; ++t) {
    const int64_t kn = k_of(t + 1);
#pragma unroll
    for (int j = 0; j < NW; ++j)
      nxt[j] = (t + 1 < steps && kn < k_end) ? __ldg(reinterpret_cast<const uint4*>(wptr(j, kn)))
                                             : make_uint4(0, 0, 0, 0);
    const int64_t k = k_of(t);
    if (k < k_end) compute(cur, k);
#pragma unroll
    for (int j = 0; j < NW; ++j) cur[j] = nxt[j];
  }
#endif

  float* part = p.partial + static_cast<int64_t>(blockIdx.y) * p.e.rows * p.Np;
#pragma unroll
  for (int r = 0; r < MAXR; ++r) {
    if (r < rows) {
#pragma unroll
      for (int j = 0; j < NW; ++j) {
        float v = acc[r][j];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == ((r * NW + j) & 31)) part[static_cast<int64_t>(r) * p.Np + n0 + j] = v;
      }
    }
  }
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kCols;
  if (p.splits > 1) {
    __threadfence();
    __syncthreads();
    if (tid == 0) s_last = atomicAdd(&p.counters[blockIdx.x], 1) == p.splits - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    if (tid == 0) p.counters[blockIdx.x] = 0;  // ready for the next call (graph replay)
  } else {
    __syncthreads();
  }
  for (int e = tid; e < rows * kCols; e += kStreamThreads) {
    const int r = e / kCols;
    const int64_t n = c0 + e % kCols;
    if (n >= p.e.N) continue;
    float v = 0.0f;
    for (int s = 0; s < p.splits; ++s)  // split order: deterministic
      v += __ldcg(p.partial + (static_cast<int64_t>(s) * p.e.rows + r) * p.Np + n);
    store_out(p.e, r, n, v * p.wscale[n]);  // the channel's scale, once, on the k-sum
  }
}

// ------------------------------------------------------------------------------------------- mma.sync tiles
// CTA tile BM x 64, k-tiles of 32, 4 warps as (BM/32) x (4/(BM/32)), warp tile 32 x WN (two m16 tiles,
// WN/8 n8 tiles). A (FP16 activations, rows x Kp) and W (Np x Kp) tiles go global -> shared by cp.async
// (16 bytes per copy, rows beyond `rows` zero-filled), 3 stages in flight; fragments by ldmatrix.x4 from
// shared rows padded to 40 halves (80 bytes: the 8 row addresses of one 8x8 matrix hit 8 different 16-byte
// bank groups), mma.sync.m16n8k16.row.col FP32 accumulation; epilogue straight from the accumulators.
constexpr int kMmaThreads = 128;
constexpr int kMmaBK = 32;
constexpr int kMmaPitch = kMmaBK + 8;
constexpr int kMmaStages = 3;
constexpr int kMmaBN = 64;

struct MmaArgs {
  const __half* a;  // (rows, Kp)
  const __half* w;  // (Np, Kp)
  EpilogueArgs e;
  int64_t Kp, Np;
  // SPLIT only: k-tiles [blockIdx.z * kt_per, +kt_per) per CTA, partial (splits, rows, Np), one counter per
  // output tile (zero on entry and exit); the last CTA of a tile sums the partials in split order.
  int kt_per, splits;
  float* partial;
  int* counters;
};

// SPLIT: split-K over gridDim.z with the deterministic reduction of the streaming kernel (more CTAs for the
// small and medium batches, where 64-column tiles alone give Np / 64 CTAs: 23 for a 1440-wide layer).
template <int BM, bool SPLIT>
__global__ void __launch_bounds__(kMmaThreads) mma_kernel(MmaArgs p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int WARPS_M = BM / 32, WARPS_N = 4 / WARPS_M, WN = kMmaBN / WARPS_N, FN = WN / 8;
  static_assert(WARPS_M * WARPS_N == 4 && FN % 2 == 0, "4 warps, pairs of n8 tiles per ldmatrix.x4");
  __shared__ __align__(16) __half sa[kMmaStages][BM * kMmaPitch];
  __shared__ __align__(16) __half sb[kMmaStages][kMmaBN * kMmaPitch];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * BM, col0 = static_cast<int64_t>(blockIdx.x) * kMmaBN;
  const int64_t rows = p.e.rows;
  const int kt_all = static_cast<int>(p.Kp / kMmaBK);
  const int kt0 = SPLIT ? static_cast<int>(blockIdx.z) * p.kt_per : 0;
  const int ktiles = SPLIT ? (kt0 + p.kt_per < kt_all ? p.kt_per : kt_all - kt0) : kt_all;

  auto load_tile = [&](int stage, int kt) {
    const int64_t k0 = static_cast<int64_t>(kt0 + kt) * kMmaBK;
    for (int c = tid; c < BM * (kMmaBK / 8); c += kMmaThreads) {  // A: BM rows x 4 chunks of 8 halves
      int r, c8;
      tile_chunk(c, &r, &c8);  // conflict-free 16-byte stores (tile_map.h)
      const int64_t gr = row0 + r;
      const bool in = gr < rows;
      cp_async16(&sa[stage][r * kMmaPitch + c8], p.a + (in ? gr : 0) * p.Kp + k0 + c8, in ? 16 : 0);
    }
    for (int c = tid; c < kMmaBN * (kMmaBK / 8); c += kMmaThreads) {  // W: 64 rows (zero-padded to Np)
      int n, c8;
      tile_chunk(c, &n, &c8);
      cp_async16(&sb[stage][n * kMmaPitch + c8], p.w + (col0 + n) * p.Kp + k0 + c8, 16);
    }
  };

  float acc[2][FN][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

#pragma unroll
  for (int s = 0; s < kMmaStages - 1; ++s) {
    if (s < ktiles) load_tile(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<kMmaStages - 2>();
    __syncthreads();  // tile kt visible to every warp; every warp is done with tile kt - 1
    const int nk = kt + kMmaStages - 1;
    if (nk < ktiles) load_tile(nk % kMmaStages, nk);
    cp_async_commit();
    const __half* A = sa[kt % kMmaStages];
    const __half* B = sb[kt % kMmaStages];
#pragma unroll
    for (int kk = 0; kk < kMmaBK; kk += 16) {
      uint32_t af[2][4], bf[FN][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        // matrices: rows 0-7 / 8-15 of the m16 tile x k 0-7 / 8-15 -> a0..a3 of m16n8k16
        const __half* src = A + (wm * 32 + i * 16 + (lane % 16)) * kMmaPitch + kk + (lane / 16) * 8;
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(af[i][0]), "=r"(af[i][1]), "=r"(af[i][2]), "=r"(af[i][3])
                     : "r"(smem_u32(src)));
      }
#pragma unroll
      for (int j = 0; j < FN; j += 2) {
        // matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15) -> b0 b1 of two n8 tiles
        const int m = lane / 8;
        const __half* src = B + (wn * WN + j * 8 + (m / 2) * 8 + (lane % 8)) * kMmaPitch + kk + (m % 2) * 8;
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(bf[j][0]), "=r"(bf[j][1]), "=r"(bf[j + 1][0]), "=r"(bf[j + 1][1])
                     : "r"(smem_u32(src)));
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j)
          asm volatile(
              "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
              "{%0,%1,%2,%3};\n"
              : "+f"(acc[i][j][0]), "+f"(acc[i][j][1]), "+f"(acc[i][j][2]), "+f"(acc[i][j][3])
              : "r"(af[i][0]), "r"(af[i][1]), "r"(af[i][2]), "r"(af[i][3]), "r"(bf[j][0]), "r"(bf[j][1]));
    }
  }
  cp_async_wait<0>();
  // accumulator layout of m16n8: c0 c1 at (row g, cols 2t, 2t+1), c2 c3 at (row g + 8, same cols)
  const int g = lane / 4, t4 = lane % 4;
  float* part = SPLIT ? p.partial + static_cast<int64_t>(blockIdx.z) * rows * p.Np : nullptr;
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int64_t r = row0 + wm * 32 + i * 16 + g + (q / 2) * 8;
        const int64_t n = col0 + wn * WN + j * 8 + 2 * t4 + (q % 2);
        if (SPLIT) {
          if (r < rows) part[r * p.Np + n] = acc[i][j][q];
        } else if (r < rows && n < p.e.N) {
          store_out(p.e, r, n, acc[i][j][q]);
        }
      }
  if (SPLIT) {
    __shared__ int s_last;
    const int tile = static_cast<int>(blockIdx.y * gridDim.x + blockIdx.x);
    __threadfence();
    __syncthreads();
    if (tid == 0) s_last = atomicAdd(&p.counters[tile], 1) == p.splits - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    if (tid == 0) p.counters[tile] = 0;
    for (int e = tid; e < BM * kMmaBN; e += kMmaThreads) {
      const int64_t r = row0 + e / kMmaBN, n = col0 + e % kMmaBN;
      if (r >= rows || n >= p.e.N) continue;
      float v = 0.0f;
      for (int s = 0; s < p.splits; ++s) v += __ldcg(p.partial + (static_cast<int64_t>(s) * rows + r) * p.Np + n);
      store_out(p.e, r, n, v);
    }
  }
#else
  (void)p;
  __trap();  // not compiled for this architecture: `applies` never offers the tactic here
#endif
}

// ------------------------------------------------------------------------------------------- reference
// Deliberately simple: one thread per output (r, n), everything in FP32 from x: the row's GroupNorm
// statistics (gn_row_stats, lfdn/gn_stats.h), the prologue, the dot product with the FP16 weights (an INT8
// problem: with the FP32 weights q * scale); also bound[r, n] = sum |a||w| + |bias| + |residual| for the tolerance.
struct ReferenceArgs {
  const float* x;
  const __half* w;  // (Np, Kp)
  // INT8 problems (packed CUDA INT8 blob): the codes (Np, Kp) and scales (Np); the weight is then the FP32
  // product q * scale (the INT8 model's weight, one rounding), not the blob's FP16 copy
  const int8_t* q = nullptr;
  const float* wscale = nullptr;
  const float* bias;
  const float* residual;
  const float* gamma;
  const float* beta;
  float gn_eps;
  int mode;
  int64_t rows, K, N, Kp;
  float* ref;
  float* bound;
};

__global__ void __launch_bounds__(128) reference_kernel(ReferenceArgs a) {
  const int64_t i = blockIdx.x * 128ll + threadIdx.x;
  if (i >= a.rows * a.N) return;
  const int64_t r = i / a.N, n = i % a.N;
  const float* xr = a.x + r * a.K;
  const GnStats st = a.mode == 2 ? gn_row_stats(xr, a.K, a.gn_eps) : GnStats();  // the sequential shared rule
  float acc = 0.0f, bnd = 0.0f;
  for (int64_t k = 0; k < a.K; ++k) {
    float v = xr[k];
    if (a.mode == 2) v = gn_normalize(v, st) * a.gamma[k] + a.beta[k];
    if (a.mode >= 1) v = v / (1.0f + expf(-v));
    const float wk = a.q ? static_cast<float>(a.q[n * a.Kp + k]) * a.wscale[n] : __half2float(a.w[n * a.Kp + k]);
    acc += v * wk;
    bnd += fabsf(v * wk);
  }
  if (a.bias) {
    acc += a.bias[n];
    bnd += fabsf(a.bias[n]);
  }
  if (a.residual) {
    acc += a.residual[r * a.N + n];
    bnd += fabsf(a.residual[r * a.N + n]);
  }
  a.ref[i] = acc;
  a.bound[i] = bnd;
}

}  // namespace tac
}  // namespace cuda
}  // namespace lfdn
