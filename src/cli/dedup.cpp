// `acg2vec dedup`: duplicate and variant groups of the collection, and resolving them (search/dedup.h).
#include <fmt/format.h>

#include <algorithm>

#include "cli/commands.h"
#include "core/error.h"
#include "index/open_index.h"
#include "search/dedup.h"
#include "search/service.h"
#include "store/open_store.h"

namespace acg2vec::cli {

namespace {

using json = nlohmann::json;

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace

void add_dedup_command(CLI::App& app, global_options& global) {
  auto* cmd = app.add_subcommand("dedup", "duplicate and variant groups of the collection, with the copy to keep");
  struct opts_t {
    std::string space;
    float threshold = 0;
    std::size_t neighbours = 16;
    std::string keep_rule{search::default_keep_rule};
    bool as_json = false;
    bool as_csv = false;
    std::string apply;
    bool dry_run = false;
    bool delete_files = false;
    std::vector<std::string> groups;
  };
  auto o = std::make_shared<opts_t>();
  cmd->add_option("--space", o->space, "vector space of the first stage (default: the perceptual signature)");
  cmd->add_option("--threshold", o->threshold,
                  "first-stage similarity for a candidate pair (default 0.75 on the signature, 0.95 elsewhere)")
      ->check(CLI::Range(0.01, 1.0));
  cmd->add_option("--neighbours", o->neighbours, "most similar items kept per item in the self-join")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--keep-rule", o->keep_rule,
                  "order of the keep criteria, best copy first: pixels, lossless, size, oldest|newest")
      ->capture_default_str();
  auto* fmt_group = cmd->add_option_group("format");
  fmt_group->add_flag("--json", o->as_json, "JSON output: {\"groups\": [{\"id\", \"keep\", \"members\": [...]}]}");
  fmt_group->add_flag("--csv", o->as_csv, "CSV output: one row per member (group, keep, id, relation, score, copy_of, source)");
  fmt_group->require_option(0, 1);
  cmd->add_option("--apply", o->apply,
                  "resolve: keep-best keeps the best copy of each drawing and removes the others after merging "
                  "their tags and metadata into it (variants stay)")
      ->check(CLI::IsMember({"keep-best"}));
  cmd->add_flag("--dry-run", o->dry_run, "with --apply: print what would be removed and change nothing");
  cmd->add_flag("--delete-files", o->delete_files,
                "with --apply: also delete the removed items' files (local paths only); never without this flag");
  cmd->add_option("--group", o->groups, "with --apply: only these group ids (repeatable; default every group)");
  cmd->callback([&global, cmd, o] {
    if ((o->dry_run || o->delete_files || !o->groups.empty()) && o->apply.empty())
      fail(errc::bad_parameter, "--dry-run, --delete-files and --group go with --apply keep-best");
    auto store = store::open_store(global.store, global.data_dir);
    search::vector_spaces spaces(global.data_dir, *store, index::parse_index_address(global.index));
    // Grouping needs no model: only the stored vectors and the signature index.
    models::model_registry models(global.models_dir);
    search::search_service service(global.data_dir, *store, spaces, models);
    service.define_spaces();
    if (!o->space.empty() && o->space != search::signature_space) {
      const auto counts = store->vector_counts();
      auto c = counts.find(o->space);
      if (c == counts.end() || c->second.dim <= 0) fail(errc::not_found, "no stored vectors in space '{}'", o->space);
      index::faiss_options fo;
      fo.name = o->space;
      spaces.define({o->space, c->second.dim, index::metric::inner_product, fo});
    }
    search::dedup_options d;
    d.space = o->space;
    if (cmd->count("--threshold") > 0) d.threshold = o->threshold;
    d.neighbours = o->neighbours;
    d.keep_rule = search::parse_keep_rule(o->keep_rule);
    auto report = search::find_duplicates(service, d);

    if (!o->apply.empty()) {
      std::vector<search::resolve_plan> plans;
      for (const auto& g : report.groups) {
        if (!o->groups.empty() && std::find(o->groups.begin(), o->groups.end(), g.id) == o->groups.end()) continue;
        plans.push_back(search::plan_resolve(service, g));
      }
      for (const auto& id : o->groups) {
        if (std::none_of(report.groups.begin(), report.groups.end(), [&](const auto& g) { return g.id == id; }))
          fail(errc::not_found, "no duplicate group {}", id);
      }
      search::resolve_options ro;
      ro.dry_run = o->dry_run;
      ro.delete_files = o->delete_files;
      auto result = search::apply_resolve(service, plans, ro);
      if (!o->dry_run) service.save_indexes();
      if (o->as_json) {
        fmt::print("{}\n", result.dump(-1, ' ', false, json::error_handler_t::replace));
        return;
      }
      std::size_t removed = 0;
      for (const auto& g : result["groups"]) {
        for (const auto& k : g["kept"]) {
          fmt::print("{} keep {}\n", g["group"].get<std::string>(), k["id"].dump());
          for (const auto& r : k["removed"]) {
            ++removed;
            fmt::print("  {} {}  {}{}\n", o->dry_run ? "would remove" : "removed", r["id"].dump(),
                       r["source"].get<std::string>(),
                       r["file_deleted"].get<bool>() ? "  (file deleted)"
                                                     : (r.contains("file_note") ? "  (" + r["file_note"].get<std::string>() + ")" : ""));
          }
        }
      }
      fmt::print("{} {} item(s) in {} group(s){}\n", o->dry_run ? "would remove" : "removed", removed, plans.size(),
                 o->dry_run ? " (dry run: nothing changed)" : "");
      return;
    }

    if (o->as_json) {
      fmt::print("{}\n", to_json(report).dump(-1, ' ', false, json::error_handler_t::replace));
      return;
    }
    if (o->as_csv) {
      fmt::print("group,keep,id,relation,score,fine_distance,copy_of,source\n");
      for (const auto& g : report.groups) {
        for (const auto& m : g.members) {
          fmt::print("{},{},{},{},{:.4f},{},{},{}\n", g.id, csv_field(g.keep), csv_field(m.id), to_string(m.relation),
                     m.score, m.fine_distance >= 0 ? fmt::format("{:.4f}", m.fine_distance) : std::string(),
                     csv_field(m.copy_of), csv_field(m.source));
        }
      }
      return;
    }
    for (const auto& g : report.groups) {
      fmt::print("group {} ({} items), keep {}\n", g.id, g.members.size(), g.keep);
      for (const auto& m : g.members) {
        fmt::print("  {:<15} {:>6.4f}  {:<40}  {}\n", to_string(m.relation), m.score, m.id, m.source);
      }
    }
    fmt::print("{} group(s) among {} items ({} candidate pairs, {} rejected by the fine stage) in {:.2f}s\n",
               report.groups.size(), report.items, report.candidate_pairs, report.fine_rejected, report.seconds);
  });
}

}  // namespace acg2vec::cli
