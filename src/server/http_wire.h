#pragma once
// Request framing done by the server itself, before any handler or library parser sees a byte:
// the head (request line and header fields) and the body (Content-Length or chunked), each
// refused as soon as it passes a limit rather than after it has been read whole. Pure functions
// over byte strings, so the unit tests and the fuzz target drive them without sockets; the
// connection loop (server/connection_loop.h) feeds them what arrives from a socket.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace acg2vec::server {

/// Bounds on what a client may send; each one is a serve flag (see README, RELIABILITY.md).
struct limits {
  std::size_t max_request_line = 8u << 10;  ///< method, target and version
  std::size_t max_header_bytes = 64u << 10; ///< request line and all header fields together
  std::size_t max_headers = 100;            ///< header fields (trailers of a chunked body included)
  std::size_t max_body_bytes = 100u << 20;  ///< decoded body
};

/// A refusal: the status and one readable line.
struct refusal {
  refusal() = default;
  refusal(int status_code, std::string text, std::string extra = {})
      : status(status_code), message(std::move(text)), extra_headers(std::move(extra)) {}
  int status = 400;
  std::string message;
  std::string extra_headers;  ///< complete "Name: value\r\n" lines (Retry-After, WWW-Authenticate)
};

struct header_field {
  std::string name;  ///< as sent
  std::string value; ///< surrounding whitespace removed
};

struct request_head {
  std::string method;
  std::string target;  ///< as sent (origin form or "*")
  int minor_version = 1;  ///< HTTP/1.<minor>
  std::vector<header_field> headers;
  std::size_t head_bytes = 0;  ///< bytes of the buffer the head took, its empty line included
  std::optional<std::uint64_t> content_length;
  bool chunked = false;
  bool expect_continue = false;
  bool keep_alive = true;  ///< what the client asked for (1.1 unless "close"; 1.0 only with "keep-alive")

  /// @brief The first field of that name (ASCII case-insensitive), or empty.
  [[nodiscard]] std::string_view get(std::string_view name) const;
  /// @brief The target's path, percent-decoded, without the query.
  [[nodiscard]] std::string path() const;
  /// @brief Whether a body follows the head.
  [[nodiscard]] bool has_body() const noexcept { return chunked || content_length.value_or(0) > 0; }
};

enum class parse_state { incomplete, complete, refused };

/// @brief Reads a request head from the start of buf. incomplete while its empty line has not
/// arrived and the bytes so far are within the limits; refused (with why) as soon as they are not.
/// scan_from lets a caller that re-parses a growing buffer skip what it already searched.
parse_state parse_head(std::string_view buf, const limits& lim, request_head& out, refusal& why,
                       std::size_t* scan_from = nullptr);

/// Decodes a chunked body as it arrives, keeping the decoded bytes under max_body_bytes and the
/// chunk-size lines, extensions and trailers under the header limits.
class chunked_decoder {
 public:
  explicit chunked_decoder(const limits& lim) : limits_(lim) {}
  /// @brief Consumes bytes from in (returns how many), appending decoded data to body.
  /// state() says whether the body is complete or was refused.
  std::size_t feed(std::string_view in, std::string& body);
  [[nodiscard]] parse_state state() const noexcept { return state_; }
  [[nodiscard]] const refusal& why() const noexcept { return why_; }

 private:
  enum class step { size_line, data, data_end, trailers, done };
  bool refuse(int status, std::string message);

  limits limits_;
  step step_ = step::size_line;
  parse_state state_ = parse_state::incomplete;
  refusal why_;
  std::string line_;
  std::uint64_t remaining_ = 0;
  std::size_t trailer_bytes_ = 0;
  std::size_t trailer_count_ = 0;
};

/// @brief The request as the handler layer reads it: the head without Transfer-Encoding,
/// Content-Length and Expect, a Content-Length for the (decoded) body, and a Range that asks
/// for more than one range dropped (the whole resource is cheaper than many overlapping parts).
std::string rebuild_request(const request_head& head, std::string_view body);

/// @brief A complete response that closes the connection: JSON {"message", "error"} body.
std::string refusal_response(const refusal& why, std::string_view request_id);

/// @brief The reason phrase of a status code ("Not Found"), or "Unknown".
std::string_view reason_phrase(int status) noexcept;

/// @brief Percent-decodes a path ('+' stays '+'); malformed escapes are kept as they are.
std::string percent_decode_path(std::string_view s);

/// @brief Case-insensitive ASCII equality.
bool iequals(std::string_view a, std::string_view b) noexcept;

}  // namespace acg2vec::server