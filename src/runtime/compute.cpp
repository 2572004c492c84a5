#include "runtime/compute.h"

#include "core/cpu_turns.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace acg2vec::runtime {

namespace {

thread_local bool is_compute_thread = false;

class compute_thread {
 public:
  compute_thread() : worker_([this] { run(); }) { worker_.detach(); }

  void post(std::function<void()> f) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(f));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    is_compute_thread = true;
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return !queue_.empty(); });
        f = std::move(queue_.front());
        queue_.pop_front();
      }
      compute_turn turn;  // input steps of other threads pause while the team runs (core/cpu_turns.h)
      f();  // packaged tasks carry their own exceptions
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::thread worker_;
};

compute_thread& the_compute_thread() {
  // Never destroyed: work posted from static destructors (a batcher draining at exit) still
  // finds its thread, and the blocked thread does not keep the process from exiting.
  static auto* t = new compute_thread();
  return *t;
}

}  // namespace

bool on_compute_thread_now() noexcept { return is_compute_thread; }

void post_to_compute_thread(std::function<void()> f) { the_compute_thread().post(std::move(f)); }

void set_thread_openmp_threads(int threads) {
  // ATen sets each thread's OpenMP thread count lazily on its first parallel op; do that first
  // so it cannot undo this afterwards. The count is set through the loaded libgomp (libtorch's;
  // the binary does not link it itself) and not with at::set_num_threads(): once that has been
  // called, every thread's lazy set-up calls it again, and each call re-creates libtorch's
  // pthreadpool, whose two new threads spin ~20 ms (0.3 s of CPU at the start of an ingest).
  (void)at::get_num_threads();
  using set_fn = void (*)(int);
  if (auto set = reinterpret_cast<set_fn>(::dlsym(RTLD_DEFAULT, "omp_set_num_threads"))) set(threads);
}

void single_openmp_thread() {
  thread_local bool done = false;
  if (done || is_compute_thread) return;
  done = true;
  set_thread_openmp_threads(1);
}

void set_compute_threads(int threads) {
  if (threads <= 0) return;
  on_compute_thread([threads] { set_thread_openmp_threads(threads); });
}

}  // namespace acg2vec::runtime
