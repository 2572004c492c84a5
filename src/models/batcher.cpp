#include "models/batcher.h"

#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>

#include <optional>

#include "core/cpu_turns.h"
#include "core/error.h"
#include "runtime/compute.h"

namespace acg2vec::models {

batcher::batcher(forward_fn forward, int max_batch, std::chrono::microseconds max_wait, observer_fn observer)
    : forward_(std::move(forward)),
      max_batch_(std::max(1, max_batch)),
      max_wait_(max_wait),
      observer_(std::move(observer)),
      worker_([this] { run(); }) {}

batcher::~batcher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

std::future<std::vector<at::Tensor>> batcher::submit(at::Tensor input) {
  if (!input.defined() || input.dim() < 1 || input.size(0) < 1) fail(errc::internal, "batcher: empty input");
  request r{std::move(input), {}, std::chrono::steady_clock::now(), current_request_timings()};
  auto future = r.promise.get_future();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) fail(errc::unavailable, "model is shutting down");
    rows_queued_ += r.input.size(0);
    if (forward_running_) ++arrived_during_forward_;
    queue_.push_back(std::move(r));
  }
  cv_.notify_one();
  return future;
}

void batcher::run() {
  c10::InferenceMode guard;
  runtime::single_openmp_thread();
  for (;;) {
    std::vector<request> batch;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      // Give concurrent callers a short window to join this forward pass, counted from the
      // arrival of the oldest request: one that already waited through the previous forward
      // does not wait a second window. A lone sequential caller, who has no companion to wait
      // for, is not kept waiting.
      const auto deadline = queue_.front().arrived + max_wait_;
      const bool expect_company = load_concurrent_ || queue_.size() > 1;
      while (expect_company && !stopping_ && rows_queued_ < max_batch_ &&
             cv_.wait_until(lock, deadline) != std::cv_status::timeout) {
      }
      // When forwards and input steps take turns (core/cpu_turns.h) nothing is decoded during a
      // forward, so companions arrive after it: while other threads' input steps are under way
      // and the batch is not full, wait for them, at most one more forward's time. A thread
      // between two steps (decode done, preprocessing next) holds none for a moment, so the
      // wait ends only after a millisecond without any.
      if (cpu_turns_enabled() && !stopping_ && rows_queued_ < max_batch_ && input_steps_pending() > 0) {
        using steady = std::chrono::steady_clock;
        const auto limit = std::max(deadline, steady::now()) + std::chrono::duration_cast<steady::duration>(last_forward_);
        std::optional<steady::time_point> quiet_since;
        while (!stopping_ && rows_queued_ < max_batch_ && steady::now() < limit) {
          if (input_steps_pending() > 0) {
            quiet_since.reset();
          } else if (!quiet_since) {
            quiet_since = steady::now();
          } else if (steady::now() - *quiet_since >= std::chrono::milliseconds(1)) {
            break;
          }
          cv_.wait_for(lock, std::chrono::microseconds(250));
        }
      }
      // The longest prefix of one row shape that fits: taking a later request past one that does
      // not fit (or has another shape) would let it overtake, and under steady load the skipped
      // one could wait indefinitely.
      const auto row_shape = queue_.front().input.sizes().slice(1).vec();
      const auto dtype = queue_.front().input.scalar_type();
      std::int64_t rows = 0;
      while (!queue_.empty()) {
        const auto& next = queue_.front();
        const bool same = next.input.sizes().slice(1).vec() == row_shape && next.input.scalar_type() == dtype;
        if (!batch.empty() && (!same || rows + next.input.size(0) > max_batch_)) break;
        rows += next.input.size(0);
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      rows_queued_ -= rows;
      forward_running_ = true;
      arrived_during_forward_ = 0;
    }
    const auto formed = std::chrono::steady_clock::now();
    for (auto& r : batch) {
      if (r.timings) r.timings->add("batch_wait", std::chrono::duration<double>(formed - r.arrived).count());
    }
    try {
      // Merging, the forward and splitting the outputs all run on the process's compute thread
      // (runtime/compute.h); this thread only forms batches and hands out results.
      runtime::on_compute_thread([&] {
        c10::InferenceMode compute_guard;
        std::vector<at::Tensor> inputs;
        inputs.reserve(batch.size());
        for (auto& r : batch) inputs.push_back(r.input);
        auto start = std::chrono::steady_clock::now();
        for (auto& r : batch) {
          if (r.timings) r.timings->add("compute_wait", std::chrono::duration<double>(start - formed).count());
        }
        at::Tensor merged = inputs.size() == 1 ? inputs[0] : at::cat(inputs, 0);
        auto outputs = forward_(merged);
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        {
          std::lock_guard lock(mutex_);
          last_forward_ = std::chrono::duration<double>(seconds);
        }
        // Before any caller learns its answer, so that a caller's next request counts as new.
        forward_done();
        if (observer_) observer_(static_cast<std::size_t>(merged.size(0)), seconds);
        for (auto& r : batch) {
          if (r.timings) r.timings->add("forward", seconds);
        }
        std::int64_t offset = 0;
        for (auto& r : batch) {
          std::int64_t n = r.input.size(0);
          std::vector<at::Tensor> mine;
          mine.reserve(outputs.size());
          for (const auto& o : outputs) {
            if (o.dim() == 0 || o.size(0) != merged.size(0)) {
              fail(errc::internal, "model output has {} rows for a batch of {}", o.dim() ? o.size(0) : 0,
                   merged.size(0));
            }
            mine.push_back(o.narrow(0, offset, n).clone());
          }
          offset += n;
          r.promise.set_value(std::move(mine));
        }
      });
    } catch (...) {
      auto ep = std::current_exception();
      for (auto& r : batch) {
        try {
          r.promise.set_exception(ep);
        } catch (const std::future_error&) {
          // already satisfied before the failure
        }
      }
    }
    forward_done();
  }
}

void batcher::forward_done() {
  std::lock_guard lock(mutex_);
  if (!forward_running_) return;
  forward_running_ = false;
  load_concurrent_ = arrived_during_forward_ > 0;
}

}  // namespace acg2vec::models