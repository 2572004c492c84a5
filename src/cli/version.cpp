#include <fmt/format.h>
#include <torch/version.h>
#include <vips/version.h>

#include "cli/commands.h"
#include "runtime/blas.h"

namespace acg2vec::cli {

void add_version_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "print the version and the versions of the main libraries");
  cmd->callback([] {
    fmt::print("acg2vec {}\nlibtorch {}\nlibvips {}\n", ACG2VEC_VERSION, TORCH_VERSION, VIPS_VERSION);
    // The GEMM kernel actually loaded, so a slow fallback is visible (runtime/blas.h).
    fmt::print("{}\n", runtime::describe_blas());
  });
}

}  // namespace acg2vec::cli
