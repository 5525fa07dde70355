#include <cstring>
#include <string>

#include "cuda/util.cuh"
#include "lfdn/cuda_device.h"
#include "lfdn/engine.h"

namespace lfdn {

namespace {
thread_local std::string g_last_error;

std::string version_str(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
}  // namespace

namespace {
// Per thread (lfdn/cuda_launch.h): a capture installed by one thread never affects launches of another.
thread_local LaunchCapture* g_capture = nullptr;
}  // namespace

void set_launch_capture(LaunchCapture* c) { g_capture = c; }
LaunchCapture* launch_capture() { return g_capture; }

namespace cuda {

int launch_args(const void* func, const std::string& name, dim3 grid, dim3 block, size_t smem, Stream s,
                void** args, const size_t* sizes, size_t n) {
  LaunchCapture* c = launch_capture();
  if (c == nullptr) {
    const cudaError_t err = cudaLaunchKernel(func, grid, block, args, smem, s);
    if (err != cudaSuccess) return record(err, name.c_str());
    return check_launch(name.c_str());
  }
  // recorded, never launched: no CUDA runtime call at all
  CapturedCall call;
  call.kind = "kernel";
  call.kernel = name;
  call.grid[0] = grid.x;
  call.grid[1] = grid.y;
  call.grid[2] = grid.z;
  call.block[0] = block.x;
  call.block[1] = block.y;
  call.block[2] = block.z;
  call.smem = smem;
  for (size_t i = 0; i < n; ++i) {
    std::vector<uint8_t> bytes(sizes[i]);
    std::memcpy(bytes.data(), args[i], sizes[i]);
    call.args.push_back(std::move(bytes));
  }
  c->calls.push_back(std::move(call));
  return kOk;
}

void set_error(const std::string& what) { g_last_error = what; }

int record(cudaError_t err, const char* where) {
  if (err == cudaSuccess) return kOk;
  g_last_error = std::string(where) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
  cudaGetLastError();  // clear a sticky launch error state where possible
  return kCudaError;
}

// Hazard "driver-too-old swallowed": cudaGetDeviceCount fails with cudaErrorInsufficientDriver both when
// there is no driver at all and when the driver is older than the runtime this module was built with; the
// two need different fixes, so tell them apart with cudaDriverGetVersion (0 = no driver).
std::string device_status(int* count) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaSuccess && n > 0) {
    *count = n;
    return std::string();
  }
  cudaGetLastError();
  *count = 0;
  if (err == cudaSuccess) return "cudaGetDeviceCount: no CUDA device visible (0 devices)";
  std::string why = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
  if (err == cudaErrorInsufficientDriver) {
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    cudaGetLastError();
    if (driver == 0)
      why += ": no CUDA driver is installed or loadable (libcuda)";
    else
      why += ": the driver supports CUDA " + version_str(driver) + ", this module's runtime is CUDA " +
             version_str(runtime) + "; update the driver or build with an older CUDA toolkit";
  } else if (err == cudaErrorNoDevice) {
    why += ": the driver sees no CUDA device (check CUDA_VISIBLE_DEVICES)";
  }
  return why;
}

}  // namespace cuda

namespace {
int runtime_get(int* d) { return static_cast<int>(cudaGetDevice(d)); }
int runtime_set(int d) { return static_cast<int>(cudaSetDevice(d)); }
const CudaDeviceApi kRuntimeApi{runtime_get, runtime_set};
const CudaDeviceApi* g_device_api = &kRuntimeApi;
}  // namespace

void set_cuda_device_api(const CudaDeviceApi* api) { g_device_api = api ? api : &kRuntimeApi; }

CudaDeviceScope::CudaDeviceScope(int device) {
  if (device < 0) return;
  const CudaDeviceApi& api = *g_device_api;
  int rc = api.get(&saved_);
  if (rc != 0) {
    status_ = cuda::record(static_cast<cudaError_t>(rc), "cudaGetDevice");
    return;
  }
  if (saved_ == device) return;
  rc = api.set(device);
  if (rc != 0) {
    status_ = cuda::record(static_cast<cudaError_t>(rc),
                           ("cudaSetDevice(" + std::to_string(device) + ")").c_str());
    return;
  }
  restore_ = true;
}

CudaDeviceScope::~CudaDeviceScope() {
  if (restore_) g_device_api->set(saved_);
}

std::string cuda_last_error() { return g_last_error.empty() ? std::string("no CUDA error recorded") : g_last_error; }

int cuda_device_count() {
  int n = 0;
  cuda::device_status(&n);
  return n;
}

std::string cuda_device_error() {
  int n = 0;
  return cuda::device_status(&n);
}

}  // namespace lfdn
