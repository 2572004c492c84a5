// `acg2vec bench model|search|http|ingest|soak|serve|caption`: measuring instruments. Every instrument is
// bounded in time and size, prints a table with the machine's load average (figures taken on a
// busy machine are not comparable), and measures its peers in the same run so that ratios mean
// something. One file per instrument (bench_<name>.cpp); what they share is in bench_common.

#include "cli/bench_common.h"
#include "cli/commands.h"
#include "core/error.h"

namespace acg2vec::cli {

void add_bench_command(CLI::App& app, global_options& global) {
  auto* bench = app.add_subcommand("bench", "benchmarks against peer runtimes and indexes");
  // One readable line (not CLI11's two) when no instrument is named.
  bench->require_subcommand(0, 1);
  bench->callback([bench] {
    if (bench->get_subcommands().empty()) {
      fail(errc::bad_parameter, "bench: name an instrument: model, search, http, ingest, soak, dedup, serve or caption (see bench --help)");
    }
  });

  add_bench_model(*bench);
  add_bench_search(*bench);
  add_bench_http(*bench);
  add_bench_ingest(*bench, global);
  add_bench_soak(*bench);
  add_bench_dedup(*bench);
  add_bench_caption(*bench);
  add_bench_serve_command(*bench, global);
}

}  // namespace acg2vec::cli
