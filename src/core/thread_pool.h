#pragma once
// A fixed-size pool for CPU work that must not compete with libtorch's intra-op threads
// (decode/preprocess during ingest). Tasks are std::function<void()>; results travel via futures.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace acg2vec {

/// @brief Raises the calling thread's nice value by `increment` (Linux: per thread). Threads
/// that decode and prepare images yield to the compute thread this way: on a machine with few
/// cores, a forward pass whose OpenMP team loses a core to a decoder waits at every barrier.
void lower_thread_priority(int increment) noexcept;

/// @brief The nice increment of threads that decode and prepare model inputs (ingest, captions,
/// watch, HTTP workers): ACG2VEC_INPUT_NICE (0-19) when set, else 5 (CFS weight 335 against the
/// compute thread's 1024).
[[nodiscard]] int input_thread_nice() noexcept;

class thread_pool {
 public:
  /// @param nice_increment raises each worker's nice value (0 keeps the caller's priority).
  explicit thread_pool(std::size_t threads, int nice_increment = 0);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  /// @brief Queues f and returns a future of its result; exceptions travel through the future.
  template <class F>
  auto submit(F&& f) -> std::future<std::invoke_result_t<F>> {
    using result_t = std::invoke_result_t<F>;
    auto task = std::make_shared<std::packaged_task<result_t()>>(std::forward<F>(f));
    auto future = task->get_future();
    {
      std::lock_guard lock(mutex_);
      queue_.emplace_back([task] { (*task)(); });
    }
    cv_.notify_one();
    return future;
  }

  [[nodiscard]] std::size_t size() const noexcept { return workers_.size(); }

 private:
  void run();

  std::vector<std::thread> workers_;
  std::deque<std::function<void()>> queue_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
};

}  // namespace acg2vec
