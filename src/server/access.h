#pragma once
// Access control building blocks for the HTTP server: API keys compared in constant time, the
// key file format, the Bearer / X-API-Key header forms, CORS origin lists and a per-client token
// bucket. Nothing here knows about httplib; http_server wires these into its request path.
//
// Thread safety: key_set and origin_list are immutable after construction (safe to share);
// rate_limiter is internally locked.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace acg2vec::server {

/// Keys longer than this are refused when loaded; presented keys longer than this never match.
/// The fixed size is what makes the comparison independent of both keys' lengths.
inline constexpr std::size_t max_key_bytes = 256;

/// @brief a == b, in time that depends only on max_key_bytes: no exit at the first differing
/// byte and none on a length difference. Strings over max_key_bytes compare unequal.
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

/// A set of API keys, each kept zero-padded to max_key_bytes so that a lookup touches every byte
/// of every key whatever is presented.
class key_set {
 public:
  key_set() = default;
  /// @brief Throws errc::bad_parameter for an empty key, one over max_key_bytes, or one holding
  /// whitespace or control characters (they cannot travel in a Bearer header).
  explicit key_set(const std::vector<std::string>& keys);

  [[nodiscard]] bool empty() const noexcept { return keys_.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return keys_.size(); }

  /// @brief Index of the key equal to presented, checking every key without early exit.
  [[nodiscard]] std::optional<std::size_t> find(std::string_view presented) const noexcept;

 private:
  struct padded_key {
    std::array<unsigned char, max_key_bytes> bytes{};
    std::size_t size = 0;
  };
  std::vector<padded_key> keys_;
};

/// @brief Keys from the text of a key file: one per line, surrounding whitespace trimmed, blank
/// lines and lines starting with '#' skipped. source names the file in error messages.
/// Throws errc::bad_parameter for a malformed key (with its line number) or when no key is left.
std::vector<std::string> parse_key_file(std::string_view text, std::string_view source);

/// @brief Reads and parses a key file. A missing, unreadable or keyless file is errc::bad_parameter
/// with one line naming the path and the reason.
key_set load_key_file(const std::filesystem::path& path);

/// @brief The key a request presents: "Authorization: Bearer <key>" (scheme case-insensitive)
/// or else "X-API-Key: <key>"; empty header values count as absent.
std::optional<std::string> presented_key(std::string_view authorization, std::string_view x_api_key);

/// CORS origins a browser may call the API from. "*" allows any origin.
class origin_list {
 public:
  origin_list() = default;
  /// @brief Each entry may itself be a comma-separated list; entries are trimmed and trailing
  /// slashes dropped. Throws errc::bad_parameter for an entry that is neither "*" nor an
  /// http(s)://host[:port] origin.
  explicit origin_list(const std::vector<std::string>& entries);

  [[nodiscard]] bool empty() const noexcept { return origins_.empty() && !any_; }
  [[nodiscard]] bool allows_any() const noexcept { return any_; }
  /// @brief Whether a request's Origin header value is allowed (ASCII case-insensitive match).
  [[nodiscard]] bool allows(std::string_view origin) const;

 private:
  std::vector<std::string> origins_;
  bool any_ = false;
};

/// Token buckets per client: each holds at most `burst` tokens, refills at `rate` tokens per
/// second, and a request takes one. Idle clients are forgotten (a bucket idle long enough to be
/// full is the same as a new one), and at most max_clients are remembered, least recently seen
/// dropped first, so the map cannot grow without bound.
class rate_limiter {
 public:
  using clock = std::chrono::steady_clock;
  using clock_fn = std::function<clock::time_point()>;

  struct decision {
    bool allowed = true;
    /// Whole seconds until a token is available (>= 1) when not allowed; 0 otherwise.
    std::int64_t retry_after_s = 0;
  };

  /// @brief rate > 0 requests per second, burst >= 1. clock is injectable for tests.
  rate_limiter(double rate, double burst, std::size_t max_clients = 10'000, clock_fn now = clock::now);

  /// @brief Takes one token from client's bucket, or says how long to wait.
  decision acquire(const std::string& client);

  /// @brief Number of clients currently remembered.
  [[nodiscard]] std::size_t tracked() const;

 private:
  struct bucket {
    double tokens = 0;
    clock::time_point last;
    std::list<std::string>::iterator lru;  // position in recent_, front = most recent
  };

  void forget_idle(clock::time_point now);

  double rate_;
  double burst_;
  std::size_t max_clients_;
  clock_fn now_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, bucket> buckets_;
  std::list<std::string> recent_;
};

}  // namespace acg2vec::server