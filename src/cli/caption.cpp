// acg2vec caption: the DCLIP caption builder as a data-preparation command.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "text/caption.h"

namespace acg2vec::cli {

void add_caption_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("caption", "build DCLIP training captions from tag files (JSON or CSV, one image per file)");
  struct opts_t {
    std::vector<std::string> files;
    std::string variant = "b";
    bool as_json = false;
  };
  auto o = std::make_shared<opts_t>();
  cmd->add_option("files", o->files, "tag files: [{\"name\": ..., \"category\": ...}] or CSV name,category")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--variant", o->variant, "b (the released checkpoints) or a (the early Danbooru-only epochs)")
      ->capture_default_str();
  cmd->add_flag("--json", o->as_json, "one JSON object per file: {\"file\", \"captions\"}");
  cmd->callback([o] {
    auto variant = text::parse_caption_variant(o->variant);
    for (const auto& f : o->files) {
      auto captions = text::build_captions(text::read_tags_file(f), variant);
      if (o->as_json) {
        fmt::print("{}\n", nlohmann::json{{"file", f}, {"captions", captions}}.dump());
      } else {
        for (const auto& c : captions) fmt::print("{}\t{}\n", f, c);
      }
    }
  });
}

}  // namespace acg2vec::cli
