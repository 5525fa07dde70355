// Which CUDA tactics may be offered, as one pure function of what the CUDA runtime reports about a kernel
// (cudaFuncAttributes) and the device's compute capability. Plain C++ (no CUDA, no torch): included by the
// launchers (csrc/cuda/tactics_launch.cu), by the binding (csrc/bindings/bind_arch.cpp, present in every
// build, CPU-only too, as _C.cuda_tactic_arch_support) and tested on the CPU (tests/test_cuda_arch.py).
//
// All versions are major * 10 + minor (8.6 -> 86); 0 means unknown (query failed, no kernel image).
//
//   ptx_version         cudaFuncAttributes::ptxVersion: "the PTX virtual architecture version for which the
//                       function was compiled", i.e. the compute_XY the kernel's code was generated from,
//                       which is the __CUDA_ARCH__ (XY0) its device code was preprocessed with. SASS built
//                       by nvcc from compute_80 (CMake "80-real", or code=sm_86 from arch=compute_80) has 80.
//   binary_version      cudaFuncAttributes::binaryVersion: "the binary architecture version for which the
//                       function was compiled": the sm_XY of the machine code the device runs. For SASS
//                       from the fat binary it is that SASS's architecture; for PTX JIT-compiled by the
//                       driver it is the device's own architecture.
//   compute_capability  of the device (cudaDevAttrComputeCapabilityMajor * 10 + Minor).
//
// The JIT case (why binary_version alone is wrong): a build that carries no SASS for the device and only
// PTX of an older virtual architecture -- e.g. CUDAARCHS=75 / CMAKE_CUDA_ARCHITECTURES=75-virtual (or 72),
// run on an sm_80+ GPU -- is JIT-compiled by the driver for the device, so binaryVersion is 80 (or 86, 90,
// ...), but the code was preprocessed with __CUDA_ARCH__ == 750: mma_kernel's sm_80 body (cp.async,
// ldmatrix, mma.sync.m16n8k16) was compiled out and the kernel is just __trap(), a sticky error that kills
// every later CUDA call of the process. Only ptxVersion tells which branch of `#if __CUDA_ARCH__ >= 800`
// the device will run.
//
// Every function first requires the values to be known and consistent: 0 < ptx <= binary <= cc (SASS is
// generated from PTX of the same or an older virtual architecture, and a device runs SASS of its own major
// architecture at or below its minor, or PTX JIT-compiled for exactly its own architecture). Anything else
// cannot be reported by a working runtime; it is treated as unknown, i.e. not usable.
//
//   tactic family (kernels)                    needs (on top of consistency)
//   mma  (cuda.mma_*: mma_kernel)              ptx >= 80 and binary >= 80 and cc >= 80
//   stream (cuda.stream_*: stream_kernel)      cc >= 72   (its pre-sm_80 path, taken for ptx < 80, is correct;
//                                                          with ptx >= 80 the cp.async path needs nothing more:
//                                                          cc >= binary >= ptx >= 80 already)
//   legacy_tile (cuda.legacy_tile: WMMA)       ptx >= 70 and cc >= 70  (nvcuda::wmma FP16 needs sm_70)
//
//   ptx  binary  cc   how the build got there                              mma    stream  legacy_tile
//   80   80      80   80-real SASS on an A100                              yes    yes     yes
//   80   86      86   SASS sm_86 built from compute_80                     yes    yes     yes
//   86   86      87   86-real SASS on Orin (sm_86 SASS runs on 8.7)        yes    yes     yes
//   80   80      90   ptx 80 SASS reported on a 9.0 device                 yes    yes     yes
//   90   90      90   90-real SASS, or 90-virtual PTX JIT on an H100       yes    yes     yes
//   75   80      80   75-virtual PTX only, JIT on an A100 (the bug)        NO     yes     yes
//   75   90      90   75-virtual PTX only, JIT on an H100                  NO     yes     yes
//   72   87      87   72-virtual PTX only, JIT on Orin                     NO     yes     yes
//   75   75      75   75-real SASS on a T4                                 no     yes     yes
//   72   72      72   72-real SASS on Xavier                               no     yes     yes
//   70   70      70   sm_70 (not a default build architecture)             no     no      yes
//   0    any     any  unknown (query failed / no image for the device)     no     no      no
//   any  0       any  unknown                                              no     no      no
//   any  any     0    unknown device                                       no     no      no
//   80   75      80   inconsistent (binary older than its PTX)             no     no      no
//   86   86      80   inconsistent (sm_86 binary cannot run on 8.0)        no     no      no
#pragma once

namespace lfdn {

// What the runtime reports for one kernel on one device (see above for each field).
struct CudaKernelArch {
  int ptx_version = 0;
  int binary_version = 0;
  int compute_capability = 0;
};

// 0 < ptx <= binary <= cc: known values that a working runtime can report together.
constexpr bool cuda_arch_consistent(int ptx_version, int binary_version, int compute_capability) {
  return ptx_version > 0 && binary_version >= ptx_version && compute_capability >= binary_version;
}

// cp.async / ldmatrix / mma.sync.m16n8k16 (mma_kernel): the code the device runs was generated from PTX of
// virtual architecture >= 80 (its sm_80 body was compiled in, not __trap()), as sm_80+ machine code, on an
// sm_80+ device.
constexpr bool tensor_core_tactics_usable(int ptx_version, int binary_version, int compute_capability) {
  return cuda_arch_consistent(ptx_version, binary_version, compute_capability) && ptx_version >= 80 &&
         binary_version >= 80 && compute_capability >= 80;
}

// Weight streaming (stream_kernel): sm_72+ (the project's oldest target, Xavier); below sm_80 it takes its
// own correct path (plain loads instead of cp.async), so an older ptx_version is fine.
constexpr bool stream_tactics_usable(int ptx_version, int binary_version, int compute_capability) {
  return cuda_arch_consistent(ptx_version, binary_version, compute_capability) && compute_capability >= 72;
}

// The legacy WMMA tile (fused_linear_kernel): nvcuda::wmma FP16 fragments need PTX and device sm_70+.
constexpr bool legacy_tile_usable(int ptx_version, int binary_version, int compute_capability) {
  return cuda_arch_consistent(ptx_version, binary_version, compute_capability) && ptx_version >= 70 &&
         compute_capability >= 70;
}

constexpr bool tensor_core_tactics_usable(const CudaKernelArch& a) {
  return tensor_core_tactics_usable(a.ptx_version, a.binary_version, a.compute_capability);
}
constexpr bool stream_tactics_usable(const CudaKernelArch& a) {
  return stream_tactics_usable(a.ptx_version, a.binary_version, a.compute_capability);
}
constexpr bool legacy_tile_usable(const CudaKernelArch& a) {
  return legacy_tile_usable(a.ptx_version, a.binary_version, a.compute_capability);
}

// Compile-time checks of the decision table above (the tests check it again through the binding).
static_assert(tensor_core_tactics_usable(80, 80, 80) && tensor_core_tactics_usable(80, 86, 86) &&
                  tensor_core_tactics_usable(80, 80, 90) && tensor_core_tactics_usable(90, 90, 90),
              "sm_80+ code on sm_80+ devices runs the tensor-core tactics");
static_assert(!tensor_core_tactics_usable(75, 80, 80) && !tensor_core_tactics_usable(75, 90, 90) &&
                  !tensor_core_tactics_usable(72, 87, 87),
              "PTX older than compute_80, JIT-compiled on an sm_80+ device, is mma_kernel's __trap()");
static_assert(stream_tactics_usable(75, 80, 80) && stream_tactics_usable(72, 72, 72) && !stream_tactics_usable(70, 70, 70),
              "streaming: any consistent sm_72+ build");
static_assert(!tensor_core_tactics_usable(0, 0, 0) && !stream_tactics_usable(0, 0, 0) && !legacy_tile_usable(0, 0, 0),
              "unknown is never usable");

}  // namespace lfdn
