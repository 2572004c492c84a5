#include "core/files.h"

#include "core/error.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace acg2vec {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path, std::string_view what, std::uintmax_t max_bytes) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) fail(errc::not_found, "cannot read {} '{}': {}", what, path.string(), ec.message());
  if (size > max_bytes) fail(errc::too_large, "{} '{}' is larger than {} bytes", what, path.string(), max_bytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(errc::not_found, "cannot open {} '{}': {}", what, path.string(), std::strerror(errno));
  std::string bytes(size, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(in.gcount()) != size) {
    fail(errc::bad_parameter, "cannot read {} '{}': short read", what, path.string());
  }
  return bytes;
}

void write_file_atomic(const fs::path& path, std::string_view bytes, const fs::path& temporary) {
  std::error_code ec;
  if (!path.parent_path().empty()) fs::create_directories(path.parent_path(), ec);
  if (ec) fail(errc::internal, "cannot create {}: {}", path.parent_path().string(), ec.message());
  const fs::path tmp = temporary.empty() ? fs::path(path.string() + ".tmp." + std::to_string(::getpid())) : temporary;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(errc::internal, "cannot write {}: {}", tmp.string(), std::strerror(errno));
  auto give_up = [&](int err, std::string_view step) {
    ::unlink(tmp.c_str());
    fail(errc::internal, "cannot {} {}: {}", step, tmp.string(), std::strerror(err));
  };
  std::size_t done = 0;
  while (done < bytes.size()) {
    const auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      ::close(fd);
      give_up(err, "write");
    }
    done += static_cast<std::size_t>(n);
  }
  // Flushed before the rename: after a crash the target is the old file or the whole new one.
  int synced = ::fsync(fd);
  int err = errno;
  if (::close(fd) != 0 && synced == 0) {
    synced = -1;
    err = errno;
  }
  if (synced != 0) give_up(err, "write");
  if (::rename(tmp.c_str(), path.c_str()) != 0) give_up(errno, "rename into place");
}

}  // namespace acg2vec
