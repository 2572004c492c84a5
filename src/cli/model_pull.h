#pragma once
// `acg2vec models pull` and the catalogue listing (models list --available); see hub/hub.h.

#include <CLI/CLI.hpp>

#include <filesystem>
#include <string>

#include "cli/commands.h"

namespace acg2vec::cli {

/// @brief Adds `pull` under the `models` command.
void add_pull_command(CLI::App* models, global_options& global);
/// @brief Prints the catalogue of pullable packs (a table, or JSON).
void print_catalogue(const global_options& global, bool as_json);
/// @brief " (SOURCE @ COMMIT)" for a pack installed by models pull, else "".
std::string pulled_revision(const std::filesystem::path& pack_dir);

}  // namespace acg2vec::cli
