#include <malloc.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "runtime/blas.h"
#include "runtime/threads.h"

namespace {

// glibc gives each thread that contends for the heap an arena of its own, up to 8 per core.
// Tensors of a few MB freed on one arena and needed on another make every arena grow: under a
// 64-client soak the server's RSS rose 9 MiB/min with the default and stayed flat with one arena
// per core, at the same throughput.
// glibc also maps large blocks afresh and hands the free top of the heap back to the kernel, so
// every run of a model faulted its activations in again: ResNet-50 at batch 8 took 600k page
// faults in 9 s. Serving blocks of up to 256 MiB from the heap and keeping up to 256 MiB of it
// resident when freed cut that to 135k and made batch 8 about 20 % faster; RSS then stays at the
// working set's high-water mark. Explicit settings (GLIBC_TUNABLES, MALLOC_*_) win.
void tune_malloc() {
  if (std::getenv("GLIBC_TUNABLES") != nullptr) return;
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) {
    const long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
    ::mallopt(M_ARENA_MAX, static_cast<int>(std::max(2L, cores)));
  }
  constexpr int keep = 256 << 20;
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) ::mallopt(M_MMAP_THRESHOLD, keep);
  if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr) ::mallopt(M_TRIM_THRESHOLD, keep);
}

}  // namespace

int main(int argc, char** argv) {
  // Kernel choice (OpenBLAS) and OpenMP spin are read when the libraries load: set them and
  // restart once where the user has not (runtime/blas.cpp).
  acg2vec::runtime::prepare_process(argv);
  tune_malloc();
  namespace cli = acg2vec::cli;
  CLI::App app{"acg2vec: tag, embed and search anime/illustration images", "acg2vec"};
  app.require_subcommand(1);
  app.set_version_flag("--version", ACG2VEC_VERSION);

  // Subcommands (created below, so they inherit this) hand options they do not know to their
  // parent: the global options work before or after the subcommand (`acg2vec serve --data-dir X`).
  app.fallthrough();

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

  app.add_option("--store", global.store,
                 "item store: sqlite (in --data-dir), sqlite:PATH or redis://[[user]:password@]host:port[,host:port][/db]")
      ->envname("ACG2VEC_STORE");
  app.add_option("--index", global.index, "vector index: faiss (in --data-dir, saved parameters), faiss?kind=auto|flat|hnsw|ivfpq&m=&ef_construction=&ef_search=&nlist=&nprobe=&refine= (docs/index-params.md) or milvus://host:port[?index=HNSW&M=&efConstruction=&ef=&nlist=&nprobe=&db=&prefix=&token=&timeout_ms=&load_timeout_ms=&retries=] (docs/scale-out.md)")
      ->envname("ACG2VEC_INDEX");
  app.add_option("--intra-op-threads", global.intra_op_threads, "threads per forward pass (0 = number of cores)")
      ->envname("ACG2VEC_INTRA_OP_THREADS")
      ->check(CLI::Range(0, 256));

  cli::add_serve_command(app, global);
  cli::add_version_command(app);
  cli::add_caption_command(app);
  cli::add_model_commands(app, global);
  cli::add_collection_commands(app, global);
  cli::add_watch_command(app, global);
  cli::add_dedup_command(app, global);
  cli::add_migrate_command(app, global);
  cli::add_bench_command(app, global);
  cli::add_upscale_command(app, global);

  app.parse_complete_callback([&global] {
    acg2vec::init_logging(global.log_level);
    acg2vec::runtime::warn_if_generic_blas();
    // Every command that runs a model (serve, ingest, tag, embed, upscale, watch, ...) gets the same
    // thread layout: one OpenMP team on the compute thread, BLAS single-threaded inside it. Without
    // this, `ingest` left OpenBLAS's own worker yielding on the cores its decoders needed.
    acg2vec::runtime::configure_threads(global.intra_op_threads);
  });

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
