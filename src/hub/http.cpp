#include "hub/http.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <memory>
#include <mutex>

#include "core/error.h"

namespace acg2vec::hub {

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return s.substr(i);
}

struct transfer {
  http_response response;
  std::FILE* file = nullptr;       // download target; null for in-memory requests
  std::uint64_t offset = 0;        // bytes already on disk when the request was sent
  std::uint64_t written = 0;       // bytes of this response written to the file
  bool decided = false;            // whether the body of the final response was classified
  bool to_file = false;            // the body goes to the file (2xx), else to response.body
  std::uint64_t total = 0;
  const progress_fn* progress = nullptr;
  std::string failure;             // why the write callback stopped the transfer
};

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    t->response.hops.emplace_back();
    auto sp = line.find(' ');
    t->response.status = sp == std::string::npos ? 0 : std::strtol(line.c_str() + sp + 1, nullptr, 10);
    return size * n;
  }
  auto colon = line.find(':');
  if (colon != std::string::npos && !t->response.hops.empty()) {
    auto name = lower(trim(line.substr(0, colon)));
    t->response.hops.back().emplace(name, trim(line.substr(colon + 1)));
  }
  return size * n;
}

// The first body byte decides where the body goes: a 2xx into the file (from the resume offset
// for a matching 206, from 0 otherwise), anything else into memory for the error message.
bool decide(transfer* t) {
  t->decided = true;
  const long status = t->response.status;
  if (t->file == nullptr || status < 200 || status >= 300) return true;
  t->to_file = true;
  const auto& h = t->response.hops.back();
  std::uint64_t start = 0;
  if (status == 206) {
    auto it = h.find("content-range");  // "bytes START-END/TOTAL"
    if (it != h.end()) {
      auto v = it->second;
      auto sp = v.find(' ');
      start = std::strtoull(v.c_str() + (sp == std::string::npos ? 0 : sp + 1), nullptr, 10);
      auto slash = v.find('/');
      if (slash != std::string::npos) t->total = std::strtoull(v.c_str() + slash + 1, nullptr, 10);
    }
    if (start != t->offset) {
      t->failure = "the server answered a different byte range than asked";
      return false;
    }
  } else {
    auto it = h.find("content-length");
    if (it != h.end()) t->total = std::strtoull(it->second.c_str(), nullptr, 10);
    t->offset = 0;  // a full answer: start the file again
  }
  if (std::fseek(t->file, static_cast<long>(t->offset), SEEK_SET) != 0) {
    t->failure = "cannot seek in the download file";
    return false;
  }
  if (t->offset == 0 && ::ftruncate(::fileno(t->file), 0) != 0) {
    t->failure = "cannot truncate the download file";
    return false;
  }
  return true;
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  const std::size_t bytes = size * n;
  if (!t->decided && !decide(t)) return 0;
  if (!t->to_file) {
    if (t->response.body.size() < (1u << 20)) t->response.body.append(data, bytes);
    return bytes;
  }
  if (std::fwrite(data, 1, bytes, t->file) != bytes) {
    t->failure = "cannot write the download file (disk full?)";
    return 0;
  }
  t->written += bytes;
  if (t->progress != nullptr && *t->progress) (*t->progress)(t->offset + t->written, t->total);
  return bytes;
}

http_response perform(const std::string& url, const std::vector<std::string>& headers, transfer& t) {
  global_init();
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) fail(errc::internal, "cannot start libcurl");
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> list_guard(list, curl_slist_free_all);
  CURL* c = curl.get();
  const std::string agent = std::string("acg2vec/") + ACG2VEC_VERSION;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_USERAGENT, agent.c_str());
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 8L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
  // A stalled connection (under 1 byte/s for 60 s) is a failure to retry, not a hang.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  std::string range;
  if (t.file != nullptr && t.offset > 0) {
    range = std::to_string(t.offset) + "-";
    curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  }
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    t.response.error = !t.failure.empty() ? t.failure : curl_easy_strerror(rc);
  } else if (t.file != nullptr && !t.decided && t.response.status >= 200 && t.response.status < 300) {
    // An empty body: still a complete (empty) file.
    if (!decide(&t)) t.response.error = t.failure;
  }
  return t.response;
}

}  // namespace

std::string http_response::header(const std::string& lower_name) const {
  for (const auto& h : hops) {
    if (auto it = h.find(lower_name); it != h.end()) return it->second;
  }
  return {};
}

http_response http_get(const std::string& url, const std::vector<std::string>& headers) {
  transfer t;
  return perform(url, headers, t);
}

http_response http_download(const std::string& url, const std::vector<std::string>& headers,
                            const std::filesystem::path& file, const progress_fn& progress) {
  std::error_code ec;
  std::uint64_t have = std::filesystem::exists(file, ec) ? std::filesystem::file_size(file, ec) : 0;
  std::FILE* f = std::fopen(file.c_str(), have > 0 ? "r+b" : "wb");
  if (f == nullptr) fail(errc::internal, "cannot open {} for writing", file.string());
  transfer t;
  t.file = f;
  t.offset = have;
  t.progress = &progress;
  auto r = perform(url, headers, t);
  if (std::fflush(f) != 0 && r.error.empty()) r.error = "cannot write the download file (disk full?)";
  if (std::fclose(f) != 0 && r.error.empty()) r.error = "cannot write the download file (disk full?)";
  return r;
}

}  // namespace acg2vec::hub
