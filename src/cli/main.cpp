#include <spdlog/spdlog.h>

#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"

int main(int argc, char** argv) {
  namespace cli = acg2vec::cli;
  CLI::App app{"acg2vec: tag, embed and search anime/illustration images", "acg2vec"};
  app.require_subcommand(1);
  app.set_version_flag("--version", ACG2VEC_VERSION);

  cli::global_options global;
  app.add_option("--log-level", global.log_level, "trace, debug, info, warn, error or off")
      ->envname("ACG2VEC_LOG_LEVEL")
      ->capture_default_str();
  app.add_option("--data-dir", global.data_dir, "directory of the embedded store (SQLite + FAISS)")
      ->envname("ACG2VEC_DATA_DIR")
      ->capture_default_str();
  app.add_option("--models-dir", global.models_dir, "directory of installed model packs")
      ->envname("ACG2VEC_MODELS_DIR")
      ->capture_default_str();

  cli::add_serve_command(app, global);
  cli::add_version_command(app);
  cli::add_caption_command(app);
  cli::add_model_commands(app, global);
  cli::add_collection_commands(app, global);
  cli::add_bench_command(app, global);
  cli::add_pending_commands(app);

  app.parse_complete_callback([&global] { acg2vec::init_logging(global.log_level); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const acg2vec::error& e) {
    std::fprintf(stderr, "acg2vec: %s\n", e.what());
    return acg2vec::exit_code(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acg2vec: internal error: %s\n", e.what());
    return acg2vec::exit_code(acg2vec::errc::internal);
  }
  return 0;
}
