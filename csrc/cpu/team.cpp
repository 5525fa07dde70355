#include "cpu/team.h"

#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <immintrin.h>
#define LFDN_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define LFDN_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define LFDN_CPU_RELAX() ((void)0)
#endif

namespace lfdn {
namespace cpu {

namespace {

constexpr int kMaxThreads = 256;
constexpr int kSpinsBeforeYield = 4000;

class Team {
 public:
  static Team& instance() {
    static std::once_flag once;
    std::call_once(once, [] {
      current() = new Team();  // never destroyed: workers may outlive static destructors at exit
#if defined(__unix__) || defined(__APPLE__)
      // A forked child has none of the workers (and maybe a locked mutex): give it a fresh team.
      pthread_atfork(nullptr, nullptr, [] { current() = new Team(); });
#endif
    });
    return *current();
  }

  void run(int nthreads, int num_phases, const std::function<void(Runner&)>& prog) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    nthreads = nthreads < 1 ? 1 : (nthreads > kMaxThreads ? kMaxThreads : nthreads);
    ensure_workers(nthreads - 1);
    ensure_phases(num_phases);
    for (int i = 0; i < num_phases; ++i) {
      phases_[i].next.store(0, std::memory_order_relaxed);
      phases_[i].done.store(0, std::memory_order_relaxed);
    }
    {
      std::lock_guard<std::mutex> lk(mutex_);
      prog_ = &prog;
      num_phases_ = num_phases;
      wanted_ = nthreads - 1;
      joined_ = 0;
      active_ = 0;
      finished_ = false;
      ++generation_;
    }
    cv_.notify_all();
    Runner self(phases_.get(), num_phases, 0, nthreads);
    prog(self);
    {
      std::lock_guard<std::mutex> lk(mutex_);
      finished_ = true;  // workers that have not joined yet will not
    }
    int spins = 0;
    while (active_.load(std::memory_order_acquire) != 0) {
      if (++spins < kSpinsBeforeYield) LFDN_CPU_RELAX();
      else std::this_thread::yield();
    }
  }

 private:
  static Team*& current() {
    static Team* t = nullptr;
    return t;
  }

  void ensure_workers(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index] { loop(index); });
      workers_.back().detach();
    }
  }

  void ensure_phases(int n) {
    if (n <= phase_capacity_) return;
    phases_.reset(new PhaseCounter[n]);
    phase_capacity_ = n;
  }

  void loop(int /*index*/) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(Runner&)>* prog = nullptr;
      int slot = 0, nthreads = 1, num_phases = 0;
      {
        std::unique_lock<std::mutex> lk(mutex_);
        cv_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
        if (finished_ || joined_ >= wanted_) continue;  // run over, or enough threads already
        slot = ++joined_;
        active_.fetch_add(1, std::memory_order_acq_rel);
        prog = prog_;
        nthreads = wanted_ + 1;
        num_phases = num_phases_;
      }
      Runner r(phases_.get(), num_phases, slot, nthreads);
      (*prog)(r);
      active_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::mutex run_mutex_;  // one run at a time
  std::mutex mutex_;      // guards the fields below
  std::condition_variable cv_;
  uint64_t generation_ = 0;
  const std::function<void(Runner&)>* prog_ = nullptr;
  int num_phases_ = 0, wanted_ = 0, joined_ = 0;
  bool finished_ = true;
  std::atomic<int> active_{0};
  std::vector<std::thread> workers_;
  std::unique_ptr<PhaseCounter[]> phases_;
  int phase_capacity_ = 0;
};

}  // namespace

int Runner::next_phase() {
  // Programs are sized by their callers; running past the end is a bug, stopped loudly.
  if (cur_ >= num_phases_) std::abort();
  return cur_++;
}

void Runner::wait_done(const std::atomic<int64_t>& done, int64_t n) {
  int spins = 0;
  while (done.load(std::memory_order_acquire) < n) {
    if (++spins < kSpinsBeforeYield) LFDN_CPU_RELAX();
    else std::this_thread::yield();
  }
}

int default_threads() {
  static const int n = [] {
    if (const char* env = std::getenv("LFDN_EDGE_NUM_THREADS")) {
      const int v = std::atoi(env);
      if (v > 0) return v > kMaxThreads ? kMaxThreads : v;
    }
    const unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 1 : static_cast<int>(hc > static_cast<unsigned>(kMaxThreads) ? kMaxThreads : hc);
  }();
  return n;
}

void team_run(int nthreads, int num_phases, const std::function<void(Runner&)>& prog) {
  Team::instance().run(nthreads, num_phases, prog);
}

}  // namespace cpu
}  // namespace lfdn
