#include "core/thread_pool.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace acg2vec {

void lower_thread_priority(int increment) noexcept {
  if (increment <= 0) return;
  // On Linux PRIO_PROCESS with a thread id sets that thread alone. Failure (a sandbox without
  // the call) only costs the priority, never the work.
  const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
  errno = 0;
  int current = ::getpriority(PRIO_PROCESS, tid);
  if (current == -1 && errno != 0) return;
  (void)::setpriority(PRIO_PROCESS, tid, std::min(19, current + increment));
}

int input_thread_nice() noexcept {
  const char* v = std::getenv("ACG2VEC_INPUT_NICE");
  if (v == nullptr || *v == 0) return 5;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  return end != nullptr && *end == 0 ? static_cast<int>(std::clamp(n, 0L, 19L)) : 5;
}

thread_pool::thread_pool(std::size_t threads, int nice_increment) {
  threads = std::max<std::size_t>(1, threads);
  workers_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) {
    workers_.emplace_back([this, nice_increment] {
      lower_thread_priority(nice_increment);
      run();
    });
  }
}

thread_pool::~thread_pool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void thread_pool::run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

}  // namespace acg2vec
