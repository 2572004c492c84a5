#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>

#include "cli/commands.h"
#include "core/files.h"
#include "core/error.h"
#include "core/source_dir.h"
#include "index/open_index.h"
#include "models/registry.h"
#include "search/service.h"
#include "search/watch.h"
#include "store/open_store.h"
#include "runtime/threads.h"
#include "server/access.h"
#include "server/http_server.h"
#include "server/routes.h"

namespace acg2vec::cli {

namespace {

std::filesystem::path default_web_root() {
  // An installed binary finds its page under share/; a build tree uses the source checkout.
  for (std::filesystem::path p : {std::filesystem::path("/usr/local/share/acg2vec/web"),
                                  std::filesystem::path(source_dir()) / "web"}) {
    if (std::filesystem::is_directory(p)) return p;
  }
  return {};
}

// SIGINT/SIGTERM only write a byte to a pipe; a watcher thread reads it and runs the shutdown
// as ordinary code. A handler (rather than sigwait with a blocked mask) is needed because
// libraries start threads before main() whose signal masks we do not control. The pipe's write
// end is the one piece of process-wide state a signal handler can reach.
int g_signal_pipe_write = -1;

extern "C" void on_stop_signal(int sig) {
  unsigned char byte = static_cast<unsigned char>(sig);
  if (g_signal_pipe_write >= 0) [[maybe_unused]] auto n = ::write(g_signal_pipe_write, &byte, 1);
}

class signal_waiter {
 public:
  explicit signal_waiter(std::function<void()> on_signal) {
    if (::pipe(fds_) != 0) fail(errc::internal, "cannot create the signal pipe");
    g_signal_pipe_write = fds_[1];
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
    thread_ = std::thread([this, on_signal = std::move(on_signal)] {
      unsigned char byte = 0;
      while (::read(fds_[0], &byte, 1) < 0 && errno == EINTR) {
      }
      if (byte == SIGINT || byte == SIGTERM) {
        spdlog::info("received {}, shutting down", byte == SIGINT ? "SIGINT" : "SIGTERM");
        on_signal();
      }
    });
  }
  ~signal_waiter() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    unsigned char zero = 0;
    [[maybe_unused]] auto n = ::write(fds_[1], &zero, 1);  // wakes the watcher when no signal came
    thread_.join();
    g_signal_pipe_write = -1;
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  signal_waiter(const signal_waiter&) = delete;
  signal_waiter& operator=(const signal_waiter&) = delete;

 private:
  int fds_[2] = {-1, -1};
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
  std::thread thread_;
};

}  // namespace

void add_serve_command(CLI::App& app, global_options& global) {
  auto* cmd = app.add_subcommand("serve", "serve the REST API and the web page");
  auto opts = std::make_shared<server::server_options>();
  auto max_upload_mb = std::make_shared<std::size_t>(20);
  auto max_request_mb = std::make_shared<std::size_t>(100);
  auto port_file = std::make_shared<std::string>();
  auto max_pixels = std::make_shared<std::uint64_t>(100'000'000);
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
  cmd->add_option("--max-request-mb", *max_request_mb, "largest accepted request body in MB (all parts)")
      ->envname("ACG2VEC_MAX_REQUEST_MB")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--web-root", opts->web_root, "directory served at / (default: the bundled page)")
      ->envname("ACG2VEC_WEB_ROOT");
  cmd->add_option("--max-pixels", *max_pixels, "largest accepted image in pixels (checked before decoding)")
      ->envname("ACG2VEC_MAX_PIXELS")
      ->capture_default_str();
  cmd->add_option_function<int>(
         "--read-timeout",
         [opts](int seconds) { opts->read_timeout = std::chrono::seconds(seconds); },
         "seconds a client may take to send its request before it gets 408 (default 15)")
      ->envname("ACG2VEC_READ_TIMEOUT")
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--port-file", *port_file, "write the bound port to this file once listening (for tests)");
  auto api_key_file = std::make_shared<std::string>();
  auto cors_origins = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--api-key-file", *api_key_file,
                  "file of API keys, one per line ('#' comments); write routes then need a key")
      ->envname("ACG2VEC_API_KEY_FILE");
  cmd->add_flag("--protect-reads", opts->protect_reads,
                "read routes (tag, embed, search, models, metrics...) need a key too; /health stays open")
      ->envname("ACG2VEC_PROTECT_READS");
  cmd->add_option("--cors-origin", *cors_origins,
                  "origin allowed to call the API from a browser (repeatable or comma-separated; '*' = any)")
      ->envname("ACG2VEC_CORS_ORIGINS")
      ->delimiter(',');
  cmd->add_option("--rate-limit", opts->rate_limit, "requests per second per client (API key, else address); 0 = off")
      ->envname("ACG2VEC_RATE_LIMIT")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--rate-burst", opts->rate_burst, "requests a client may make at once (default: the rate, at least 1)")
      ->envname("ACG2VEC_RATE_BURST")
      ->check(CLI::Range(0.0, 1e6));
  // Bounds on what one client can make the server hold (see RELIABILITY.md, "Limits").
  auto seconds_option = [cmd](const char* name, std::chrono::seconds& target, const char* env, const char* help) {
    cmd->add_option_function<int>(name, [&target](int s) { target = std::chrono::seconds(s); }, help)
        ->envname(env)
        ->check(CLI::Range(1, 86400));
  };
  seconds_option("--request-timeout", opts->request_timeout, "ACG2VEC_REQUEST_TIMEOUT",
                 "seconds a client may take to send a whole request, body included, before 408 (default 120)");
  seconds_option("--keep-alive-timeout", opts->keep_alive_timeout, "ACG2VEC_KEEP_ALIVE_TIMEOUT",
                 "seconds an idle keep-alive connection stays open (default 5)");
  seconds_option("--write-timeout", opts->write_timeout, "ACG2VEC_WRITE_TIMEOUT",
                 "seconds a client may read nothing of its answer before it is dropped (default 30)");
  cmd->add_option("--max-header-bytes", opts->max_header_bytes, "largest request head (request line and headers); else 431")
      ->envname("ACG2VEC_MAX_HEADER_BYTES")
      ->check(CLI::Range(1024, 16 << 20))
      ->capture_default_str();
  cmd->add_option("--max-headers", opts->max_headers, "most header fields per request; else 431")
      ->envname("ACG2VEC_MAX_HEADERS")
      ->check(CLI::Range(8, 100000))
      ->capture_default_str();
  cmd->add_option("--max-request-line", opts->max_request_line, "longest request line in bytes; else 414")
      ->envname("ACG2VEC_MAX_REQUEST_LINE")
      ->check(CLI::Range(256, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-connections", opts->max_connections, "open connections in all; more are answered 503 and closed")
      ->envname("ACG2VEC_MAX_CONNECTIONS")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-connections-per-client", opts->max_connections_per_client,
                  "open connections per client address; more are answered 503 and closed")
      ->envname("ACG2VEC_MAX_CONNECTIONS_PER_CLIENT")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  auto body_budget_mb = std::make_shared<std::size_t>(512);
  cmd->add_option("--body-budget-mb", *body_budget_mb,
                  "request bodies held in memory at once, all clients together, in MB; beyond it 503 (at least "
                  "--max-request-mb)")
      ->envname("ACG2VEC_BODY_BUDGET_MB")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  auto max_instances = std::make_shared<std::size_t>(64);
  cmd->add_option("--max-instances", *max_instances,
                  "instances per TF-Serving predict request and rows per /v1/models/{m}/infer request; else 413")
      ->envname("ACG2VEC_MAX_INSTANCES")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();

  // Watch folders (search/watch.h, docs/watch.md).
  auto watch_dirs = std::make_shared<std::vector<std::string>>();
  auto watch_settle_ms = std::make_shared<int>(500);
  auto watch_workers = std::make_shared<std::size_t>(2);
  cmd->add_option("--watch", *watch_dirs,
                  "folder to keep the collection in step with: new, changed, moved and deleted files (repeatable)")
      ->envname("ACG2VEC_WATCH")
      ->delimiter(',')
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--watch-settle-ms", *watch_settle_ms, "quiet time after the last change before watched files are read")
      ->envname("ACG2VEC_WATCH_SETTLE_MS")
      ->check(CLI::Range(10, 600000))
      ->capture_default_str();
  cmd->add_option("--watch-workers", *watch_workers, "watched images analysed at once, per folder")
      ->envname("ACG2VEC_WATCH_WORKERS")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();

  cmd->callback([&global, opts, max_upload_mb, max_request_mb, port_file, max_pixels, api_key_file,
                 cors_origins, body_budget_mb, max_instances, watch_dirs, watch_settle_ms, watch_workers] {
    spdlog::info("runtime: {} intra-op threads per forward pass", runtime::intra_op_threads());
    server::server_options options = *opts;
    options.max_upload_bytes = *max_upload_mb << 20;
    // A request must be able to carry one full-size file plus its multipart framing.
    options.max_request_bytes = std::max(*max_request_mb << 20, options.max_upload_bytes + (64u << 10));
    options.body_budget_bytes = std::max(*body_budget_mb << 20, options.max_request_bytes);
    if (options.web_root.empty()) options.web_root = default_web_root();
    if (!api_key_file->empty()) {
      options.api_keys = server::load_key_file(*api_key_file);
      spdlog::info("API keys: {} loaded; writes need a key{}", options.api_keys.size(),
                   options.protect_reads ? ", reads too" : "");
    }
    options.cors_origins = server::origin_list(*cors_origins);
    if (options.rate_burst > 0 && options.rate_limit <= 0) {
      fail(errc::bad_parameter, "--rate-burst needs --rate-limit");
    }

    server::http_server server(options);
    std::filesystem::create_directories(global.data_dir);
    auto store = acg2vec::store::open_store(global.store, global.data_dir);
    search::vector_spaces spaces(global.data_dir, *store, index::parse_index_address(global.index));
    models::model_registry registry(global.models_dir, [&server](const std::string& model, std::size_t rows, double s) {
      server.stats().observe_model(model, rows, s);
    });
    search::search_service service(global.data_dir, *store, spaces, registry);
    // Every route that decodes an upload, inserts included, applies the same limits.
    service.set_decode_limits(image::decode_limits{options.max_upload_bytes, *max_pixels});
    std::unique_ptr<search::folder_watcher> watcher;
    if (!watch_dirs->empty()) {
      search::watch_options wo;
      wo.settle = std::chrono::milliseconds(*watch_settle_ms);
      wo.workers = *watch_workers;
      wo.max_file_bytes = options.max_upload_bytes;
      wo.exclude = {global.data_dir, global.models_dir};
      watcher = std::make_unique<search::folder_watcher>(
          service, global.data_dir / "watch", std::vector<std::filesystem::path>(watch_dirs->begin(), watch_dirs->end()),
          wo);
      service.add_stats_section("watch", [w = watcher.get()] { return w->status_json(); });
    }
    registry.start();
    // Vector spaces depend on which embedding models loaded; they are defined (and rebuilt from
    // the store when stale) once loading is over. Until then /health answers 503.
    std::atomic<bool> spaces_ready{false};
    std::string spaces_error;
    std::thread spaces_thread([&] {
      registry.wait();
      try {
        service.define_spaces();
      } catch (const std::exception& e) {
        spaces_error = e.what();
        spdlog::error("vector spaces could not be opened: {}", e.what());
      }
      spaces_ready = true;
      // Watched folders start once items can be added (their first step is a reconcile pass).
      if (watcher && spaces_error.empty()) watcher->start();
      // Thumbnails whose item was deleted by a process that died before removing the file.
      try {
        if (auto n = service.sweep_thumbnails()) spdlog::info("removed {} orphaned thumbnails", n);
      } catch (const std::exception& e) {
        spdlog::warn("thumbnail sweep failed: {}", e.what());
      }
    });
    server::register_core_routes(server, server::core_route_context{[&registry, &spaces_ready, &spaces_error] {
      auto h = registry.health();
      h["ready"] = h["ready"].get<bool>() && spaces_ready.load();
      if (spaces_ready && !spaces_error.empty()) h["index_error"] = spaces_error;
      return h;
    }});
    server::model_route_context models{&registry, options.max_upload_bytes, *max_pixels, *max_instances};
    server::register_model_routes(server, models);
    server::register_tfserving_routes(server, models);
    server::register_tagger_routes(server, models);
    server::register_caption_routes(server, models);
    auto text_tasks = server::register_text_routes(server, models);
    // GET /acgvoc2vec's tag index is built once the models are in, not on the first call.
    std::thread vocabulary_thread([&text_tasks] {
      try {
        text_tasks.warm_up();
      } catch (const std::exception& e) {
        spdlog::warn("the tag vocabulary could not be built at start-up: {}", e.what());
      }
    });
    auto join_vocabulary = [&] {
      text_tasks.cancel();
      if (vocabulary_thread.joinable()) vocabulary_thread.join();
    };
    server::register_upscale_routes(server, models);
    server::register_search_routes(server, server::search_route_context{&service, options.max_upload_bytes, *max_pixels});
    server::register_browse_routes(server, server::search_route_context{&service, options.max_upload_bytes, *max_pixels});
    server::register_duplicate_routes(server, service);
    server::register_openapi_route(server);
    signal_waiter signals([&server] { server.stop(); });
    spdlog::info("data dir {}, models dir {}, store {}", global.data_dir.string(), global.models_dir.string(),
                 global.store.empty() ? "sqlite" : acg2vec::store::redact_store_uri(global.store));
    try {
      server.listen([&port_file](int port) {
        if (!port_file->empty()) write_file_atomic(*port_file, std::to_string(port) + "\n");
      });
    } catch (...) {
      // A port already in use must end with its one-line message, not with std::terminate from
      // destroying a thread that is still joinable.
      spaces_thread.join();
      join_vocabulary();
      throw;
    }
    spaces_thread.join();
    join_vocabulary();
    // In-flight watched files finish; the rest is caught by the next start's reconcile pass.
    if (watcher) watcher->stop();
    if (spaces_ready && spaces_error.empty()) service.save_indexes();
    spdlog::info("stopped");
  });
}

}  // namespace acg2vec::cli
