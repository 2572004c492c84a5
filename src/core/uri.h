#pragma once
// The addresses the command line takes for engines: scheme://[user[:password]@]host[:port][,host[:port]...]
// [/path][?key=value&...] (redis://, milvus://, faiss?..., http:// for bench), split once here.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace acg2vec {

struct uri_parts {
  std::string scheme;                                      ///< before "://" (or before "?" when no "://")
  bool has_userinfo = false;                               ///< an '@' was present
  std::string user;                                        ///< before ':' in the userinfo
  std::string password;                                    ///< after ':' (the whole userinfo when no ':')
  bool has_password_colon = false;                         ///< the userinfo had a ':'
  std::vector<std::pair<std::string, int>> hosts;          ///< comma-separated host[:port], default port filled in
  std::string path;                                        ///< after the first '/' of the authority (no leading '/')
  std::vector<std::pair<std::string, std::string>> query;  ///< key=value pairs in order ("" value when no '=')
};

/// @brief Splits `uri`. `what` names the address in errors ("redis address 'x': bad port 'y'").
/// default_port fills in hosts without a port; a port outside 1..65535 or not a number, and an
/// empty host, are errc::bad_parameter. A scheme without "://" ("faiss?kind=hnsw", "faiss") has no
/// hosts, only a query.
uri_parts parse_uri(std::string_view uri, std::string_view what, int default_port);

}  // namespace acg2vec
