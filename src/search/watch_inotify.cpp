#include "search/watch_inotify.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace acg2vec::search {

void unique_fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

inotify_watch::inotify_watch() : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
  if (!fd_.valid()) {
    fail(errc::unavailable, "cannot start inotify: {} (see fs.inotify.max_user_instances)", std::strerror(errno));
  }
}

int inotify_watch::add_directory(const std::filesystem::path& dir, int& errno_out) {
  // IN_MODIFY as well as IN_CLOSE_WRITE: a file still being written keeps postponing its read.
  // IN_ATTRIB catches `touch` and restored mtimes. IN_DONT_FOLLOW: a symlinked directory is not
  // entered (it could lead out of the tree or into a loop).
  constexpr std::uint32_t mask = IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_MOVED_FROM |
                                 IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW;
  int wd = ::inotify_add_watch(fd_.get(), dir.c_str(), mask);
  errno_out = wd < 0 ? errno : 0;
  return wd;
}

void inotify_watch::remove(int wd) { ::inotify_rm_watch(fd_.get(), wd); }

std::vector<fs_event> inotify_watch::read_events() {
  std::vector<fs_event> out;
  alignas(struct inotify_event) char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // EAGAIN: drained
    }
    if (n == 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* e = reinterpret_cast<struct inotify_event*>(p);
      fs_event ev;
      ev.wd = e->wd;
      ev.mask = e->mask;
      ev.cookie = e->cookie;
      if (e->len > 0) ev.name.assign(e->name, ::strnlen(e->name, e->len));
      out.push_back(std::move(ev));
      p += sizeof(struct inotify_event) + e->len;
    }
  }
  return out;
}

wake_event::wake_event() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!fd_.valid()) fail(errc::unavailable, "cannot create an eventfd: {}", std::strerror(errno));
}

void wake_event::notify() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(fd_.get(), &one, sizeof one);
}

void wake_event::clear() {
  std::uint64_t value = 0;
  [[maybe_unused]] auto n = ::read(fd_.get(), &value, sizeof value);
}

std::vector<bool> wait_readable(const std::vector<int>& fds, std::optional<std::chrono::milliseconds> timeout) {
  std::vector<pollfd> p;
  for (int fd : fds) p.push_back({fd, POLLIN, 0});
  int ms = timeout ? static_cast<int>(std::max<std::int64_t>(0, timeout->count())) : -1;
  int rc = ::poll(p.data(), p.size(), ms);
  std::vector<bool> ready(fds.size(), false);
  if (rc <= 0) return ready;  // timeout or EINTR: the caller loops anyway
  for (std::size_t i = 0; i < p.size(); ++i) ready[i] = (p[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
  return ready;
}

bool file_lock::try_lock(const std::filesystem::path& path) {
  unique_fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd.valid()) fail(errc::unavailable, "cannot open {}: {}", path.string(), std::strerror(errno));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return false;
  fd_ = std::move(fd);
  return true;
}

std::optional<stat_result> stat_regular_file(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return stat_result{static_cast<std::uint64_t>(st.st_size),
                     static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

}  // namespace acg2vec::search