#pragma once
// One error type for the whole service. Every failure that can reach a user carries an errc,
// and the errc alone decides the HTTP status and the CLI exit code (see error.cpp).

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace acg2vec {

enum class errc {
  bad_parameter,      ///< malformed or out-of-range input from the caller
  unsupported_media,  ///< bytes that are not a decodable image / unsupported format
  too_large,          ///< payload or image over a configured limit
  not_found,          ///< unknown id, route, model or file
  conflict,           ///< the item already exists
  unavailable,        ///< a model or backend is loading, missing or down
  timeout,            ///< the request did not complete in time
  not_implemented,    ///< a capability that this build does not provide yet
  unauthorized,       ///< no API key, or one that is not valid, on a route that needs one
  forbidden,          ///< a caller this server refuses (e.g. a browser origin not allowed by CORS)
  rate_limited,       ///< the caller is over its request rate
  method_not_allowed, ///< the path exists, not with this method
  internal,           ///< a bug or an unexpected failure of a dependency
};

class error : public std::runtime_error {
 public:
  error(errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  [[nodiscard]] errc code() const noexcept { return code_; }

 private:
  errc code_;
};

/// @brief HTTP status for an error code (400, 415, 413, 404, 409, 503, 408, 501, 401, 403, 429, 405, 500).
int http_status(errc code) noexcept;
/// @brief Process exit code for the CLI (1 internal, 2 bad parameter, 3..13 the others).
int exit_code(errc code) noexcept;
/// @brief Stable snake_case name used in JSON error bodies ("bad_parameter", ...).
std::string_view to_string(errc code) noexcept;

/// @brief Throws acg2vec::error with a fmt-formatted message.
template <class... Args>
[[noreturn]] void fail(errc code, fmt::format_string<Args...> format, Args&&... args) {
  throw error(code, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace acg2vec
