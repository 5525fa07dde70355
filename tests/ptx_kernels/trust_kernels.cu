// Small kernels with known answers, and deliberately broken kernels, for the PTX interpreter's own tests
// (tests/test_ptxsim_trust.py). Compiled by nvcc to PTX for compute_80 (and compute_75 where marked).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

// ---------------------------------------------------------------------------------------------- known answers
// Block sum: warp butterfly shuffles, then the warps' sums through shared memory.
extern "C" __global__ void block_sum(const float* x, float* out, int n) {
  __shared__ float part[32];
  float v = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) v += x[blockIdx.x * n + i];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.0f;
    for (int w = 0; w < (int)(blockDim.x / 32); ++w) t += part[w];
    out[blockIdx.x] = t;
  }
}

// Every shuffle mode, with a segment width: out[mode][tid]
extern "C" __global__ void shuffles(const int* in, int* out, int delta, int width) {
  const int t = threadIdx.x;
  const int v = in[t];
  out[0 * 32 + t] = __shfl_up_sync(0xffffffffu, v, delta, width);
  out[1 * 32 + t] = __shfl_down_sync(0xffffffffu, v, delta, width);
  out[2 * 32 + t] = __shfl_xor_sync(0xffffffffu, v, delta, width);
  out[3 * 32 + t] = __shfl_sync(0xffffffffu, v, (t * 7 + delta) % 32, width);
}

// Shuffle among the lower half of the warp only (member mask 0x0000ffff)
extern "C" __global__ void half_warp_shuffle(const int* in, int* out) {
  const int t = threadIdx.x;
  if (t < 16) out[t] = __shfl_xor_sync(0x0000ffffu, in[t], 1);
}

// half2 and bf162 arithmetic on both halves: out = a * b + c, a + b, a * b
extern "C" __global__ void half2_math(const __half2* a, const __half2* b, const __half2* c, __half2* fma_out,
                                      __half2* add_out, __half2* mul_out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    fma_out[i] = __hfma2(a[i], b[i], c[i]);
    add_out[i] = __hadd2(a[i], b[i]);
    mul_out[i] = __hmul2(a[i], b[i]);
  }
}

extern "C" __global__ void bf162_math(const __nv_bfloat162* a, const __nv_bfloat162* b, const __nv_bfloat162* c,
                                      __nv_bfloat162* fma_out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) fma_out[i] = __hfma2(a[i], b[i], c[i]);
}

// Conversions with each rounding mode used by the project: f32 -> f16 (rn, rz, rd, ru), f32 -> bf16 (rn),
// f32 -> int (rn, rz, rd, ru), saturation to [0, 1]
extern "C" __global__ void conversions(const float* x, unsigned short* h, unsigned short* bf, int* iv, float* sat,
                                       int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = x[i];
  h[4 * i + 0] = __half_as_ushort(__float2half_rn(v));
  h[4 * i + 1] = __half_as_ushort(__float2half_rz(v));
  h[4 * i + 2] = __half_as_ushort(__float2half_rd(v));
  h[4 * i + 3] = __half_as_ushort(__float2half_ru(v));
  bf[i] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
  iv[4 * i + 0] = __float2int_rn(v);
  iv[4 * i + 1] = __float2int_rz(v);
  iv[4 * i + 2] = __float2int_rd(v);
  iv[4 * i + 3] = __float2int_ru(v);
  sat[i] = __saturatef(v);
}

// One m16n8k16 tile: A (16x16 row-major) and B (stored n-major: 8 rows of 16 k) through shared memory,
// fragments by ldmatrix (x4 for A, x2 for B), D = A B + C by mma.sync.
extern "C" __global__ void mma_tile(const __half* a, const __half* b, const float* c, float* d) {
#if __CUDA_ARCH__ >= 800
  __shared__ __align__(16) __half sa[16 * 16];
  __shared__ __align__(16) __half sb[8 * 16];
  const int l = threadIdx.x;
  for (int i = l; i < 256; i += 32) sa[i] = a[i];
  for (int i = l; i < 128; i += 32) sb[i] = b[i];
  __syncwarp();
  unsigned ar[4], br[2];
  // A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15)
  const unsigned pa = (unsigned)__cvta_generic_to_shared(sa + (l % 16) * 16 + (l / 16) * 8);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(ar[0]), "=r"(ar[1]), "=r"(ar[2]), "=r"(ar[3]) : "r"(pa));
  // B (k x n, "col"): rows of sb are n, so matrix j = (n 0-7, k 8j..8j+7)
  const unsigned pb = (unsigned)__cvta_generic_to_shared(sb + (l % 8) * 16 + ((l / 8) % 2) * 8);
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(br[0]), "=r"(br[1]) : "r"(pb));
  const int g = l / 4, t = l % 4;
  float acc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t], c[(g + 8) * 8 + 2 * t + 1]};
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};\n"
               : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
               : "r"(ar[0]), "r"(ar[1]), "r"(ar[2]), "r"(ar[3]), "r"(br[0]), "r"(br[1]));
  d[g * 8 + 2 * t] = acc[0];
  d[g * 8 + 2 * t + 1] = acc[1];
  d[(g + 8) * 8 + 2 * t] = acc[2];
  d[(g + 8) * 8 + 2 * t + 1] = acc[3];
#endif
}

// ldmatrix .x1 plain and .trans of one 8x8 matrix of 16-bit values; out[lane] = the register each lane gets
extern "C" __global__ void ldmatrix_trans(const unsigned short* m, unsigned* plain, unsigned* trans) {
#if __CUDA_ARCH__ >= 800
  __shared__ __align__(16) unsigned short s[64];
  const int l = threadIdx.x;
  s[l] = m[l];
  s[l + 32] = m[l + 32];
  __syncwarp();
  const unsigned p = (unsigned)__cvta_generic_to_shared(s + (l % 8) * 8);
  unsigned r0, r1;
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r0) : "r"(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r1) : "r"(p));
  plain[l] = r0;
  trans[l] = r1;
#endif
}

// cp.async pipeline: 16-byte chunks of x into shared memory (with zero fill past n), waited, then summed
template <bool WAIT>
__device__ void cp_async_sum_body(const float* x, float* out, int n) {
#if __CUDA_ARCH__ >= 800
  __shared__ __align__(16) float s[128];
  const int t = threadIdx.x;  // 32 threads, 4 floats each
  const int left = n - 4 * t;
  const int bytes = left >= 4 ? 16 : left > 0 ? 4 * left : 0;
  const unsigned dst = (unsigned)__cvta_generic_to_shared(s + 4 * t);
  const float* src = bytes > 0 ? x + 4 * t : x;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
  asm volatile("cp.async.commit_group;\n" ::: "memory");
  if (WAIT) asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  __syncwarp();
  float v = s[(t + 1) % 32 * 4] + s[(t + 1) % 32 * 4 + 1] + s[(t + 1) % 32 * 4 + 2] + s[(t + 1) % 32 * 4 + 3];
  out[t] = v;
#endif
}
extern "C" __global__ void cp_async_sum(const float* x, float* out, int n) { cp_async_sum_body<true>(x, out, n); }

// ---------------------------------------------------------------------------------------------- broken on purpose
// memcheck: i <= n writes one element past the end
extern "C" __global__ void broken_oob_store(float* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) y[i] = 1.0f;
}

// racecheck: the shared-memory reduction without the __syncthreads between the write and the read
extern "C" __global__ void broken_missing_syncthreads(const float* x, float* out) {
  __shared__ float s[64];
  s[threadIdx.x] = x[threadIdx.x];
  float v = s[(threadIdx.x + 32) % 64];
  __syncthreads();
  out[threadIdx.x] = v;
}

// the cp.async pipeline with its wait removed: the shared memory read sees data that has not landed
extern "C" __global__ void broken_missing_cp_async_wait(const float* x, float* out, int n) {
  cp_async_sum_body<false>(x, out, n);
}

// synccheck: __syncthreads inside a branch that only part of the CTA takes
extern "C" __global__ void broken_divergent_barrier(float* y) {
  __shared__ float s[64];
  s[threadIdx.x] = 1.0f;
  if (threadIdx.x < 16) __syncthreads();
  y[threadIdx.x] = s[threadIdx.x];
}

// initcheck: reads device memory the test marks uninitialised
extern "C" __global__ void copy(const float* x, float* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i];
}

// memcheck: misaligned 8-byte load
extern "C" __global__ void broken_misaligned(const char* x, double* y) { y[0] = *reinterpret_cast<const double*>(x + 4); }

// synccheck: a full-mask shuffle executed by half a warp
extern "C" __global__ void broken_partial_shuffle(const int* in, int* out) {
  const int t = threadIdx.x;
  if (t < 16) out[t] = __shfl_xor_sync(0xffffffffu, in[t], 1);
}

// Two commit groups; wait_group<WAIT_KEEP> lets the newest WAIT_KEEP groups stay in flight. With 1 (too weak for
// reading the second group) the read of the second half sees shared memory before its copies land.
template <int WAIT_KEEP>
__device__ void two_groups_body(const float* x, float* out) {
#if __CUDA_ARCH__ >= 800
  __shared__ __align__(16) float s[256];
  const int t = threadIdx.x;  // 32 threads
  const unsigned d0 = (unsigned)__cvta_generic_to_shared(s + 4 * t);
  const unsigned d1 = (unsigned)__cvta_generic_to_shared(s + 128 + 4 * t);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16;\n" ::"r"(d0), "l"(x + 4 * t) : "memory");
  asm volatile("cp.async.commit_group;\n" ::: "memory");
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16;\n" ::"r"(d1), "l"(x + 128 + 4 * t) : "memory");
  asm volatile("cp.async.commit_group;\n" ::: "memory");
  asm volatile("cp.async.wait_group %0;\n" ::"n"(WAIT_KEEP) : "memory");
  out[t] = s[4 * t] + s[128 + 4 * t];  // this thread's own copies: no barrier needed
#endif
}
extern "C" __global__ void two_groups_wait_all(const float* x, float* out) { two_groups_body<0>(x, out); }
extern "C" __global__ void broken_weak_cp_async_wait(const float* x, float* out) { two_groups_body<1>(x, out); }

// Double-precision cosine of huge arguments: libdevice's Payne-Hanek slow path (a .func call with .param
// arguments, local memory, carry-chain integer multiplies)
extern "C" __global__ void big_cos(const double* x, double* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = cos(x[i]);
}

// Dynamic shared memory (extern __shared__, sized by the launch) and a __constant__ table
__constant__ float c_scale[4];
extern "C" __global__ void dyn_shared_const(const float* x, float* y, int n) {
  extern __shared__ float buf[];
  buf[threadIdx.x] = x[threadIdx.x] * c_scale[threadIdx.x % 4];
  __syncthreads();
  y[threadIdx.x] = buf[(threadIdx.x + 1) % n];
}

// Atomics from every thread on one counter (each old value exactly once) and on per-warp counters
extern "C" __global__ void atomics(unsigned* counter, unsigned* olds, unsigned* per_warp, int* maxv) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  olds[t] = atomicAdd(counter, 1u);
  atomicAdd(&per_warp[t / 32], t);
  atomicMax(maxv, static_cast<int>(t * 7 % 101));
}

// mma.m16n8k16 with BF16 inputs: fragments loaded straight from global memory in the ISA's layout
extern "C" __global__ void mma_bf16(const unsigned* a_frag, const unsigned* b_frag, const float* c_frag, float* d_frag) {
#if __CUDA_ARCH__ >= 800
  const int l = threadIdx.x;
  float acc[4] = {c_frag[4 * l], c_frag[4 * l + 1], c_frag[4 * l + 2], c_frag[4 * l + 3]};
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};\n"
               : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
               : "r"(a_frag[4 * l]), "r"(a_frag[4 * l + 1]), "r"(a_frag[4 * l + 2]), "r"(a_frag[4 * l + 3]),
                 "r"(b_frag[2 * l]), "r"(b_frag[2 * l + 1]));
  for (int i = 0; i < 4; ++i) d_frag[4 * l + i] = acc[i];
#endif
}

// cp.async.ca of 4 and 8 bytes, with a partial src-size (zero fill of the rest)
extern "C" __global__ void cp_async_small(const float* x, float* out) {
#if __CUDA_ARCH__ >= 800
  __shared__ __align__(16) float s[96];
  const int t = threadIdx.x;  // 32 threads
  const unsigned d4 = (unsigned)__cvta_generic_to_shared(s + t);
  const unsigned d8 = (unsigned)__cvta_generic_to_shared(s + 32 + 2 * t);
  const int part = t % 2 ? 8 : 4;  // odd threads copy both floats, even ones the first and a zero
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(d4), "l"(x + t) : "memory");
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(d8), "l"(x + 32 + 2 * t), "r"(part) : "memory");
  asm volatile("cp.async.wait_all;\n" ::: "memory");
  out[t] = s[t] + 10.0f * s[32 + 2 * t] + 100.0f * s[33 + 2 * t];
#endif
}
