// `acg2vec watch DIR...`: keeps the collection in step with folders until SIGINT/SIGTERM.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <mutex>

#include "cli/commands.h"
#include "core/error.h"
#include "index/open_index.h"
#include "search/service.h"
#include "search/watch.h"
#include "store/open_store.h"

namespace acg2vec::cli {

namespace {

// SIGINT/SIGTERM write a byte to this pipe; the main thread, which waits on it, stops the
// watcher as ordinary code (see serve.cpp for why a handler rather than sigwait).
int g_watch_signal_pipe = -1;

extern "C" void on_watch_signal(int sig) {
  unsigned char byte = static_cast<unsigned char>(sig);
  if (g_watch_signal_pipe >= 0) [[maybe_unused]] auto n = ::write(g_watch_signal_pipe, &byte, 1);
}

/// One line for all roots, e.g. "/pics: watching · 120 items · 0 pending · 1 failed · +3 ~1 >2 -0".
std::string status_line(const std::vector<search::root_status>& all) {
  std::string line;
  for (const auto& s : all) {
    if (!line.empty()) line += " | ";
    line += fmt::format("{}: {} · {} items · {} pending · {} failed · +{} ~{} >{} -{}", s.root, s.state, s.items,
                        s.pending, s.errors, s.ingested, s.updated, s.moved, s.removed);
    if (!s.message.empty()) line += " (" + s.message + ")";
  }
  return line;
}

}  // namespace

void add_watch_command(CLI::App& app, global_options& global) {
  auto* cmd = app.add_subcommand(
      "watch", "keep the collection in step with folders (new, changed, moved and deleted files) until stopped");
  struct opts_t {
    std::vector<std::string> dirs;
    std::size_t workers = 2;
    std::size_t max_mb = 20;
    std::uint64_t max_pixels = 100'000'000;
    int settle_ms = 500;
    bool once = false;
  };
  auto o = std::make_shared<opts_t>();
  cmd->add_option("dir", o->dirs, "folders to watch recursively (not nested in each other)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--workers", o->workers, "images analysed at once")->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--max-file-mb", o->max_mb, "larger files are not ingested (counted as failed)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--max-pixels", o->max_pixels, "larger images are not ingested (checked before decoding)")
      ->capture_default_str();
  cmd->add_option("--settle-ms", o->settle_ms, "quiet time after the last change before files are read")
      ->check(CLI::Range(10, 600000))
      ->capture_default_str();
  cmd->add_flag("--once", o->once, "reconcile once (catch up with what changed) and exit instead of watching");
  cmd->callback([&global, o] {
    prepare_data_dir(global);
    auto store = acg2vec::store::open_store(global.store, global.data_dir);
    search::vector_spaces spaces(global.data_dir, *store, index::parse_index_address(global.index));
    models::model_registry models(global.models_dir);
    search::search_service service(global.data_dir, *store, spaces, models);
    models.load_all();
    service.define_spaces();
    service.set_decode_limits(image::decode_limits{o->max_mb << 20, o->max_pixels});

    int fds[2];
    if (::pipe(fds) != 0) fail(errc::internal, "cannot create the signal pipe");
    // Non-blocking: a watcher thread reporting a change must never wait on a full pipe.
    ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
    g_watch_signal_pipe = fds[1];
    struct sigaction sa {};
    struct sigaction old_int {};
    struct sigaction old_term {};
    sa.sa_handler = on_watch_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    search::watch_options options;
    options.settle = std::chrono::milliseconds(o->settle_ms);
    options.workers = o->workers;
    options.max_file_bytes = o->max_mb << 20;
    options.exclude = {global.data_dir, global.models_dir};
    options.once = o->once;
    // Status changes wake the main thread, which redraws the line.
    options.on_change = [fd = fds[1]] {
      unsigned char byte = 0;
      [[maybe_unused]] auto n = ::write(fd, &byte, 1);
    };
    std::vector<std::filesystem::path> roots(o->dirs.begin(), o->dirs.end());
    search::folder_watcher watcher(service, global.data_dir / "watch", roots, options);
    watcher.start();

    const bool tty = ::isatty(STDERR_FILENO) != 0;
    std::string last;
    auto draw = [&](bool final_line) {
      auto line = status_line(watcher.status());
      // A log (not a terminal) gets a line per change; a terminal's line is ended at exit.
      if (line == last && !(final_line && tty)) return;
      last = line;
      if (tty) {
        std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final_line ? "\n" : "");
      } else {
        std::fprintf(stderr, "%s\n", line.c_str());
      }
      std::fflush(stderr);
    };
    bool stop_signal = false;
    for (;;) {
      if (o->once && watcher.finished()) break;
      pollfd p{fds[0], POLLIN, 0};
      int rc = ::poll(&p, 1, 1000);  // also redraws pending counts that change without an event
      if (rc > 0) {
        unsigned char buf[64];
        auto n = ::read(fds[0], buf, sizeof buf);
        for (ssize_t i = 0; i < n; ++i) {
          if (buf[i] == SIGINT || buf[i] == SIGTERM) stop_signal = true;
        }
      }
      if (stop_signal) break;
      draw(false);
    }
    watcher.stop();
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    g_watch_signal_pipe = -1;
    draw(true);
    service.save_indexes();
    ::close(fds[0]);
    ::close(fds[1]);
    std::size_t failed = 0;
    for (const auto& s : watcher.status()) {
      failed += s.errors;
      for (const auto& [path, error] : s.failed) fmt::print("failed: {}/{}: {}\n", s.root, path, error);
    }
    fmt::print("{} items in the collection; {} files could not be ingested\n", store->count(), failed);
    for (const auto& s : watcher.status()) {
      if (s.state == "error") fail(errc::unavailable, "watching {} failed: {}", s.root, s.message);
    }
  });
}

}  // namespace acg2vec::cli
