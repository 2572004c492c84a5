#pragma once
// One compute owner per process: every model forward runs on a single long-lived thread, the only
// one that ever starts an OpenMP team. libgomp switches every team to a throttled spin (and
// each parallel region to a futex wake) as soon as the process holds more OpenMP threads than
// cores; with a team per batcher, loader and HTTP thread, served forwards ran 2-3x slower than
// the same forward in `bench model` (BENCHMARKS.md). Other threads (HTTP, ingest and decode
// workers, batchers) call single_openmp_thread() so that their own ATen work (preprocessing,
// splitting batches) stays serial and never creates a team, and hand forwards to
// on_compute_thread(). Decoding on those threads overlaps the forward running here.

#include <functional>
#include <future>
#include <memory>
#include <type_traits>

namespace acg2vec::runtime {

/// @brief True on the compute thread.
[[nodiscard]] bool on_compute_thread_now() noexcept;

/// @brief Queues f on the compute thread (FIFO) and returns at once.
void post_to_compute_thread(std::function<void()> f);

/// @brief Runs f on the compute thread and returns its result (exceptions are rethrown here).
/// On the compute thread itself f runs inline, so nested calls cannot deadlock. f must not wait
/// for other work queued on the compute thread.
template <class F>
auto on_compute_thread(F&& f) -> std::invoke_result_t<F> {
  if (on_compute_thread_now()) return std::forward<F>(f)();
  using result_t = std::invoke_result_t<F>;
  auto task = std::make_shared<std::packaged_task<result_t()>>(std::forward<F>(f));
  auto future = task->get_future();
  post_to_compute_thread([task] { (*task)(); });
  return future.get();
}

/// @brief Limits the calling thread to one OpenMP thread (its ATen ops then never start a team).
/// Cheap after the first call on a thread; does nothing on the compute thread.
void single_openmp_thread();

/// @brief Sets the calling thread's OpenMP thread count for its ATen and oneDNN work.
void set_thread_openmp_threads(int threads);

/// @brief Sets the compute thread's intra-op thread count (<= 0 keeps the current one).
void set_compute_threads(int threads);

}  // namespace acg2vec::runtime
