// The CPU backend's threads: a process-wide team of persistent workers plus the calling thread.
//
// A run is a program of phases that every participating thread walks through in the same order. A phase
// has n work items; threads claim chunks of items with an atomic counter and a phase is over when all its
// items are *done*, not when all threads arrive: a thread the OS has descheduled (another process busy on
// the core) holds up the others only while it holds a claimed chunk, never because it has not reached a
// barrier. Which thread computes an item never changes the result (each item is computed whole by one
// thread), so scores are bit-identical for any thread count or schedule.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>

namespace lfdn {
namespace cpu {

struct alignas(64) PhaseCounter {
  std::atomic<int64_t> next{0};
  char pad0[64 - sizeof(std::atomic<int64_t>)];
  std::atomic<int64_t> done{0};
  char pad1[64 - sizeof(std::atomic<int64_t>)];
};

// One thread's view of a run.
class Runner {
 public:
  Runner(PhaseCounter* phases, int num_phases, int slot, int nthreads)
      : phases_(phases), num_phases_(num_phases), slot_(slot), nthreads_(nthreads) {}
  int slot() const { return slot_; }        // 0 .. nthreads-1, unique among the threads of this run
  int nthreads() const { return nthreads_; }

  // Claim chunks of [0, n) and call body(begin, end) on them, then wait until all n items are done.
  template <class F>
  void phase(int64_t n, int64_t chunk, F&& body) {
    PhaseCounter& pc = phases_[next_phase()];
    if (chunk < 1) chunk = 1;
    for (;;) {
      const int64_t b = pc.next.fetch_add(chunk, std::memory_order_relaxed);
      if (b >= n) break;
      const int64_t e = b + chunk < n ? b + chunk : n;
      body(b, e);
      pc.done.fetch_add(e - b, std::memory_order_acq_rel);
    }
    wait_done(pc.done, n);
  }

  // Guided schedule: each claim takes half of an even share of what is left (at least min_chunk), so
  // threads start on long contiguous runs (weight streams the prefetchers like) and the tail balances.
  template <class F>
  void phase_guided(int64_t n, int64_t min_chunk, F&& body) {
    PhaseCounter& pc = phases_[next_phase()];
    if (min_chunk < 1) min_chunk = 1;
    const int64_t split = 2 * static_cast<int64_t>(nthreads_);
    int64_t b = pc.next.load(std::memory_order_relaxed);
    for (;;) {
      if (b >= n) break;
      int64_t c = (n - b) / split;
      if (c < min_chunk) c = min_chunk;
      const int64_t e = b + c < n ? b + c : n;
      if (!pc.next.compare_exchange_weak(b, e, std::memory_order_relaxed)) continue;  // b reloaded
      body(b, e);
      pc.done.fetch_add(e - b, std::memory_order_acq_rel);
      b = pc.next.load(std::memory_order_relaxed);
    }
    wait_done(pc.done, n);
  }

  // A chunk size giving each thread about `per_thread` chunks of an n-item phase.
  int64_t chunk_for(int64_t n, int per_thread = 4) const {
    const int64_t c = n / (static_cast<int64_t>(nthreads_) * per_thread);
    return c < 1 ? 1 : c;
  }

 private:
  int next_phase();
  static void wait_done(const std::atomic<int64_t>& done, int64_t n);
  PhaseCounter* phases_;
  int num_phases_, slot_, nthreads_;
  int cur_ = 0;
};

// Threads a run uses when asked for 0: $LFDN_EDGE_NUM_THREADS, else the hardware concurrency.
int default_threads();

// Run prog on min(nthreads, 256) threads (the caller is one of them) over num_phases phases. Runs are
// serialised process-wide. prog must call Runner::phase exactly num_phases times (fewer is allowed).
void team_run(int nthreads, int num_phases, const std::function<void(Runner&)>& prog);

inline int resolve_threads(int requested) { return requested > 0 ? requested : default_threads(); }
inline size_t align_up(size_t n, size_t a = 64) { return (n + a - 1) / a * a; }

}  // namespace cpu
}  // namespace lfdn
