#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>

#include "cli/commands.h"
#include "core/error.h"
#include "store/open_store.h"

namespace acg2vec::cli {
namespace {

struct migrate_options {
  std::string from;
  std::string to;
  std::size_t batch = 500;
  std::size_t sample = 200;
  bool overwrite = false;
};

// Field-by-field, vectors bit for bit; returns what differs (empty when equal).
std::string difference(const store::item& a, const store::item& b) {
  if (a.id != b.id) return "id";
  if (a.numeric_id != b.numeric_id) return "numeric_id";
  if (a.source != b.source) return "source";
  if (a.content_hash != b.content_hash) return "content_hash";
  if (a.width != b.width || a.height != b.height) return "size";
  if (a.metadata != b.metadata) return "metadata";
  if (a.tags != b.tags) return "tags";
  if (a.scores != b.scores) return "scores";
  if (a.created_at != b.created_at || a.updated_at != b.updated_at) return "times";
  if (a.vectors.size() != b.vectors.size()) return "vector spaces";
  for (const auto& [space, v] : a.vectors) {
    const auto other = b.vectors.find(space);
    if (other == b.vectors.end() || other->second.size() != v.size() ||
        !std::equal(v.begin(), v.end(), other->second.begin(),
                    [](float x, float y) { return std::memcmp(&x, &y, sizeof x) == 0; }))
      return "vector " + space;
  }
  return {};
}

void run_migrate(const global_options& global, const migrate_options& o) {
  if (o.from == o.to) fail(errc::bad_parameter, "--from and --to name the same store");
  auto source = store::open_store(o.from, global.data_dir);
  auto destination = store::open_store(o.to, global.data_dir);
  const auto source_count = source->count();
  const auto existing = destination->count();
  if (existing > 0 && !o.overwrite)
    fail(errc::conflict, "destination {} already holds {} items; pass --overwrite to merge into it",
         store::redact_store_uri(o.to), existing);

  // Pages newest first by offset: the source must not change while it is copied.
  std::size_t copied = 0;
  for (std::size_t offset = 0;; offset += o.batch) {
    const auto page = source->list(offset, o.batch, true);
    if (page.empty()) break;
    destination->upsert_batch(page);
    copied += page.size();
    spdlog::info("migrate: {} / {} items copied", copied, source_count);
    if (page.size() < o.batch) break;
  }

  const auto destination_count = destination->count();
  if (copied != source_count)
    fail(errc::internal, "migrate: copied {} items but the source reports {} (was it written to meanwhile?)",
         copied, source_count);
  if (destination_count != existing + source_count && !o.overwrite)
    fail(errc::internal, "migrate: destination holds {} items after copying {}", destination_count, source_count);

  // Verification: a random sample of source items must come back identical from the destination.
  std::vector<std::size_t> positions(source_count);
  for (std::size_t n = 0; n < source_count; ++n) positions[n] = n;
  std::mt19937_64 rng(std::random_device{}());
  std::shuffle(positions.begin(), positions.end(), rng);
  positions.resize(std::min(o.sample, positions.size()));
  std::size_t checked = 0;
  for (const auto p : positions) {
    const auto one = source->list(p, 1, true);
    if (one.empty()) continue;
    const auto copy = destination->get(one.front().id);
    if (!copy) fail(errc::internal, "migrate: item '{}' is missing from the destination", one.front().id);
    if (const auto diff = difference(one.front(), *copy); !diff.empty())
      fail(errc::internal, "migrate: item '{}' differs in the destination ({})", one.front().id, diff);
    ++checked;
  }
  const nlohmann::json summary{{"copied", copied},
                               {"source_count", source_count},
                               {"destination_count", destination_count},
                               {"sampled", checked},
                               {"mismatches", 0}};
  std::printf("%s\n", summary.dump().c_str());
}

}  // namespace

void add_migrate_command(CLI::App& app, global_options& global) {
  auto* cmd = app.add_subcommand("migrate", "copy every item from one store to another (e.g. sqlite to redis)");
  auto o = std::make_shared<migrate_options>();
  cmd->add_option("--from", o->from, "source store: sqlite, sqlite:PATH or redis://...")->required();
  cmd->add_option("--to", o->to, "destination store (must be empty unless --overwrite)")->required();
  cmd->add_option("--batch", o->batch, "items per write batch")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--sample", o->sample, "items compared field by field after copying")->capture_default_str();
  cmd->add_flag("--overwrite", o->overwrite, "merge into a non-empty destination, replacing items with the same id");
  cmd->callback([&global, o] { run_migrate(global, *o); });
}

}  // namespace acg2vec::cli
