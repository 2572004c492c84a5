#include "core/uri.h"

#include "core/error.h"

#include <charconv>

namespace acg2vec {

namespace {

void parse_query(std::string_view query, uri_parts& out) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    out.query.emplace_back(std::string(pair.substr(0, eq)),
                           eq == std::string_view::npos ? std::string() : std::string(pair.substr(eq + 1)));
  }
}

}  // namespace

uri_parts parse_uri(std::string_view uri, std::string_view what, int default_port) {
  uri_parts out;
  std::string_view rest = uri;
  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  parse_query(query, out);
  const auto scheme_end = rest.find("://");
  if (scheme_end == std::string_view::npos) {
    out.scheme = std::string(rest);
    return out;
  }
  out.scheme = std::string(rest.substr(0, scheme_end));
  rest = rest.substr(scheme_end + 3);
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    out.path = std::string(rest.substr(slash + 1));
    rest = rest.substr(0, slash);
  }
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const auto credentials = rest.substr(0, at);
    rest = rest.substr(at + 1);
    out.has_userinfo = true;
    if (const auto colon = credentials.find(':'); colon != std::string_view::npos) {
      out.has_password_colon = true;
      out.user = std::string(credentials.substr(0, colon));
      out.password = std::string(credentials.substr(colon + 1));
    } else {
      out.password = std::string(credentials);
    }
  }
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const auto hostport = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const auto colon = hostport.rfind(':');
    std::string host(hostport.substr(0, colon));
    int port = default_port;
    if (colon != std::string_view::npos) {
      const auto p = hostport.substr(colon + 1);
      const auto r = std::from_chars(p.data(), p.data() + p.size(), port);
      if (r.ec != std::errc() || r.ptr != p.data() + p.size() || port <= 0 || port > 65535)
        fail(errc::bad_parameter, "{} address '{}': bad port '{}'", what, uri, p);
    }
    if (host.empty()) fail(errc::bad_parameter, "{} address '{}' has an empty host", what, uri);
    out.hosts.emplace_back(std::move(host), port);
  }
  return out;
}

}  // namespace acg2vec
