#pragma once
// A small libcurl client for models pull: JSON API calls and resumable file downloads.
// Redirects are followed (the Hub answers /resolve/ with a 302 to its CDN); curl drops the
// Authorization header when a redirect leaves the host, so a token never reaches the CDN.
// The standard proxy variables (https_proxy, HTTPS_PROXY, http_proxy, no_proxy, ALL_PROXY) are
// honoured by libcurl itself.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace acg2vec::hub {

/// Headers of one HTTP response, names in lower case.
using header_map = std::map<std::string, std::string>;

struct http_response {
  long status = 0;                 ///< of the last response (after redirects)
  std::vector<header_map> hops;    ///< headers of every response, the first request's first
  std::string body;                ///< small bodies only (API answers, error bodies)
  std::string error;               ///< transport failure (curl's message); empty when a response came
  bool transport_failed() const { return !error.empty(); }
  /// @brief The first value of a header over all hops (e.g. X-Repo-Commit from the 302).
  std::string header(const std::string& lower_name) const;
};

/// @brief GET url with extra headers ("Name: value"); the body is kept in memory.
http_response http_get(const std::string& url, const std::vector<std::string>& headers);

/// Called with (bytes of this file on disk, expected total or 0).
using progress_fn = std::function<void(std::uint64_t, std::uint64_t)>;

/// @brief Downloads url into file, resuming from the file's current size with a Range request.
/// A 206 whose Content-Range starts elsewhere or a 200 restarts the file from byte 0. On a
/// non-2xx answer the file is left as it was and the body is returned.
http_response http_download(const std::string& url, const std::vector<std::string>& headers,
                            const std::filesystem::path& file, const progress_fn& progress);

}  // namespace acg2vec::hub
