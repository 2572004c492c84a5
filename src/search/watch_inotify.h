#pragma once
// The small OS layer under the folder watcher: file descriptors as values (RAII), Linux inotify,
// a wake-up descriptor for stopping a thread blocked in poll(), and an advisory lock file.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace acg2vec::search {

/// An owned file descriptor, closed on destruction.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  ~unique_fd() { reset(); }
  unique_fd(unique_fd&& o) noexcept : fd_(o.release()) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset();

 private:
  int fd_ = -1;
};

/// One inotify event, its name (relative to the watched directory) decoded.
struct fs_event {
  int wd = -1;
  std::uint32_t mask = 0;
  std::uint32_t cookie = 0;
  std::string name;
};

/// An inotify instance (non-blocking, close-on-exec).
class inotify_watch {
 public:
  inotify_watch();  ///< errc::unavailable when the kernel refuses one (fs.inotify.max_user_instances)
  /// @brief Watches one directory (not its children) for the changes the watcher cares about.
  /// Returns the watch descriptor, or -1 with errno_out set (ENOSPC: fs.inotify.max_user_watches).
  int add_directory(const std::filesystem::path& dir, int& errno_out);
  void remove(int wd);
  /// @brief Reads every event queued now (none when nothing is queued).
  std::vector<fs_event> read_events();
  [[nodiscard]] int fd() const { return fd_.get(); }

 private:
  unique_fd fd_;
};

/// An eventfd a thread waits on beside other descriptors; notify() wakes it.
class wake_event {
 public:
  wake_event();
  void notify();
  void clear();
  [[nodiscard]] int fd() const { return fd_.get(); }

 private:
  unique_fd fd_;
};

/// @brief Waits until one of fds is readable or the timeout passes (nullopt: wait without end).
/// Returns the readable flags in the order of fds.
std::vector<bool> wait_readable(const std::vector<int>& fds, std::optional<std::chrono::milliseconds> timeout);

/// An exclusive advisory lock (flock) on a file, held while the object lives.
class file_lock {
 public:
  /// @brief Returns false (and holds nothing) when another process holds the lock.
  bool try_lock(const std::filesystem::path& path);

 private:
  unique_fd fd_;
};

/// Size and mtime (to the nanosecond, which std::filesystem does not promise) of a regular file.
struct stat_result {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
};
/// @brief stat() of a regular file, symlinks followed as `acg2vec ingest` does; nullopt for
/// anything else (directories, sockets, missing paths).
std::optional<stat_result> stat_regular_file(const std::filesystem::path& path);

}  // namespace acg2vec::search