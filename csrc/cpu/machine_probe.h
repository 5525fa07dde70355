// Internal to the CPU backend: what the machine can do, measured with the core's own thread team, for the
// benchmark's roofline (lfdn-edge bench): streaming read bandwidth and FMA peak.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lfdn {
namespace cpu {

struct MachineProbe {
  double read_gbs = 0.0;      // best of `reps` streaming reads of a buffer far above the caches, GB/s (1e9 B/s)
  double fma_gflops = 0.0;    // best of `reps` register-only FMA runs, GFLOPS (2 flops per FMA lane)
  double int8_gops = 0.0;       // INT8 dot products of the table (vpdpbusd / sdot), 2 ops per byte product; 0: none
  double int8_tile_gops = 0.0;  // the same on the matrix engine (AMX tdpbusd); 0 where not usable
  double bf16_gflops = 0.0;   // the same with vdpbf16ps (4 flops per FP32 lane); 0 without BF16 kernels
  const char* fma_isa = "";   // the kernel table the FMA loop ran with (the widest this CPU supports)
  size_t read_bytes = 0;
  int threads = 0;
};

// threads 0: the default count. read_bytes: buffer size (>= 64 MiB recommended; 0: 512 MiB).
int probe_machine(int threads, size_t read_bytes, int reps, MachineProbe* out);

}  // namespace cpu
}  // namespace lfdn
