#pragma once
// Wall-clock time as stored with items (created_at/updated_at), and elapsed time for reports.

#include <chrono>
#include <cstdint>

namespace acg2vec {

/// @brief Milliseconds since the Unix epoch.
inline std::int64_t unix_time_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// @brief Seconds elapsed on the steady clock since t.
inline double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace acg2vec
