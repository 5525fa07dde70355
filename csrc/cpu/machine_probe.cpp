// Machine probe (machine_probe.h). The read is a plain sum of 64-bit words, 1 MiB chunks claimed by the team's
// threads (every thread streams; the compiler vectorises the loop at the baseline ISA, which is enough to
// saturate DRAM); the FMA peak runs the widest kernel table's register-only FMA loop on every thread.
#include "cpu/machine_probe.h"

#include <chrono>
#include <cstring>
#include <memory>

#include "cpu/kernels.h"
#include "cpu/team.h"
#include "lfdn/common.h"
#include "lfdn/engine.h"

namespace lfdn {
namespace cpu {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// n: a multiple of 4 (the chunks are 1 MiB)
uint64_t sum_words(const uint64_t* p, int64_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int64_t i = 0; i < n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  return s0 + s1 + s2 + s3;
}

}  // namespace

int probe_machine(int threads, size_t read_bytes, int reps, MachineProbe* out) {
  if (out == nullptr) return kNullPointer;
  if (threads < 0 || reps < 1) return kBadSize;
  const int nt = resolve_threads(threads);
  if (read_bytes == 0) read_bytes = size_t{512} << 20;
  constexpr size_t kChunk = size_t{1} << 20;
  const size_t chunks = (read_bytes + kChunk - 1) / kChunk;
  read_bytes = chunks * kChunk;
  AlignedBuffer buf = aligned_alloc_bytes(read_bytes);
  if (!buf) return kBadSize;
  // first touch by the team too (page placement as in the streaming read)
  team_run(nt, 1, [&](Runner& r) {
    r.phase(static_cast<int64_t>(chunks), 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) std::memset(buf.get() + c * kChunk, static_cast<int>(c & 0x7F), kChunk);
    });
  });
  std::unique_ptr<uint64_t[]> sums(new uint64_t[chunks]);
  double best_read = 0.0;
  for (int rep = 0; rep < reps; ++rep) {
    const double t0 = now_s();
    team_run(nt, 1, [&](Runner& r) {
      r.phase(static_cast<int64_t>(chunks), 4, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c)
          sums[c] = sum_words(reinterpret_cast<const uint64_t*>(buf.get() + c * kChunk), kChunk / 8);
      });
    });
    const double dt = now_s() - t0;
    if (dt > 0 && read_bytes / dt > best_read) best_read = read_bytes / dt;
  }
  uint64_t total = 0;
  for (size_t c = 0; c < chunks; ++c) total += sums[c];
  volatile uint64_t keep = total;
  (void)keep;

  const Kernels* k = table_by_name("auto");
  constexpr int64_t kIters = 20000000;  // ~0.1-0.2 s per thread-item on a 3-4 GHz core
  double best_flops = 0.0;
  float sinks[256] = {};
  for (int rep = 0; rep < reps; ++rep) {
    double flops[256] = {};
    const double t0 = now_s();
    team_run(nt, 1, [&](Runner& r) {
      r.phase(nt, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) flops[i % 256] += k->fma_loop(kIters, &sinks[i % 256]);
      });
    });
    const double dt = now_s() - t0;
    double f = 0.0;
    for (int i = 0; i < nt && i < 256; ++i) f += flops[i];
    if (dt > 0 && f / dt > best_flops) best_flops = f / dt;
  }
  double best_bf16 = 0.0;
  for (int rep = 0; k->bf16_dot_loop != nullptr && rep < reps; ++rep) {
    double flops[256] = {};
    const double t0 = now_s();
    team_run(nt, 1, [&](Runner& r) {
      r.phase(nt, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) flops[i % 256] += k->bf16_dot_loop(kIters, &sinks[i % 256]);
      });
    });
    const double dt = now_s() - t0;
    double f = 0.0;
    for (int i = 0; i < nt && i < 256; ++i) f += flops[i];
    if (dt > 0 && f / dt > best_bf16) best_bf16 = f / dt;
  }
  out->bf16_gflops = best_bf16 / 1e9;
  // INT8 dot products: the table's vector loop (vpdpbusd / sdot) and, where usable, the matrix engine's (AMX
  // tdpbusd); operations = 2 per byte product
  auto best_of = [&](double (*loop)(int64_t, float*), int64_t iters) {
    double best = 0.0;
    for (int rep = 0; loop != nullptr && rep < reps; ++rep) {
      double ops[256] = {};
      const double t0 = now_s();
      team_run(nt, 1, [&](Runner& r) {
        r.phase(nt, 1, [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) ops[i % 256] += loop(iters, &sinks[i % 256]);
        });
      });
      const double dt = now_s() - t0;
      double f = 0.0;
      for (int i = 0; i < nt && i < 256; ++i) f += ops[i];
      if (dt > 0 && f / dt > best) best = f / dt;
    }
    return best;
  };
  out->int8_gops = best_of(k->i8_dot_loop, kIters) / 1e9;
  out->int8_tile_gops = best_of(k->i8_tile_dot_loop, kIters / 16) / 1e9;
  out->read_gbs = best_read / 1e9;
  out->fma_gflops = best_flops / 1e9;
  out->fma_isa = k->name;
  out->read_bytes = read_bytes;
  out->threads = nt;
  return kOk;
}

}  // namespace cpu
}  // namespace lfdn
