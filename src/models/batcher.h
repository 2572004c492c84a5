#pragma once
// Dynamic batching: concurrent requests for one model are merged into one forward pass.
// Requests are served strictly in arrival order: a batch is the longest prefix of the queue whose
// inputs share one per-row shape and fit in max_batch rows (a single larger request runs alone),
// so no request is ever passed over by a later one. A request waits for companions at most
// max_wait counted from its own arrival; beyond that it waits only for the forwards of the work
// that arrived before it (plus the one in progress). It waits for companions only while the load
// is concurrent (another request queued, or requests arrived during the last forward): a lone
// caller sending one request after another would otherwise pay max_wait on every request.
// Each request's wait and forward time go to the request the submitting thread serves
// (core/timing.h: Server-Timing).
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

#include "core/timing.h"

namespace acg2vec::models {

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
    std::chrono::steady_clock::time_point arrived;
    std::shared_ptr<request_timings> timings;
  };
  void run();
  void forward_done();

  forward_fn forward_;
  int max_batch_;
  std::chrono::microseconds max_wait_;
  observer_fn observer_;
  std::deque<request> queue_;
  std::int64_t rows_queued_ = 0;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool forward_running_ = false;
  std::size_t arrived_during_forward_ = 0;
  bool load_concurrent_ = false;  ///< requests arrived while the last forward ran
  std::chrono::duration<double> last_forward_{0};  ///< how long the last forward ran
  std::thread worker_;
};

}  // namespace acg2vec::models