#include <signal.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "cli/commands.h"
#include "server/http_server.h"
#include "server/routes.h"

namespace acg2vec::cli {

namespace {

std::filesystem::path default_web_root() {
  // An installed binary finds its page under share/; a build tree uses the source checkout.
  for (std::filesystem::path p : {std::filesystem::path("/usr/local/share/acg2vec/web"),
                                  std::filesystem::path(ACG2VEC_SOURCE_DIR) / "web"}) {
    if (std::filesystem::is_directory(p)) return p;
  }
  return {};
}

// Blocks SIGINT/SIGTERM in every thread and waits for them on a dedicated one, so the
// shutdown runs as ordinary code instead of inside a signal handler.
class signal_waiter {
 public:
  explicit signal_waiter(std::function<void()> on_signal) {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGUSR1);  // used only to wake the waiter at exit
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    thread_ = std::thread([this, on_signal = std::move(on_signal)] {
      int sig = 0;
      sigwait(&set_, &sig);
      if (sig != SIGUSR1) {
        spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
        on_signal();
      }
    });
  }
  ~signal_waiter() {
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }
  signal_waiter(const signal_waiter&) = delete;
  signal_waiter& operator=(const signal_waiter&) = delete;

 private:
  sigset_t set_{};
  std::thread thread_;
};

}  // namespace

void add_serve_command(CLI::App& app, global_options& global) {
  auto* cmd = app.add_subcommand("serve", "serve the REST API and the web page");
  auto opts = std::make_shared<server_options>();
  auto max_upload_mb = std::make_shared<std::size_t>(20);
  auto port_file = std::make_shared<std::string>();
  cmd->add_option("--host", opts->host, "address to bind (127.0.0.1 keeps it local)")
      ->envname("ACG2VEC_HOST")
      ->capture_default_str();
  cmd->add_option("--port", opts->port, "port to bind; 0 picks a free one")
      ->envname("ACG2VEC_PORT")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--threads", opts->threads, "HTTP worker threads")
      ->envname("ACG2VEC_HTTP_THREADS")
      ->check(CLI::Range(1, 512))
      ->capture_default_str();
  cmd->add_option("--max-upload-mb", *max_upload_mb, "largest accepted file part in MB")
      ->envname("ACG2VEC_MAX_UPLOAD_MB")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--web-root", opts->web_root, "directory served at / (default: the bundled page)")
      ->envname("ACG2VEC_WEB_ROOT");
  cmd->add_option("--port-file", *port_file, "write the bound port to this file once listening (for tests)");

  cmd->callback([&global, opts, max_upload_mb, port_file] {
    server_options options = *opts;
    options.max_upload_bytes = *max_upload_mb << 20;
    options.max_request_bytes = std::max(options.max_request_bytes, options.max_upload_bytes + (1u << 20));
    if (options.web_root.empty()) options.web_root = default_web_root();

    http_server server(options);
    register_core_routes(server, core_route_context{});

    signal_waiter signals([&server] { server.stop(); });
    spdlog::info("data dir {}, models dir {}", global.data_dir.string(), global.models_dir.string());
    server.listen([&port_file](int port) {
      if (!port_file->empty()) {
        std::string tmp = *port_file + ".tmp";
        if (std::FILE* f = std::fopen(tmp.c_str(), "w")) {
          std::fprintf(f, "%d\n", port);
          std::fclose(f);
          std::rename(tmp.c_str(), port_file->c_str());
        }
      }
    });
    spdlog::info("stopped");
  });
}

}  // namespace acg2vec::cli
