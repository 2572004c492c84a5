#include "core/timing.h"

#include <fmt/format.h>

namespace acg2vec {

namespace {
thread_local std::shared_ptr<request_timings> current;
}  // namespace

void request_timings::add(std::string_view name, double seconds) {
  std::lock_guard lock(mutex_);
  for (auto& [n, s] : spans_) {
    if (n == name) {
      s += seconds;
      return;
    }
  }
  spans_.emplace_back(std::string(name), seconds);
}

std::vector<std::pair<std::string, double>> request_timings::spans_ms() const {
  std::lock_guard lock(mutex_);
  auto out = spans_;
  for (auto& [n, s] : out) s *= 1e3;
  return out;
}

std::string request_timings::header() const {
  std::string out;
  for (const auto& [name, ms] : spans_ms()) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{};dur={:.3f}", name, ms);
  }
  return out;
}

std::shared_ptr<request_timings> current_request_timings() noexcept { return current; }

request_timing_scope::request_timing_scope(std::shared_ptr<request_timings> timings)
    : previous_(std::exchange(current, std::move(timings))) {}

request_timing_scope::~request_timing_scope() { current = std::move(previous_); }

timed_span::timed_span(std::string_view name) noexcept
    : name_(name), timings_(current.get()), start_(timings_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{}) {}

timed_span::~timed_span() {
  if (timings_ == nullptr) return;
  try {
    timings_->add(name_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  } catch (...) {
    // timing is best effort: never let it turn a served answer into a failure
  }
}

}  // namespace acg2vec
