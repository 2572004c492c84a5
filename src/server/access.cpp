#include "server/access.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace acg2vec::server {

namespace {

using padded_bytes = std::array<unsigned char, max_key_bytes>;

// Copies s into a zeroed fixed-size buffer. Only the length of s itself decides how long this
// takes, and each caller pads its own value, never the secret it is compared against.
padded_bytes pad(std::string_view s) noexcept {
  padded_bytes out{};
  std::memcpy(out.data(), s.data(), std::min(s.size(), max_key_bytes));
  return out;
}

// Every byte of both buffers is visited and the length difference folded in, so neither where
// the keys differ nor whether their lengths do changes the work done. An oversized value never
// matches, through the same arithmetic rather than a branch.
bool padded_equal(const padded_bytes& a, std::size_t a_size, const padded_bytes& b, std::size_t b_size) noexcept {
  unsigned diff = 0;
  for (std::size_t i = 0; i < max_key_bytes; ++i) diff |= static_cast<unsigned>(a[i] ^ b[i]);
  std::uint64_t size_diff = static_cast<std::uint64_t>(a_size) ^ static_cast<std::uint64_t>(b_size);
  std::uint64_t oversize = static_cast<std::uint64_t>(a_size > max_key_bytes) |
                           static_cast<std::uint64_t>(b_size > max_key_bytes);
  std::uint64_t all = diff | size_diff | oversize;
  // Reduce to 0/1 without a data-dependent branch: (all | -all) has its top bit set iff all != 0.
  return ((all | (~all + 1)) >> 63) == 0;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// A key must fit in a header as a Bearer token would: visible ASCII or UTF-8, no whitespace.
std::string key_problem(std::string_view key) {
  if (key.empty()) return "is empty";
  if (key.size() > max_key_bytes) return fmt::format("is {} bytes; the limit is {}", key.size(), max_key_bytes);
  for (unsigned char c : key) {
    if (c <= 0x20 || c == 0x7f) return "contains whitespace or a control character";
  }
  return {};
}

}  // namespace

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  return padded_equal(pad(a), a.size(), pad(b), b.size());
}

key_set::key_set(const std::vector<std::string>& keys) {
  keys_.reserve(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (auto problem = key_problem(keys[i]); !problem.empty()) {
      fail(errc::bad_parameter, "API key {} {}", i + 1, problem);
    }
    keys_.push_back(padded_key{pad(keys[i]), keys[i].size()});
  }
}

std::optional<std::size_t> key_set::find(std::string_view presented) const noexcept {
  padded_bytes candidate = pad(presented);
  std::size_t found = keys_.size();
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    bool eq = padded_equal(keys_[i].bytes, keys_[i].size, candidate, presented.size());
    // Branch-free select keeps the loop's work the same whichever key (if any) matches.
    std::size_t mask = ~(static_cast<std::size_t>(eq) - 1);  // all ones when eq
    found = (i & mask) | (found & ~mask);
  }
  if (found == keys_.size()) return std::nullopt;
  return found;
}

std::vector<std::string> parse_key_file(std::string_view text, std::string_view source) {
  std::vector<std::string> keys;
  std::size_t line_no = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    line = trim(line);
    if (line.empty() || line.front() == '#') continue;
    // The message names the line, never the key: it may end up in a log.
    if (auto problem = key_problem(line); !problem.empty()) {
      fail(errc::bad_parameter, "API key file {} line {}: the key {}", source, line_no, problem);
    }
    keys.emplace_back(line);
  }
  if (keys.empty()) {
    fail(errc::bad_parameter, "API key file {} holds no keys (blank and '#' lines are skipped)", source);
  }
  return keys;
}

key_set load_key_file(const std::filesystem::path& path) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    fail(errc::bad_parameter, "API key file {} does not exist", path.string());
  }
  if (std::filesystem::is_directory(status)) fail(errc::bad_parameter, "API key file {} is a directory", path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(errc::bad_parameter, "API key file {} cannot be read: {}", path.string(), std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) fail(errc::bad_parameter, "API key file {} cannot be read", path.string());
  return key_set(parse_key_file(buf.str(), path.string()));
}

std::optional<std::string> presented_key(std::string_view authorization, std::string_view x_api_key) {
  authorization = trim(authorization);
  auto space = authorization.find_first_of(" \t");
  if (space != std::string_view::npos && iequals(authorization.substr(0, space), "Bearer")) {
    auto token = trim(authorization.substr(space));
    if (!token.empty()) return std::string(token);
  }
  x_api_key = trim(x_api_key);
  if (!x_api_key.empty()) return std::string(x_api_key);
  return std::nullopt;
}

origin_list::origin_list(const std::vector<std::string>& entries) {
  for (const auto& entry : entries) {
    std::string_view rest = entry;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      std::string_view item = trim(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      if (item.empty()) continue;
      if (item == "*") {
        any_ = true;
        continue;
      }
      while (!item.empty() && item.back() == '/') item.remove_suffix(1);
      auto scheme_end = item.find("://");
      bool valid = scheme_end != std::string_view::npos && scheme_end > 0 && scheme_end + 3 < item.size() &&
                   item.find('/', scheme_end + 3) == std::string_view::npos &&
                   std::none_of(item.begin(), item.end(), [](char c) { return is_space(c); });
      if (!valid) {
        fail(errc::bad_parameter, "CORS origin '{}' must be '*' or scheme://host[:port] (no path)", item);
      }
      std::string origin(item);
      // Browsers send the scheme and host in lower case.
      std::transform(origin.begin(), origin.end(), origin.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (std::find(origins_.begin(), origins_.end(), origin) == origins_.end()) origins_.push_back(std::move(origin));
    }
  }
}

bool origin_list::allows(std::string_view origin) const {
  if (origin.empty()) return false;
  if (any_) return true;
  // Entries are kept in lower case; scheme and host are case-insensitive (RFC 6454), so a client
  // that sends "HTTP://Example.com" is the same origin.
  std::string lowered(origin);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::find(origins_.begin(), origins_.end(), lowered) != origins_.end();
}

rate_limiter::rate_limiter(double rate, double burst, std::size_t max_clients, clock_fn now)
    : rate_(rate), burst_(burst), max_clients_(std::max<std::size_t>(1, max_clients)), now_(std::move(now)) {
  if (!(rate_ > 0) || !std::isfinite(rate_)) {
    fail(errc::bad_parameter, "rate limit must be a positive number, got {}", rate);
  }
  if (!(burst_ >= 1) || !std::isfinite(burst_)) fail(errc::bad_parameter, "rate burst must be at least 1, got {}", burst);
}

void rate_limiter::forget_idle(clock::time_point now) {
  // A bucket that has had time to refill completely behaves exactly like a new one.
  const auto refill = std::chrono::duration<double>(burst_ / rate_);
  while (!recent_.empty()) {
    auto it = buckets_.find(recent_.back());
    if (now - it->second.last < refill) break;
    buckets_.erase(it);
    recent_.pop_back();
  }
}

rate_limiter::decision rate_limiter::acquire(const std::string& client) {
  const auto now = now_();
  std::lock_guard lock(mutex_);
  forget_idle(now);
  auto it = buckets_.find(client);
  if (it == buckets_.end()) {
    while (buckets_.size() >= max_clients_) {
      buckets_.erase(recent_.back());
      recent_.pop_back();
    }
    recent_.push_front(client);
    it = buckets_.emplace(client, bucket{burst_, now, recent_.begin()}).first;
  } else {
    auto& b = it->second;
    double elapsed = std::chrono::duration<double>(now - b.last).count();
    if (elapsed > 0) b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
    b.last = std::max(b.last, now);
    recent_.splice(recent_.begin(), recent_, b.lru);
  }
  auto& b = it->second;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return {true, 0};
  }
  double wait = (1.0 - b.tokens) / rate_;
  return {false, std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(wait)))};
}

std::size_t rate_limiter::tracked() const {
  std::lock_guard lock(mutex_);
  return buckets_.size();
}

}  // namespace acg2vec::server