#include "server/http_wire.h"

#include "core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

namespace acg2vec::server {

namespace {

// RFC 9110 token characters (method and field names).
bool is_tchar(unsigned char c) {
  return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return is_tchar(c); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Field values may hold visible characters, spaces, tabs and obs-text; any other control byte
// (NUL above all: C APIs would truncate there, so "<key>\0junk" could pass as "<key>") is refused.
bool valid_field_value(std::string_view v) {
  return std::all_of(v.begin(), v.end(), [](unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); });
}

// A target in origin form ("/path?query") or "*"; no spaces or control bytes.
bool valid_target(std::string_view t) {
  if (t.empty()) return false;
  if (t != "*" && t.front() != '/') return false;
  return std::all_of(t.begin(), t.end(), [](unsigned char c) { return c > 0x20 && c != 0x7f; });
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = trim(list.substr(0, comma));
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// The end of the head: the first empty line (CRLF or bare LF line endings) at or after from.
// Returns the offset just past it, or npos.
std::size_t find_head_end(std::string_view buf, std::size_t from) {
  for (std::size_t i = buf.find('\n', from); i != std::string_view::npos; i = buf.find('\n', i + 1)) {
    if (i + 1 < buf.size() && buf[i + 1] == '\n') return i + 2;
    if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

std::string_view request_head::get(std::string_view name) const {
  for (const auto& h : headers) {
    if (iequals(h.name, name)) return h.value;
  }
  return {};
}

std::string percent_decode_path(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hex(s[i + 1]);
      int lo = hex(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string request_head::path() const {
  std::string_view t = target;
  auto q = t.find('?');
  return percent_decode_path(t.substr(0, q));
}

parse_state parse_head(std::string_view buf, const limits& lim, request_head& out, refusal& why,
                       std::size_t* scan_from) {
  auto refuse = [&why](int status, std::string message) {
    why = refusal{status, std::move(message)};
    return parse_state::refused;
  };
  // Empty lines before the request line are tolerated (RFC 9112 §2.2), a few of them.
  std::size_t start = 0;
  while (start < buf.size() && start < 8 && (buf[start] == '\r' || buf[start] == '\n')) ++start;

  std::size_t from = scan_from ? std::max(*scan_from, start) : start;
  std::size_t end = find_head_end(buf, from > 2 ? from - 2 : 0);
  if (end == std::string_view::npos) {
    if (scan_from) *scan_from = buf.size();
    auto first_nl = buf.find('\n', start);
    std::size_t line_len = (first_nl == std::string_view::npos ? buf.size() : first_nl) - start;
    if (line_len > lim.max_request_line) {
      return refuse(414, fmt::format("request line is longer than {} bytes", lim.max_request_line));
    }
    if (buf.size() > lim.max_header_bytes) {
      return refuse(431, fmt::format("request head is larger than {} bytes", lim.max_header_bytes));
    }
    return parse_state::incomplete;
  }
  if (end > lim.max_header_bytes + start) {
    return refuse(431, fmt::format("request head is larger than {} bytes", lim.max_header_bytes));
  }

  out = request_head{};
  out.head_bytes = end;
  std::string_view head = buf.substr(start, end - start);
  auto next_line = [&head]() {
    auto nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    head.remove_prefix(nl == std::string_view::npos ? head.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
  };

  std::string_view line = next_line();
  if (line.size() > lim.max_request_line) {
    return refuse(414, fmt::format("request line is longer than {} bytes", lim.max_request_line));
  }
  if (line.find('\r') != std::string_view::npos) return refuse(400, "stray carriage return in the request line");
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return refuse(400, "malformed request line; expected 'METHOD /path HTTP/1.1'");
  }
  auto method = line.substr(0, sp1);
  auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  auto version = line.substr(sp2 + 1);
  if (!is_token(method)) return refuse(400, "malformed request method");
  if (!valid_target(target)) return refuse(400, "malformed request target");
  if (version == "HTTP/1.1") {
    out.minor_version = 1;
  } else if (version == "HTTP/1.0") {
    out.minor_version = 0;
  } else if (version.substr(0, 5) == "HTTP/") {
    return refuse(505, fmt::format("HTTP version '{}' is not supported; use HTTP/1.1",
                                   std::string(version.substr(0, 16))));
  } else {
    return refuse(400, "malformed request line; expected 'METHOD /path HTTP/1.1'");
  }
  out.method = std::string(method);
  out.target = std::string(target);

  bool saw_close = false;
  bool saw_keep_alive = false;
  for (line = next_line(); !line.empty(); line = next_line()) {
    if (line.front() == ' ' || line.front() == '\t') return refuse(400, "folded header lines are not accepted");
    if (out.headers.size() >= lim.max_headers) {
      return refuse(431, fmt::format("more than {} header fields", lim.max_headers));
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return refuse(400, "header field without ':'");
    auto name = line.substr(0, colon);
    if (!is_token(name)) return refuse(400, "malformed header field name");
    auto value = trim(line.substr(colon + 1));
    if (!valid_field_value(value)) {
      return refuse(400, fmt::format("header field '{}' holds a control character", std::string(name.substr(0, 64))));
    }
    if (iequals(name, "Content-Length")) {
      if (value.empty() || value.size() > 19 ||
          !std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isdigit(c); })) {
        return refuse(400, "Content-Length must be a non-negative decimal integer");
      }
      std::uint64_t n = std::stoull(std::string(value));
      if (out.content_length && *out.content_length != n) return refuse(400, "conflicting Content-Length fields");
      out.content_length = n;
    } else if (iequals(name, "Transfer-Encoding")) {
      if (!iequals(value, "chunked")) {
        return refuse(501, "only 'Transfer-Encoding: chunked' is supported");
      }
      if (out.chunked) return refuse(400, "repeated Transfer-Encoding field");
      out.chunked = true;
    } else if (iequals(name, "Expect")) {
      if (!iequals(value, "100-continue")) return refuse(417, "only 'Expect: 100-continue' is supported");
      out.expect_continue = true;
    } else if (iequals(name, "Connection")) {
      saw_close = saw_close || has_token(value, "close");
      saw_keep_alive = saw_keep_alive || has_token(value, "keep-alive");
    }
    out.headers.push_back(header_field{std::string(name), std::string(value)});
  }
  // A body framed two ways is the classic request-smuggling shape; refuse it outright.
  if (out.chunked && out.content_length) return refuse(400, "both Content-Length and Transfer-Encoding were sent");
  if (out.chunked && out.minor_version == 0) return refuse(400, "chunked bodies need HTTP/1.1");
  if (out.content_length && *out.content_length > lim.max_body_bytes) {
    return refuse(413, fmt::format("request body of {} bytes is larger than the limit of {} bytes",
                                   *out.content_length, lim.max_body_bytes));
  }
  out.keep_alive = out.minor_version == 1 ? !saw_close : (saw_keep_alive && !saw_close);
  return parse_state::complete;
}

bool chunked_decoder::refuse(int status, std::string message) {
  state_ = parse_state::refused;
  why_ = refusal{status, std::move(message)};
  return false;
}

std::size_t chunked_decoder::feed(std::string_view in, std::string& body) {
  std::size_t used = 0;
  // Size lines and trailers are read a line at a time into line_, bounded like header lines.
  auto take_line = [&](std::string_view& line) -> bool {
    while (used < in.size()) {
      char c = in[used++];
      if (c == '\n') {
        if (!line_.empty() && line_.back() == '\r') line_.pop_back();
        line = line_;
        return true;
      }
      line_.push_back(c);
      if (line_.size() > limits_.max_request_line) {
        return refuse(400, fmt::format("chunk line longer than {} bytes", limits_.max_request_line));
      }
    }
    return false;
  };
  while (state_ == parse_state::incomplete && used < in.size()) {
    switch (step_) {
      case step::size_line: {
        std::string_view line;
        if (!take_line(line)) return used;
        auto semi = line.find(';');  // chunk extensions are allowed and ignored
        auto hex = trim(line.substr(0, semi));
        if (hex.empty() || hex.size() > 15 ||
            !std::all_of(hex.begin(), hex.end(), [](unsigned char c) { return std::isxdigit(c); })) {
          refuse(400, "malformed chunk size");
          return used;
        }
        remaining_ = std::stoull(std::string(hex), nullptr, 16);
        line_.clear();
        if (body.size() + remaining_ > limits_.max_body_bytes) {
          refuse(413, fmt::format("chunked request body is larger than the limit of {} bytes", limits_.max_body_bytes));
          return used;
        }
        step_ = remaining_ == 0 ? step::trailers : step::data;
        break;
      }
      case step::data: {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size() - used));
        body.append(in.substr(used, n));
        used += n;
        remaining_ -= n;
        if (remaining_ == 0) step_ = step::data_end;
        break;
      }
      case step::data_end: {
        std::string_view line;
        if (!take_line(line)) return used;
        if (!line.empty()) {
          refuse(400, "chunk data is longer than its size");
          return used;
        }
        line_.clear();
        step_ = step::size_line;
        break;
      }
      case step::trailers: {
        std::string_view line;
        if (!take_line(line)) return used;
        bool empty = line.empty();
        trailer_bytes_ += line.size() + 2;
        line_.clear();
        if (empty) {
          step_ = step::done;
          state_ = parse_state::complete;
          break;
        }
        if (++trailer_count_ > limits_.max_headers || trailer_bytes_ > limits_.max_header_bytes) {
          refuse(431, "chunked trailer fields are over the header limits");
          return used;
        }
        break;
      }
      case step::done: return used;
    }
  }
  return used;
}

std::string rebuild_request(const request_head& head, std::string_view body) {
  std::string out;
  out.reserve(head.head_bytes + body.size() + 32);
  out += head.method;
  out += ' ';
  out += head.target;
  out += head.minor_version == 1 ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n";
  for (const auto& h : head.headers) {
    if (iequals(h.name, "Transfer-Encoding") || iequals(h.name, "Content-Length") || iequals(h.name, "Expect")) {
      continue;
    }
    if (iequals(h.name, "Range") && h.value.find(',') != std::string::npos) continue;
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  if (!body.empty() || head.content_length || head.chunked) {
    out += fmt::format("Content-Length: {}\r\n", body.size());
  }
  out += "\r\n";
  out += body;
  return out;
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string refusal_response(const refusal& why, std::string_view request_id) {
  errc kind = errc::bad_parameter;
  switch (why.status) {
    case 401: kind = errc::unauthorized; break;
    case 408: kind = errc::timeout; break;
    case 413:
    case 414:
    case 431: kind = errc::too_large; break;
    case 429: kind = errc::rate_limited; break;
    case 501:
    case 505: kind = errc::not_implemented; break;
    case 503: kind = errc::unavailable; break;
    default: break;
  }
  nlohmann::json body{{"message", why.message}, {"error", to_string(kind)}};
  std::string text = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n"
      "X-Request-Id: {}\r\n{}\r\n{}",
      why.status, reason_phrase(why.status), text.size(), request_id, why.extra_headers, text);
}

}  // namespace acg2vec::server