// Op 3 launcher (CUDA).
#include "cuda/kernels/ddim_score.cuh"
#include "cuda/util.cuh"

namespace lfdn {

int ddim_score_cuda(const DdimScoreParams& p) {
  const int rc = check_ddim_score_params(p);  // reads stage_offsets: a host array
  if (rc != kOk) return rc;
  if (p.rows == 0) return kOk;
  if (p.rows > 0x7FFFFFFFll) return kBadSize;
  cuda::DdimArgs a{};
  a.x = p.x;
  a.x0_hat = p.x0_hat;
  a.z0 = p.z0;
  a.noise = p.noise;
  a.rows = p.rows;
  a.dim = p.dim;
  a.update = p.update ? 1 : 0;
  a.scores = p.scores ? 1 : 0;
  a.sqrt_ab_cur = p.sqrt_ab_cur;
  a.sqrt_1m_ab_cur = p.sqrt_1m_ab_cur;
  a.c_x0 = p.c_x0;
  a.c_eps = p.c_eps;
  a.sigma = p.sigma;
  a.num_stages = p.scores ? p.num_stages : 0;
  for (int m = 0; p.scores && m <= p.num_stages; ++m) a.offsets[m] = p.stage_offsets[m];
  a.cos_eps = p.cos_eps;
  a.score_update = p.score_update ? 1 : 0;
  a.x_out = p.x_out != nullptr ? p.x_out : p.x;
  for (int m = 0; p.scores && m < p.num_stages; ++m)
    a.weights[m] = p.stage_weights ? p.stage_weights[m] : 1.0f / static_cast<float>(p.num_stages);
  a.mse = p.mse;
  a.mfsim = p.mfsim;
  a.stage_cos = p.stage_cos;
  return cuda::launch(cuda::ddim_score_kernel, "lfdn::cuda::ddim_score_kernel", static_cast<unsigned int>(p.rows),
                      cuda::kThreadsDdim, 0, p.cuda_stream, a);
}

namespace cuda {
int load_ddim_score_kernels() {
  cudaFuncAttributes attr;
  return record(cudaFuncGetAttributes(&attr, ddim_score_kernel), "cudaFuncGetAttributes(ddim_score_kernel)");
}
}  // namespace cuda

}  // namespace lfdn
