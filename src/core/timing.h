#pragma once
// Where one request's time goes, for the Server-Timing response header and `bench serve`'s
// breakdown. The HTTP layer opens a request_timing_scope on the worker thread that serves a
// request; lower modules (decoding, preprocessing, the batcher) add named spans to the request
// the calling thread serves, without knowing about HTTP. Outside a scope every call is a no-op.
//
// Thread safety: a request_timings may be written from several threads (the batcher's thread
// records the forward pass of a request whose worker waits for it), so add() locks.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace acg2vec {

class request_timings {
 public:
  /// @brief Adds seconds to the span `name` (spans of one name accumulate, in first-seen order).
  void add(std::string_view name, double seconds);
  /// @brief The spans so far, in milliseconds.
  [[nodiscard]] std::vector<std::pair<std::string, double>> spans_ms() const;
  /// @brief The Server-Timing header value: `name;dur=1.23, ...` (milliseconds).
  [[nodiscard]] std::string header() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::pair<std::string, double>> spans_;
};

/// @brief The timings of the request the calling thread serves; null outside a scope.
[[nodiscard]] std::shared_ptr<request_timings> current_request_timings() noexcept;

/// Makes `timings` the calling thread's current request for its lifetime (scopes nest).
class request_timing_scope {
 public:
  explicit request_timing_scope(std::shared_ptr<request_timings> timings);
  ~request_timing_scope();
  request_timing_scope(const request_timing_scope&) = delete;
  request_timing_scope& operator=(const request_timing_scope&) = delete;

 private:
  std::shared_ptr<request_timings> previous_;
};

/// Adds the time from construction to destruction to the current request's span `name`.
class timed_span {
 public:
  explicit timed_span(std::string_view name) noexcept;
  ~timed_span();
  timed_span(const timed_span&) = delete;
  timed_span& operator=(const timed_span&) = delete;

 private:
  std::string_view name_;
  request_timings* timings_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace acg2vec
