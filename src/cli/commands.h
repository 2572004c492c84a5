#pragma once
// Each subcommand registers itself on the CLI11 app and runs from its callback.
// Failures are thrown as acg2vec::error; main() turns them into one line and an exit code.

#include <CLI/CLI.hpp>

#include <filesystem>
#include <string>

namespace acg2vec::cli {

/// Options shared by every subcommand (each with an ACG2VEC_* environment fallback).
struct global_options {
  std::string log_level = "info";
  std::filesystem::path data_dir = "var/data";
  std::filesystem::path models_dir = "var/models";
  /// Item store address: "" / sqlite (data_dir/acg2vec.db), sqlite:PATH or redis://...
  std::string store;
  /// Vector index: "" / faiss (files in data_dir/index) or milvus://host:port[?...] (parse_milvus_uri)
  std::string index;
  /// Threads per forward pass, for every command that runs a model (0 = number of cores).
  int intra_op_threads = 0;
};

void add_serve_command(CLI::App& app, global_options& global);
void add_version_command(CLI::App& app);
void add_caption_command(CLI::App& app);
void add_model_commands(CLI::App& app, global_options& global);
void add_collection_commands(CLI::App& app, global_options& global);
/// @brief `acg2vec migrate --from STORE --to STORE`: copies every item between backends.
void add_migrate_command(CLI::App& app, global_options& global);
/// @brief `bench model|search|http|ingest`: bounded measurements against named peers.
void add_bench_command(CLI::App& app, global_options& global);
/// @brief `bench serve`: a pack model-only, served and ingested in one run (bench_serve.cpp).
void add_bench_serve_command(CLI::App& bench, global_options& global);
/// @brief `upscale IN... [-o OUT|--output-dir D] [--model M] [--format png|webp|jpg]`.
void add_upscale_command(CLI::App& app, global_options& global);
/// @brief `acg2vec watch DIR...`: keeps the collection in step with folders until stopped (watch.cpp).
void add_watch_command(CLI::App& app, global_options& global);
/// @brief `dedup [--space S] [--threshold T] [--json|--csv] [--apply keep-best [--dry-run] [--delete-files]]`.
void add_dedup_command(CLI::App& app, global_options& global);
/// @brief Creates the data directory if needed.
void prepare_data_dir(const global_options& global);

}  // namespace acg2vec::cli
