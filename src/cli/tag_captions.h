#pragma once
// `acg2vec tag DIR --captions`: the dataset-captioning options of the tag command and the job
// that runs them (walk, decode ahead, batched model passes, caption files, JSONL, frequencies).

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace acg2vec::cli {

struct caption_cli_options;

/// @brief Adds the --captions options to the tag subcommand; the returned object is filled by parsing.
std::shared_ptr<caption_cli_options> add_caption_options(CLI::App& cmd);
/// @brief Applies --config (once) and says whether --captions was given, on the command line or
/// in the file. Caption options without --captions are a bad_parameter.
bool captions_requested(CLI::App& cmd, caption_cli_options& options);
/// @brief Runs the captioning job over paths (directories or files) with the named packs
/// ("" = the first installed tagger; "a,b" = an ensemble). Throws acg2vec::error on failure.
void run_caption_job(const global_options& global, CLI::App& cmd, caption_cli_options& options,
                     const std::vector<std::string>& paths, const std::string& models,
                     float legacy_threshold);

}  // namespace acg2vec::cli
