// Op 1 launcher (CUDA).
#include "cuda/kernels/noise.cuh"
#include "cuda/util.cuh"
#include "lfdn/noise.h"

namespace lfdn {

int noise_inject_cuda(const NoiseParams& p) {
  const int rc = check_noise_params(p);
  if (rc != kOk) return rc;
  const int64_t n = p.rows * p.dim;
  if (n == 0) return kOk;
  constexpr int kThreads = 256;
  const unsigned int blocks = cuda::blocks_for(n, kThreads) < 65535u ? cuda::blocks_for(n, kThreads) : 65535u;
  return cuda::launch(cuda::noise_kernel, "lfdn::cuda::noise_kernel", blocks, kThreads, 0, p.cuda_stream, p.z0, p.out,
                      p.image_keys, p.eps_row, p.rows, p.dim, p.seed, p.stream, p.a, p.b);
}

namespace cuda {
int load_noise_kernels() {
  cudaFuncAttributes attr;
  return record(cudaFuncGetAttributes(&attr, noise_kernel), "cudaFuncGetAttributes(noise_kernel)");
}
}  // namespace cuda

}  // namespace lfdn
