// One file because a pull is one transaction: resolving a revision, the resumable, verified
// downloads into the Hub-layout cache, archive extraction and the atomic install share its state.
#include "hub/hub.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>

#include "core/hash.h"
#include "core/error.h"
#include "core/progress.h"
#include "hub/http.h"
#include "models/layouts.h"

namespace acg2vec::hub {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

bool truthy(std::string v) {
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return v == "1" || v == "ON" || v == "YES" || v == "TRUE";
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) fail(errc::unavailable, "cannot write {} (disk full?)", p.string());
}

bool is_hex(const std::string& s, std::size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

std::string strip_etag(std::string e) {
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

std::string url_escape_path(const std::string& path) {
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::string mib(std::uint64_t bytes) { return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6); }

// A byte-count progress line: bar, MB done/total, rate and ETA (plain lines when not a TTY).
class byte_progress {
 public:
  byte_progress(std::string label, std::uint64_t total, bool quiet)
      : label_(std::move(label)), total_(total), quiet_(quiet), tty_(::isatty(2) == 1),
        start_(std::chrono::steady_clock::now()), last_(start_) {}
  void update(std::uint64_t done, std::uint64_t resumed_from) {
    done_ = done;
    if (first_) {
      first_ = false;
      base_ = resumed_from;
    }
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < (tty_ ? std::chrono::milliseconds(200) : std::chrono::milliseconds(5000))) return;
    last_ = now;
    draw(false);
  }
  void finish() { draw(true); }

 private:
  void draw(bool final_line) {
    if (quiet_) return;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(done_ - std::min(done_, base_)) / elapsed : 0;
    std::string eta;
    if (total_ > done_ && rate > 0) eta = fmt::format(" ETA {}", format_duration(static_cast<double>(total_ - done_) / rate));
    std::string bar;
    if (total_ > 0) {
      constexpr int width = 24;
      const int filled = std::clamp(
          static_cast<int>(width * std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_))), 0, width);
      bar = fmt::format("[{:#<{}}{:.<{}}] ", "", filled, "", width - filled);
    }
    const std::string text = fmt::format("{} {}{} / {} {:.1f} MB/s{}", label_, bar, mib(done_), mib(total_), rate / 1e6, eta);
    if (tty_) {
      fmt::print(stderr, "\r\033[2K{}{}", text, final_line ? "\n" : "");
    } else {
      fmt::print(stderr, "{}{}\n", text, final_line ? " (done)" : "");
    }
    std::fflush(stderr);
  }
  std::string label_;
  std::uint64_t total_;
  bool quiet_;
  bool tty_;
  bool first_ = true;
  std::uint64_t base_ = 0;
  std::uint64_t done_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
};

std::vector<std::string> auth_headers(const settings& s) {
  if (s.token.empty()) return {};
  return {"Authorization: Bearer " + s.token};
}

// Turns a Hub error answer into one readable line: what to fix, not just the status.
[[noreturn]] void hub_failure(const http_response& r, const settings& s, const std::string& repo, const std::string& rev,
                              const std::string& what) {
  if (r.transport_failed()) {
    fail(errc::unavailable, "cannot reach {} ({}); set HF_HUB_OFFLINE=1 to install from the local Hub cache only",
         s.endpoint, r.error);
  }
  const std::string code = r.header("x-error-code");
  const std::string message = r.header("x-error-message");
  if (r.status == 401 || r.status == 403 || code == "GatedRepo") {
    fail(errc::unavailable,
         "{} refused access to {} (HTTP {}{}): set HF_TOKEN to an access token (https://huggingface.co/settings/tokens) "
         "of an account that has accepted the model's licence at {}/{}",
         s.endpoint, repo, r.status, message.empty() ? "" : ": " + message, s.endpoint, repo);
  }
  if (r.status == 404) {
    if (code == "RevisionNotFound") fail(errc::not_found, "revision '{}' of {} does not exist on {}", rev, repo, s.endpoint);
    if (code == "EntryNotFound") fail(errc::not_found, "{} does not exist in {}@{}", what, repo, rev);
    fail(errc::not_found, "repository {} does not exist on {} ({}); check the name", repo, s.endpoint,
         code.empty() ? "HTTP 404" : code);
  }
  fail(errc::unavailable, "{} answered HTTP {} for {}{}", s.endpoint, r.status, what, message.empty() ? "" : ": " + message);
}

struct wanted_file {
  std::string path;        ///< in the repo
  std::string rel;         ///< in the pack (path without the subdir)
  std::uint64_t size = 0;
  std::string sha256;      ///< LFS files
  std::string etag;        ///< blob name in the cache: sha256 for LFS files, the git blob id otherwise
  fs::path local;          ///< the verified file once fetched
};

fs::path repo_cache_dir(const settings& s, const std::string& repo) {
  std::string folder = "models--" + repo;
  for (std::size_t i = 0; (i = folder.find('/', i)) != std::string::npos;) folder.replace(i, 1, "--");
  return s.cache_dir / folder;
}

// Downloads url into target (through target.incomplete, resumed across cuts), checking size and sha256.
void fetch_verified(const std::string& url, const std::vector<std::string>& headers, const fs::path& target,
                    std::uint64_t size, const std::string& sha256, const std::string& label, const settings& s,
                    const std::string& repo, const std::string& rev, bool quiet, std::uint64_t& downloaded) {
  fs::create_directories(target.parent_path());
  const fs::path partial = target.string() + ".incomplete";
  std::error_code ec;
  const std::uint64_t before = fs::exists(partial, ec) ? fs::file_size(partial, ec) : 0;
  if (before > 0 && !quiet) fmt::print(stderr, "{}: resuming at {}\n", label, mib(before));
  byte_progress bar(label, size, quiet);
  constexpr int attempts = 6;
  for (int attempt = 1;; ++attempt) {
    std::uint64_t at_start = fs::exists(partial, ec) ? fs::file_size(partial, ec) : 0;
    auto r = http_download(url, headers, partial, [&](std::uint64_t done, std::uint64_t total) {
      if (size == 0 && total > 0) size = total;
      bar.update(done, at_start);
    });
    if (!r.transport_failed() && r.status >= 200 && r.status < 300) {
      // The Hub names the LFS object it redirected to; it must be the one the revision listed.
      const std::string linked = strip_etag(r.header("x-linked-etag"));
      if (!sha256.empty() && !linked.empty() && linked != sha256) {
        fail(errc::unavailable, "{}: the Hub served object {} but the revision lists {}; nothing was installed", label,
             linked, sha256);
      }
      break;
    }
    // 416: the earlier run had fetched every byte but stopped before verifying; verify now.
    if (!r.transport_failed() && r.status == 416 && size > 0 && fs::file_size(partial, ec) == size) break;
    if (!r.transport_failed()) hub_failure(r, s, repo, rev, label);
    if (r.error.find("disk full") != std::string::npos) {
      fail(errc::unavailable, "{}: {} — nothing was installed", label, r.error);
    }
    const std::uint64_t now = fs::exists(partial, ec) ? fs::file_size(partial, ec) : 0;
    if (attempt >= attempts) {
      fail(errc::unavailable, "{}: the download failed {} times ({}); run the same command again to resume at {}", label,
           attempts, r.error, mib(now));
    }
    if (!quiet) fmt::print(stderr, "\n{}: connection lost at {} ({}); resuming\n", label, mib(now), r.error);
    std::this_thread::sleep_for(std::chrono::milliseconds(250 * attempt));
  }
  bar.finish();
  const std::uint64_t got = fs::file_size(partial);
  downloaded += got - std::min(got, before);
  if (size > 0 && got != size) {
    fs::remove(partial, ec);
    fail(errc::unavailable, "{}: size mismatch: expected {} bytes, got {}; the download was discarded and nothing installed",
         label, size, got);
  }
  if (!sha256.empty()) {
    const std::string actual = sha256_file(partial);
    if (actual != sha256) {
      fs::remove(partial, ec);
      fail(errc::unavailable,
           "{}: sha256 mismatch: expected {}, got {}; the download was discarded and nothing installed", label, sha256, actual);
    }
  }
  fs::rename(partial, target);
}

bool cached_ok(const fs::path& p, const wanted_file& f) {
  std::error_code ec;
  if (!fs::exists(p, ec) || fs::file_size(p, ec) != f.size) return false;
  return f.sha256.empty() || sha256_file(p) == f.sha256;
}

// snapshots/<commit>/<path> → ../../blobs/<etag> (one more ../ per folder in path), as the Hub cache has it.
void link_snapshot(const fs::path& repo_dir, const std::string& commit, const wanted_file& f) {
  const fs::path snap = repo_dir / "snapshots" / commit / f.path;
  fs::create_directories(snap.parent_path());
  std::error_code ec;
  fs::remove(snap, ec);
  std::string up = "../../";
  for (char c : f.path) {
    if (c == '/') up += "../";
  }
  fs::create_symlink(fs::path(up) / "blobs" / f.etag, snap, ec);
  if (ec) fs::copy_file(repo_dir / "blobs" / f.etag, snap, fs::copy_options::overwrite_existing);
}

void place(const fs::path& from, const fs::path& to) {
  fs::create_directories(to.parent_path());
  std::error_code ec;
  fs::create_hard_link(fs::canonical(from), to, ec);  // same filesystem: no second copy
  if (ec) fs::copy_file(fs::canonical(from), to, fs::copy_options::overwrite_existing);
}

// ---- zip (GitHub release archives): stored and deflated entries, no zip64 ----

std::uint32_t le32(const unsigned char* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<std::uint32_t>(p[3]) << 24); }
std::uint16_t le16(const unsigned char* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }

void extract_zip(const fs::path& zip, const fs::path& out) {
  std::ifstream in(zip, std::ios::binary);
  const auto total = fs::file_size(zip);
  const std::uint64_t tail = std::min<std::uint64_t>(total, 65557);
  std::vector<unsigned char> end(tail);
  in.seekg(static_cast<std::streamoff>(total - tail));
  in.read(reinterpret_cast<char*>(end.data()), static_cast<std::streamsize>(tail));
  std::size_t eocd = std::string::npos;
  for (std::size_t i = tail >= 22 ? tail - 22 : 0; i != std::string::npos; --i) {
    if (le32(&end[i]) == 0x06054b50) {
      eocd = i;
      break;
    }
    if (i == 0) break;
  }
  if (eocd == std::string::npos) fail(errc::unsupported_media, "{} is not a zip archive", zip.string());
  const std::uint32_t count = le16(&end[eocd + 10]);
  const std::uint32_t cd_size = le32(&end[eocd + 12]);
  const std::uint32_t cd_offset = le32(&end[eocd + 16]);
  std::vector<unsigned char> cd(cd_size);
  in.seekg(cd_offset);
  in.read(reinterpret_cast<char*>(cd.data()), cd_size);
  struct entry {
    std::string name;
    std::uint16_t method;
    std::uint32_t crc, csize, usize, local;
  };
  std::vector<entry> entries;
  for (std::size_t p = 0, i = 0; i < count; ++i) {
    if (p + 46 > cd.size() || le32(&cd[p]) != 0x02014b50) fail(errc::unsupported_media, "{}: broken zip directory", zip.string());
    entry e{std::string(reinterpret_cast<char*>(&cd[p + 46]), le16(&cd[p + 28])), le16(&cd[p + 10]), le32(&cd[p + 16]),
            le32(&cd[p + 20]), le32(&cd[p + 24]), le32(&cd[p + 42])};
    if (e.csize == 0xFFFFFFFFu || e.usize == 0xFFFFFFFFu || e.local == 0xFFFFFFFFu) {
      fail(errc::unsupported_media, "{}: zip64 archives are not supported", zip.string());
    }
    if (e.name.find("..") != std::string::npos || (!e.name.empty() && e.name[0] == '/')) {
      fail(errc::unsupported_media, "{}: unsafe path '{}' in the archive", zip.string(), e.name);
    }
    p += 46 + le16(&cd[p + 28]) + le16(&cd[p + 30]) + le16(&cd[p + 32]);
    entries.push_back(std::move(e));
  }
  // An archive whose every entry sits in one top folder is installed without that folder.
  std::string prefix;
  if (!entries.empty() && entries[0].name.find('/') != std::string::npos) {
    prefix = entries[0].name.substr(0, entries[0].name.find('/') + 1);
    for (const auto& e : entries) {
      if (e.name.rfind(prefix, 0) != 0) prefix.clear();
    }
  }
  for (const auto& e : entries) {
    const std::string rel = e.name.substr(prefix.size());
    if (rel.empty() || rel.back() == '/') continue;
    unsigned char lh[30];
    in.seekg(e.local);
    in.read(reinterpret_cast<char*>(lh), 30);
    if (le32(lh) != 0x04034b50) fail(errc::unsupported_media, "{}: broken zip entry {}", zip.string(), e.name);
    in.seekg(e.local + 30 + le16(lh + 26) + le16(lh + 28));
    const fs::path target = out / rel;
    fs::create_directories(target.parent_path());
    std::ofstream o(target, std::ios::binary | std::ios::trunc);
    uLong crc = crc32(0, nullptr, 0);
    std::vector<unsigned char> ibuf(1 << 16), obuf(1 << 16);
    std::uint64_t left = e.csize;
    if (e.method == 0) {
      while (left > 0) {
        auto n = static_cast<std::streamsize>(std::min<std::uint64_t>(left, ibuf.size()));
        in.read(reinterpret_cast<char*>(ibuf.data()), n);
        crc = crc32(crc, ibuf.data(), static_cast<uInt>(n));
        o.write(reinterpret_cast<char*>(ibuf.data()), n);
        left -= static_cast<std::uint64_t>(n);
      }
    } else if (e.method == 8) {
      z_stream z{};
      if (inflateInit2(&z, -MAX_WBITS) != Z_OK) fail(errc::internal, "zlib inflateInit2 failed");
      std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, inflateEnd);
      int rc = Z_OK;
      while (rc != Z_STREAM_END) {
        if (z.avail_in == 0) {
          if (left == 0) fail(errc::unsupported_media, "{}: truncated entry {}", zip.string(), e.name);
          auto n = static_cast<std::streamsize>(std::min<std::uint64_t>(left, ibuf.size()));
          in.read(reinterpret_cast<char*>(ibuf.data()), n);
          left -= static_cast<std::uint64_t>(n);
          z.next_in = ibuf.data();
          z.avail_in = static_cast<uInt>(n);
        }
        z.next_out = obuf.data();
        z.avail_out = static_cast<uInt>(obuf.size());
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) fail(errc::unsupported_media, "{}: corrupt entry {}", zip.string(), e.name);
        const auto n = obuf.size() - z.avail_out;
        crc = crc32(crc, obuf.data(), static_cast<uInt>(n));
        o.write(reinterpret_cast<char*>(obuf.data()), static_cast<std::streamsize>(n));
      }
    } else {
      fail(errc::unsupported_media, "{}: entry {} uses zip method {} (only stored and deflate)", zip.string(), e.name, e.method);
    }
    o.flush();
    if (!o) fail(errc::unavailable, "cannot write {} (disk full?)", target.string());
    if (crc != e.crc) fail(errc::unsupported_media, "{}: CRC mismatch in {}", zip.string(), e.name);
  }
}

// Assembles the pack in a hidden folder, checks that it reads as a pack, then swaps it in.
fs::path install(const fs::path& models_dir, const std::string& name, const std::vector<wanted_file>& files,
                 const json& manifest, const json& record, const fs::path& extract_zip_from,
                 const std::map<std::string, std::string>& verify) {
  fs::create_directories(models_dir);
  const fs::path tmp = models_dir / fmt::format(".pull-{}-{}", name, ::getpid());
  const fs::path final_dir = models_dir / name;
  std::error_code ec;
  fs::remove_all(tmp, ec);
  try {
    fs::create_directories(tmp);
    for (const auto& f : files) place(f.local, tmp / f.rel);
    if (!extract_zip_from.empty()) extract_zip(extract_zip_from, tmp);
    for (const auto& [rel, sha] : verify) {
      if (!fs::exists(tmp / rel)) fail(errc::not_found, "'{}': the download has no {}", name, rel);
      if (const auto got = sha256_file(tmp / rel); got != sha) {
        fail(errc::unavailable, "{}: sha256 mismatch: expected {}, got {}; nothing was installed", rel, sha, got);
      }
    }
    if (!manifest.is_null()) write_text(tmp / "manifest.json", manifest.dump(2) + "\n");
    write_text(tmp / ".acg2vec-pull.json", record.dump(2) + "\n");
    try {
      (void)models::load_packs(tmp);
    } catch (const std::exception& e) {
      fail(errc::bad_parameter, "the files pulled for '{}' do not make a pack: {}", name, e.what());
    }
    const fs::path old = models_dir / fmt::format(".pull-old-{}-{}", name, ::getpid());
    if (fs::exists(final_dir)) fs::rename(final_dir, old);
    fs::rename(tmp, final_dir);
    fs::remove_all(old, ec);
  } catch (const error&) {
    fs::remove_all(tmp, ec);
    throw;
  } catch (const std::exception& e) {
    fs::remove_all(tmp, ec);
    fail(errc::unavailable, "cannot install '{}' in {}: {} — nothing was installed", name, models_dir.string(), e.what());
  }
  return final_dir;
}

std::string now_utc() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

std::string default_name(const source& src) {
  if (!src.is_hub) {
    auto base = src.url.substr(src.url.find_last_of('/') + 1);
    for (const char* ext : {".zip", ".onnx", ".h5"}) {
      if (base.size() > std::strlen(ext) && base.ends_with(ext)) base.resize(base.size() - std::strlen(ext));
    }
    return base;
  }
  auto name = src.repo.substr(src.repo.find('/') + 1);
  if (!src.subdir.empty()) {
    auto sub = src.subdir;
    std::replace(sub.begin(), sub.end(), '/', '-');
    name += "-" + sub;
  }
  return name;
}

// A requested file ending in '?' is fetched when the repo has it and not required.
bool wanted(const std::string& path, const source& src, const pull_options& o) {
  if (path == ".gitattributes") return false;
  if (!src.subdir.empty() && path.rfind(src.subdir + "/", 0) != 0) return false;
  return o.files.empty() || std::find(o.files.begin(), o.files.end(), path) != o.files.end() ||
         std::find(o.files.begin(), o.files.end(), path + "?") != o.files.end();
}

void check_requested(const std::vector<wanted_file>& files, const pull_options& o, const source& src) {
  for (const auto& want : o.files) {
    if (want.ends_with("?")) continue;
    bool found = std::any_of(files.begin(), files.end(), [&](const auto& f) { return f.path == want; });
    if (!found) fail(errc::not_found, "{} has no file {}", src.to_string(), want);
  }
  if (files.empty()) fail(errc::not_found, "{} has no files to install", src.to_string());
}

pull_result pull_hub(const source& src, const pull_options& o, const fs::path& models_dir, const settings& s,
                     const std::string& name) {
  const fs::path repo_dir = repo_cache_dir(s, src.repo);
  std::vector<wanted_file> files;
  std::string commit;
  pull_result result;
  if (s.offline) {
    commit = is_hex(src.revision, 40) ? src.revision : read_text(repo_dir / "refs" / src.revision);
    const fs::path snap = repo_dir / "snapshots" / commit;
    if (commit.empty() || !fs::is_directory(snap)) {
      fail(errc::unavailable, "HF_HUB_OFFLINE is set and {}@{} is not in the Hub cache {}", src.repo, src.revision,
           s.cache_dir.string());
    }
    for (auto it = fs::recursive_directory_iterator(snap); it != fs::recursive_directory_iterator(); ++it) {
      if (fs::is_directory(it->path())) continue;
      const std::string path = it->path().lexically_relative(snap).generic_string();
      if (!wanted(path, src, o)) continue;
      wanted_file f;
      f.path = path;
      f.rel = src.subdir.empty() ? path : path.substr(src.subdir.size() + 1);
      f.local = it->path();
      f.size = fs::file_size(it->path());
      // The blob's name is the sha256 for LFS files: check it even offline.
      const std::string blob = fs::is_symlink(it->path()) ? fs::read_symlink(it->path()).filename().string() : "";
      if (is_hex(blob, 64)) f.sha256 = blob;
      if (!f.sha256.empty() && sha256_file(f.local) != f.sha256) {
        fail(errc::unavailable, "{}: the cached copy is corrupt (sha256 differs from its name); remove {} and pull online",
             path, fs::canonical(f.local).string());
      }
      result.reused += f.size;
      files.push_back(std::move(f));
    }
    check_requested(files, o, src);
  } else {
    const std::string api = fmt::format("{}/api/models/{}/revision/{}?blobs=true", s.endpoint, src.repo,
                                        url_escape_path(src.revision));
    auto r = http_get(api, auth_headers(s));
    if (r.transport_failed() || r.status != 200) hub_failure(r, s, src.repo, src.revision, src.repo);
    json info = json::parse(r.body, nullptr, false);
    if (!info.is_object() || !info.contains("sha") || !info.contains("siblings")) {
      fail(errc::unavailable, "{} answered the revision API for {} without sha/siblings", s.endpoint, src.repo);
    }
    commit = info["sha"].get<std::string>();
    for (const auto& sib : info["siblings"]) {
      const std::string path = sib.value("rfilename", "");
      if (path.empty() || !wanted(path, src, o)) continue;
      wanted_file f;
      f.path = path;
      f.rel = src.subdir.empty() ? path : path.substr(src.subdir.size() + 1);
      f.size = sib.value("size", std::uint64_t{0});
      if (sib.contains("lfs") && sib["lfs"].is_object()) {
        f.sha256 = sib["lfs"].value("sha256", "");
        if (f.size == 0) f.size = sib["lfs"].value("size", std::uint64_t{0});
      }
      f.etag = !f.sha256.empty() ? f.sha256 : sib.value("blobId", "");
      if (f.etag.empty()) fail(errc::unavailable, "{}: the revision API gave no blobId for {}", s.endpoint, path);
      files.push_back(std::move(f));
    }
    check_requested(files, o, src);
    std::uint64_t total = 0, cached = 0;
    std::vector<bool> have(files.size());
    for (std::size_t i = 0; i < files.size(); ++i) {
      total += files[i].size;
      have[i] = cached_ok(repo_dir / "blobs" / files[i].etag, files[i]);
      if (have[i]) cached += files[i].size;
    }
    if (!o.quiet) {
      fmt::print(stderr, "{}: {}@{} (commit {}): {} files, {}{}\n", name, src.repo, src.revision, commit.substr(0, 12),
                 files.size(), mib(total), cached > 0 ? fmt::format(" ({} already in the Hub cache)", mib(cached)) : "");
    }
    for (std::size_t i = 0; i < files.size(); ++i) {
      auto& f = files[i];
      const fs::path blob = repo_dir / "blobs" / f.etag;
      if (have[i]) {
        result.reused += f.size;
      } else {
        const std::string url = fmt::format("{}/{}/resolve/{}/{}", s.endpoint, src.repo, commit, url_escape_path(f.path));
        fetch_verified(url, auth_headers(s), blob, f.size, f.sha256, f.path, s, src.repo, src.revision, o.quiet,
                       result.downloaded);
      }
      link_snapshot(repo_dir, commit, f);
      f.local = blob;
    }
    if (src.revision != commit) {
      fs::create_directories(repo_dir / "refs");
      write_text(repo_dir / "refs" / src.revision, commit);
    }
  }
  json listed = json::array();
  for (const auto& f : files) listed.push_back({{"path", f.rel}, {"size", f.size}, {"sha256", f.sha256}});
  json record{{"source", src.to_string()}, {"repo", src.repo},     {"revision", src.revision},
              {"commit", commit},          {"pulled_at", now_utc()}, {"files", listed}};
  result.pack_dir = install(models_dir, name, files, o.manifest, record, {}, o.verify);
  result.revision = commit;
  return result;
}

pull_result pull_url(const source& src, const pull_options& o, const fs::path& models_dir, const settings& s,
                     const std::string& name) {
  pull_result result;
  const std::string base = src.url.substr(src.url.find_last_of('/') + 1);
  const fs::path dir = s.cache_dir / "acg2vec--downloads" / default_name(src);
  const fs::path file = dir / base;
  wanted_file f;
  f.path = base;
  f.rel = base;
  f.sha256 = o.sha256;
  std::error_code ec;
  const bool have = fs::exists(file, ec) && (o.sha256.empty() || sha256_file(file) == o.sha256);
  if (have) {
    result.reused = fs::file_size(file);
  } else if (s.offline) {
    fail(errc::unavailable, "HF_HUB_OFFLINE is set and {} is not in the download cache {}", src.url, dir.string());
  } else {
    if (!o.quiet) fmt::print(stderr, "{}: {}\n", name, src.url);
    fetch_verified(src.url, {}, file, 0, o.sha256, base, s, src.url, "", o.quiet, result.downloaded);
  }
  f.local = file;
  f.size = fs::file_size(file);
  const bool zip = base.ends_with(".zip");
  json record{{"source", src.url}, {"sha256", o.sha256.empty() ? sha256_file(file) : o.sha256}, {"pulled_at", now_utc()},
              {"files", json::array({{{"path", base}, {"size", f.size}}})}};
  result.revision = record["sha256"];
  std::vector<wanted_file> files;
  if (!zip) files.push_back(f);
  result.pack_dir = install(models_dir, name, files, o.manifest, record, zip ? file : fs::path(), o.verify);
  return result;
}

}  // namespace

settings settings::from_env() {
  settings s;
  if (auto e = env("HF_ENDPOINT"); !e.empty()) {
    while (!e.empty() && e.back() == '/') e.pop_back();
    s.endpoint = e;
  }
  fs::path home;
  if (auto h = env("HF_HOME"); !h.empty()) {
    home = h;
  } else if (auto x = env("XDG_CACHE_HOME"); !x.empty()) {
    home = fs::path(x) / "huggingface";
  } else {
    home = fs::path(env("HOME").empty() ? "/tmp" : env("HOME")) / ".cache" / "huggingface";
  }
  if (auto c = env("HF_HUB_CACHE"); !c.empty()) {
    s.cache_dir = c;
  } else if (auto c2 = env("HUGGINGFACE_HUB_CACHE"); !c2.empty()) {
    s.cache_dir = c2;
  } else {
    s.cache_dir = home / "hub";
  }
  s.token = env("HF_TOKEN");
  if (s.token.empty()) s.token = env("HUGGING_FACE_HUB_TOKEN");
  if (s.token.empty()) {
    std::error_code ec;
    if (fs::exists(home / "token", ec)) s.token = read_text(home / "token");
  }
  s.offline = truthy(env("HF_HUB_OFFLINE"));
  return s;
}

source source::parse(const std::string& text) {
  source s;
  if (text.rfind("https://", 0) == 0 || text.rfind("http://", 0) == 0) {
    s.is_hub = false;
    s.url = text;
    return s;
  }
  std::string rest = text.rfind("hf://", 0) == 0 ? text.substr(5) : text;
  if (auto hash = rest.find('#'); hash != std::string::npos) {
    s.subdir = rest.substr(hash + 1);
    rest.resize(hash);
    while (!s.subdir.empty() && s.subdir.back() == '/') s.subdir.pop_back();
  }
  if (auto at = rest.find('@'); at != std::string::npos) {
    s.revision = rest.substr(at + 1);
    rest.resize(at);
  }
  s.repo = rest;
  const auto slash = rest.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == rest.size() || rest.find('/', slash + 1) != std::string::npos ||
      s.revision.empty() || s.subdir.find("..") != std::string::npos) {
    fail(errc::bad_parameter,
         "'{}' is neither a known pack (models list --available), hf://ORG/REPO[@REVISION][#FOLDER] nor an https URL", text);
  }
  return s;
}

std::string source::to_string() const {
  if (!is_hub) return url;
  return "hf://" + repo + (revision == "main" ? "" : "@" + revision) + (subdir.empty() ? "" : "#" + subdir);
}

std::string sha256_file(const fs::path& file) { return sha256_file_hex(file); }

std::optional<json> pull_record(const fs::path& pack_dir) {
  std::error_code ec;
  if (!fs::exists(pack_dir / ".acg2vec-pull.json", ec)) return std::nullopt;
  json j = json::parse(read_text(pack_dir / ".acg2vec-pull.json"), nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

pull_result pull(const source& src, const pull_options& o, const fs::path& models_dir, const settings& s) {
  const std::string name = o.name.empty() ? default_name(src) : o.name;
  if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos) {
    fail(errc::bad_parameter, "'{}' is not a usable pack name", name);
  }
  std::error_code ec;
  const fs::path target = models_dir / name;
  if (fs::exists(target, ec) && !o.force && !pull_record(target)) {
    fail(errc::conflict, "{} exists and was not installed by models pull; use --force to replace it", target.string());
  }
  return src.is_hub ? pull_hub(src, o, models_dir, s, name) : pull_url(src, o, models_dir, s, name);
}

}  // namespace acg2vec::hub
