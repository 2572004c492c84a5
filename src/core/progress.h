#pragma once
// A progress indicator for long CLI jobs (ingest, embed of many files).
// On a terminal it redraws one line with a bar, rate and ETA; otherwise (pipes, CI logs) it
// prints a plain line at most every few seconds so logs stay readable.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace acg2vec {

class progress_bar {
 public:
  /// @param total expected number of steps; 0 when unknown (no ETA is shown).
  progress_bar(std::string label, std::uint64_t total, std::FILE* out = stderr);
  ~progress_bar();
  progress_bar(const progress_bar&) = delete;
  progress_bar& operator=(const progress_bar&) = delete;

  /// @brief Adds n completed steps. Thread-safe.
  void advance(std::uint64_t n = 1);
  /// @brief Draws the final state and ends the line. Called by the destructor if not called.
  void finish();

  [[nodiscard]] std::uint64_t done() const;

 private:
  void draw(bool final_line);

  std::string label_;
  std::uint64_t total_;
  std::FILE* out_;
  bool tty_;
  bool finished_ = false;
  std::uint64_t done_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  mutable std::mutex mutex_;
};

/// @brief Formats seconds as "1h02m", "3m05s" or "12s".
std::string format_duration(double seconds);

}  // namespace acg2vec
