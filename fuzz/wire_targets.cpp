// Fuzz targets for what the server reads before any handler: connection bytes (heads, chunked
// bodies), the JSON form fields of the write routes, and API key files.
#include <string>

#include "core/error.h"
#include "core/json_guard.h"
#include "fuzz_util.h"
#include "server/access.h"
#include <nlohmann/json.hpp>
#include "server/http_wire.h"
#include "targets.h"

namespace acg2vec::fuzz {

int fuzz_http_wire(const std::uint8_t* data, std::size_t size) {
  std::string_view in = as_text(data, size);
  server::limits lim;
  lim.max_header_bytes = 4096;
  lim.max_headers = 32;
  lim.max_request_line = 1024;
  lim.max_body_bytes = 1u << 16;
  // The first byte splits the input into the pieces a socket would deliver, so that resuming a
  // head scan (scan_from) and a chunked decode across reads is exercised too.
  std::size_t piece = size ? 1 + data[0] % 61 : 1;
  std::string buf;
  std::size_t scan = 0;
  server::request_head head;
  server::refusal why;
  std::size_t pos = 0;
  while (pos < in.size()) {
    buf.append(in.substr(pos, piece));
    pos += piece;
    auto st = server::parse_head(buf, lim, head, why, &scan);
    if (st == server::parse_state::refused) {
      if (why.status < 400 || why.status > 505 || why.message.empty()) std::abort();
      (void)server::refusal_response(why, "fuzz");
      return 0;
    }
    if (st == server::parse_state::complete) break;
  }
  if (head.method.empty()) return 0;
  if (head.head_bytes > buf.size() || head.head_bytes > lim.max_header_bytes + 8) std::abort();
  if (head.content_length && *head.content_length > lim.max_body_bytes) std::abort();
  (void)head.path();
  std::string body;
  std::string rest = buf.substr(head.head_bytes) + std::string(in.substr(std::min(pos, in.size())));
  if (head.chunked) {
    server::chunked_decoder dec(lim);
    for (std::size_t i = 0; i < rest.size() && dec.state() == server::parse_state::incomplete; i += piece) {
      dec.feed(std::string_view(rest).substr(i, piece), body);
      if (body.size() > lim.max_body_bytes) std::abort();
    }
  } else {
    body = rest.substr(0, static_cast<std::size_t>(std::min<std::uint64_t>(head.content_length.value_or(0), rest.size())));
  }
  auto raw = server::rebuild_request(head, body);
  // What the handler layer receives must itself parse as one complete request.
  server::request_head again;
  if (server::parse_head(raw, server::limits{}, again, why) != server::parse_state::complete) std::abort();
  if (again.content_length.value_or(0) != body.size() && !(body.empty() && !again.content_length)) std::abort();
  return 0;
}

int fuzz_multipart_fields(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  // The write routes' metadata/extend fields go through exactly this guard
  // (parse_metadata_param in server/request_parsing.cpp), then are stored and answered.
  try {
    auto j = parse_json_guarded(as_text(data, size), "'metadata'");
    (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    auto again = parse_json_guarded(j.dump(), "'metadata'");  // what is stored must read back
    if (again != j) std::abort();
  } catch (const error&) {
  }
  return 0;
}

int fuzz_key_file(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  std::string_view text = as_text(data, size);
  try {
    auto keys = server::parse_key_file(text, "fuzz");
    server::key_set set(keys);
    // Every key that loads must authenticate. A lookup compares against every key in constant
    // time, so checking all of a file of thousands of keys is quadratic; the first 32 are enough.
    for (std::size_t i = 0; i < keys.size() && i < 32; ++i) {
      const auto& k = keys[i];
      if (!set.find(k)) std::abort();
      auto presented = server::presented_key("Bearer " + k, "");
      if (!presented || *presented != k) std::abort();
    }
    // A presented key with bytes after a NUL never matches a loaded key.
    if (!keys.empty()) {
      std::string spoof = keys.front();
      spoof.push_back('\0');
      spoof += "junk";
      if (set.find(spoof)) std::abort();
    }
  } catch (const error&) {
  }
  (void)server::presented_key(text, text);
  return 0;
}

}  // namespace acg2vec::fuzz
