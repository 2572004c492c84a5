#include "cli/model_pull.h"

#include <fmt/format.h>

#include "core/error.h"
#include "hub/hub.h"

namespace acg2vec::cli {

namespace {

std::string size_text(std::uint64_t bytes) {
  if (bytes >= 1000ull * 1000 * 1000) return fmt::format("{:.2f} GB", static_cast<double>(bytes) / 1e9);
  return fmt::format("{:.0f} MB", static_cast<double>(bytes) / 1e6);
}

}  // namespace

std::string pulled_revision(const std::filesystem::path& pack_dir) {
  // immich CLIP packs live in visual/ and textual/ of the pulled folder.
  for (const auto& dir : {pack_dir, pack_dir.parent_path()}) {
    if (auto rec = hub::pull_record(dir)) {
      std::string rev = rec->value("commit", rec->value("sha256", ""));
      return fmt::format(" ({} @ {})", rec->value("source", "?"), rev.substr(0, 12));
    }
  }
  return "";
}

void print_catalogue(const global_options& global, bool as_json) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : hub::catalogue()) {
    const bool installed = std::filesystem::exists(global.models_dir / e.name);
    if (as_json) {
      out.push_back({{"name", e.name}, {"source", e.source}, {"approx_bytes", e.approx_bytes}, {"license", e.license},
                     {"description", e.what}, {"default", e.default_set}, {"installed", installed}});
      continue;
    }
    if (out.empty()) {
      fmt::print("{:<26} {:>9}  {:<18} {:<9} {}\n", "NAME", "SIZE", "LICENCE", "STATE", "WHAT");
      out.push_back(nullptr);
    }
    fmt::print("{:<26} {:>9}  {:<18} {:<9} {}\n", e.name, "~" + size_text(e.approx_bytes), e.license,
               installed ? "installed" : "-", e.what);
  }
  if (as_json) {
    fmt::print("{}\n", out.dump(2));
  } else {
    fmt::print("\nacg2vec models pull NAME installs one; hf://ORG/REPO[@REVISION][#FOLDER] or an https URL pulls anything "
               "else.\n");
  }
}

void add_pull_command(CLI::App* models, global_options& global) {
  auto* cmd = models->add_subcommand(
      "pull", "install model packs from the Hugging Face Hub, a GitHub release or the catalogue (models list --available)");
  struct opts_t {
    std::vector<std::string> sources;
    std::string name;
    std::vector<std::string> files;
    bool force = false;
    bool quiet = false;
  };
  auto o = std::make_shared<opts_t>();
  cmd->add_option("source", o->sources,
                  "a catalogue name, hf://ORG/REPO[@REVISION][#FOLDER] (files under FOLDER only) or an https URL (a .zip is "
                  "unpacked)")
      ->required();
  cmd->add_option("--name", o->name, "name of the installed pack folder (default: the catalogue name or the repo name)");
  cmd->add_option("--file", o->files, "fetch only these repo paths (repeatable; a trailing ? makes one optional)");
  cmd->add_flag("--force", o->force, "replace a pack folder that was not installed by models pull");
  cmd->add_flag("--quiet", o->quiet, "no progress output");
  cmd->footer(
      "Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (gated repos), HF_HOME / HF_HUB_CACHE (the "
      "Hub cache, shared with huggingface_hub), HF_HUB_OFFLINE=1 (install from the cache without any request), "
      "https_proxy / no_proxy.");
  cmd->callback([&global, o] {
    if (o->sources.size() > 1 && !o->name.empty()) fail(errc::bad_parameter, "--name needs a single source");
    const auto env = hub::settings::from_env();
    for (const auto& text : o->sources) {
      hub::pull_options opts;
      opts.name = o->name;
      opts.files = o->files;
      opts.force = o->force;
      opts.quiet = o->quiet;
      std::string source_text = text;
      if (const auto* entry = hub::find_in_catalogue(text)) {
        source_text = entry->source;
        if (opts.name.empty()) opts.name = entry->name;
        if (opts.files.empty()) opts.files = entry->files;
        opts.sha256 = entry->sha256;
        opts.verify = entry->verify;
        opts.manifest = entry->manifest;
      }
      const auto src = hub::source::parse(source_text);
      const auto r = hub::pull(src, opts, global.models_dir, env);
      fmt::print("installed {} from {} @ {} ({} downloaded, {} from the cache)\n", r.pack_dir.string(), src.to_string(),
                 r.revision.substr(0, 12), size_text(r.downloaded), size_text(r.reused));
    }
  });
}

}  // namespace acg2vec::cli
