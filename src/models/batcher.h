#pragma once
// Dynamic batching: concurrent requests for one model are merged into one forward pass.
// A request waits at most max_wait for companions; a batch never exceeds max_batch rows.
// Only requests whose inputs have the same per-row shape are merged.
//
// Thread safety: submit() from any thread; the forward function runs on the batcher's thread.

#include <ATen/ATen.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace acg2vec {

class batcher {
 public:
  /// Runs one batch [N, ...] and returns outputs whose first dimension is N.
  using forward_fn = std::function<std::vector<at::Tensor>(const at::Tensor& batch)>;
  /// Observes each forward pass (rows, seconds), e.g. for /metrics.
  using observer_fn = std::function<void(std::size_t rows, double seconds)>;

  batcher(forward_fn forward, int max_batch, std::chrono::microseconds max_wait, observer_fn observer = {});
  ~batcher();
  batcher(const batcher&) = delete;
  batcher& operator=(const batcher&) = delete;

  /// @brief Queues input [n, ...] (n >= 1); the future yields the outputs' rows for this input.
  std::future<std::vector<at::Tensor>> submit(at::Tensor input);

 private:
  struct request {
    at::Tensor input;
    std::promise<std::vector<at::Tensor>> promise;
  };
  void run();

  forward_fn forward_;
  int max_batch_;
  std::chrono::microseconds max_wait_;
  observer_fn observer_;
  std::deque<request> queue_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace acg2vec
