#pragma once
// Wall-clock time as stored with items (created_at/updated_at), and elapsed and CPU time for reports.

#include <sys/resource.h>

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

/// @brief CPU time (user + system) of every thread of this process so far, in seconds.
inline double process_cpu_seconds() {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

}  // namespace acg2vec
