#pragma once
// Wall-clock time as stored with items (created_at/updated_at).

#include <chrono>
#include <cstdint>

namespace acg2vec {

/// @brief Milliseconds since the Unix epoch.
inline std::int64_t unix_time_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace acg2vec
