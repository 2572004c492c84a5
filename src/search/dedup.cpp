// Duplicate and variant groups: the similarity self-join over the signature space, the fine stage that
// drops pairs of different drawings, the split of each group into drawings and their copies, the
// keep rule, and resolve. One file because every step works on the same group structures and
// the resolve replays the grouping it was asked about.
#include "search/dedup.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <unordered_map>

#include "core/hash.h"
#include "core/error.h"
#include "image/fine_signature.h"
#include "image/signature.h"
#include "search/service.h"

namespace acg2vec::search {

namespace {

using json = nlohmann::json;

// Whether member m differs from anchor a by a local change (a variant) rather than by diffuse noise (a
// copy). Both are aligned into one frame; the tolerant difference map is taken over the interior cells
// (a crop's new edge and resampling at the border are noise), and the change is local when its
// variant_top_cells largest cells sum to more than variant_top_sum and hold over a share of the whole
// difference. Measured on the Ren'Py set (tests/integration/test_dedup_variants.py, G=64), cell by
// cell: untouched expression variants had top sums 0.77-3.8 with shares 0.39-0.74, crops, halves and
// JPEG copies against their original shares below 0.07; mirrored copies, compared tolerantly (3x3),
// had top sums below 0.28.
constexpr int variant_top_cells = 12;
constexpr float variant_top_sum = 0.3f;
constexpr float variant_top_share = 0.1f;
constexpr float variant_plain_top_share = 0.2f;
constexpr int variant_border_cells = 4;

bool local_change(const image::fine_alignment& m, const image::fine_alignment& a) {
  constexpr int g = image::fine_side;
  // A mirrored pair keeps a sub-cell misalignment along every line (the border trim is not symmetric),
  // so it is compared tolerantly; otherwise cell by cell, which keeps an expression change of a few
  // thin lines visible.
  const bool tolerant = m.mirrored != a.mirrored;
  const int reach = tolerant ? 1 : 0;
  std::vector<float> cells;
  for (int y = variant_border_cells; y < g - variant_border_cells; ++y) {
    for (int x = variant_border_cells; x < g - variant_border_cells; ++x) {
      const auto c = static_cast<std::size_t>(y * g + x);
      if (m.valid[c] == 0 || a.valid[c] == 0) continue;
      // Tolerant: the closest of a's 3x3 neighbours (as image::tolerant_difference).
      float best = 2.0f;
      for (int dy = -reach; dy <= reach; ++dy) {
        for (int dx = -reach; dx <= reach; ++dx) {
          const auto o = static_cast<std::size_t>((y + dy) * g + (x + dx));
          if (a.valid[o] != 0) best = std::min(best, std::abs(m.warped[c] - a.warped[o]));
        }
      }
      cells.push_back(best);
    }
  }
  if (cells.empty()) return false;
  const auto top = std::min<std::size_t>(variant_top_cells, cells.size());
  std::partial_sort(cells.begin(), cells.begin() + static_cast<std::ptrdiff_t>(top), cells.end(), std::greater<>());
  double top_sum = 0;
  double total = 0;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    total += cells[i];
    if (i < top) top_sum += cells[i];
  }
  return top_sum > variant_top_sum && total > 0 &&
         top_sum / total > (tolerant ? variant_top_share : variant_plain_top_share);
}

float dot(std::span<const float> a, std::span<const float> b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(s);
}

struct union_find {
  explicit union_find(std::size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), std::size_t{0}); }
  std::size_t find(std::size_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  }
  void join(std::size_t a, std::size_t b) {
    a = find(a);
    b = find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  }
  std::vector<std::size_t> parent;
};

keep_facts facts_of(const store::item& it) {
  keep_facts f;
  f.id = it.id;
  f.pixels = static_cast<std::int64_t>(it.width) * it.height;
  f.created_at = it.created_at;
  if (auto v = it.vectors.find(std::string(fine_space)); v != it.vectors.end() && image::is_fine_signature(v->second)) {
    f.lossless = v->second[2] != 0.0f;
    f.file_bytes = v->second[3];
  }
  return f;
}

group_input input_of(const store::item& it) {
  group_input in;
  in.facts = facts_of(it);
  in.source = it.source;
  in.content_hash = it.content_hash;
  in.width = it.width;
  in.height = it.height;
  if (auto v = it.vectors.find(std::string(signature_space)); v != it.vectors.end()) in.signature = v->second;
  if (auto v = it.vectors.find(std::string(fine_space)); v != it.vectors.end() && image::is_fine_signature(v->second))
    in.fine = v->second;
  return in;
}

bool identical(const group_input& a, const group_input& b) {
  if (!a.content_hash.empty() && a.content_hash == b.content_hash) return true;
  if (a.width != b.width || a.height != b.height || a.signature.empty() || a.fine.empty()) return false;
  return a.signature == b.signature && a.fine == b.fine;
}

float signature_score(const group_input& a, const group_input& b) {
  if (a.signature.empty() || a.signature.size() != b.signature.size()) return 0.0f;
  float s = dot(a.signature, b.signature);
  if (a.signature.size() == static_cast<std::size_t>(image::signature_dim))
    s = std::max(s, dot(a.signature, image::mirror_signature(b.signature)));
  return image::signature_similarity_from_inner_product(s);
}

}  // namespace

std::vector<keep_criterion> parse_keep_rule(std::string_view text) {
  std::vector<keep_criterion> out;
  std::stringstream ss{std::string(text)};
  for (std::string word; std::getline(ss, word, ',');) {
    word.erase(0, word.find_first_not_of(' '));
    word.erase(word.find_last_not_of(' ') + 1);
    if (word.empty()) continue;
    if (word == "pixels") out.push_back(keep_criterion::pixels);
    else if (word == "lossless") out.push_back(keep_criterion::lossless);
    else if (word == "size") out.push_back(keep_criterion::file_size);
    else if (word == "oldest") out.push_back(keep_criterion::oldest);
    else if (word == "newest") out.push_back(keep_criterion::newest);
    else fail(errc::bad_parameter, "unknown keep rule '{}': use pixels, lossless, size, oldest or newest", word);
  }
  if (out.empty()) fail(errc::bad_parameter, "the keep rule is empty");
  return out;
}

bool keep_first(const keep_facts& a, const keep_facts& b, std::span<const keep_criterion> rule) {
  for (auto c : rule) {
    switch (c) {
      case keep_criterion::pixels:
        if (a.pixels != b.pixels) return a.pixels > b.pixels;
        break;
      case keep_criterion::lossless:
        if (a.lossless != b.lossless) return a.lossless;
        break;
      case keep_criterion::file_size:
        if (a.file_bytes != b.file_bytes) return a.file_bytes > b.file_bytes;
        break;
      case keep_criterion::oldest:
        if (a.created_at != b.created_at) return a.created_at < b.created_at;
        break;
      case keep_criterion::newest:
        if (a.created_at != b.created_at) return a.created_at > b.created_at;
        break;
    }
  }
  return a.id < b.id;
}

std::string_view to_string(member_relation r) noexcept {
  switch (r) {
    case member_relation::keep: return "keep";
    case member_relation::exact: return "exact";
    case member_relation::near_duplicate: return "near_duplicate";
    case member_relation::variant: return "variant";
  }
  return "variant";
}

std::vector<candidate_pair> self_join(std::span<const float> data, int dim, bool mirror,
                                      const index::self_join_options& options, index::self_join_stats* stats) {
  const auto d = static_cast<std::size_t>(dim);
  std::vector<float> mirrored;
  if (mirror) {
    if (dim != image::signature_dim) fail(errc::bad_parameter, "self_join: mirroring needs {}-d signatures, got {}", image::signature_dim, dim);
    const std::size_t rows = options.queries > 0 ? std::min(options.queries, data.size() / d) : data.size() / d;
    mirrored.resize(data.size());
    for (std::size_t i = 0; i < rows; ++i) {
      const auto m = image::mirror_signature(std::vector<float>(data.begin() + static_cast<std::ptrdiff_t>(i * d),
                                                                data.begin() + static_cast<std::ptrdiff_t>((i + 1) * d)));
      std::copy(m.begin(), m.end(), mirrored.begin() + static_cast<std::ptrdiff_t>(i * d));
    }
  }
  return index::similarity_self_join(data, dim, mirrored, options, stats);
}

std::vector<std::vector<std::size_t>> connected_groups(std::size_t n, std::span<const candidate_pair> pairs) {
  union_find uf(n);
  for (const auto& p : pairs) uf.join(p.a, p.b);
  std::map<std::size_t, std::vector<std::size_t>> by_root;
  std::vector<bool> seen(n, false);
  for (const auto& p : pairs) {
    for (auto x : {p.a, p.b}) {
      if (!seen[x]) {
        seen[x] = true;
        by_root[uf.find(x)].push_back(x);
      }
    }
  }
  std::vector<std::vector<std::size_t>> out;
  for (auto& [_, members] : by_root) {
    if (members.size() < 2) continue;
    std::sort(members.begin(), members.end());
    out.push_back(std::move(members));
  }
  return out;
}

std::string group_id_of(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  std::string joined;
  for (const auto& id : ids) {
    joined += id;
    joined += '\n';
  }
  return "g" + sha256_hex(joined).substr(0, 16);
}

duplicate_group analyse_group(std::span<const group_input> members, std::span<const candidate_pair> pairs,
                              std::span<const keep_criterion> rule) {
  const std::size_t n = members.size();
  duplicate_group g;
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return keep_first(members[a].facts, members[b].facts, rule); });
  const std::size_t keep = order.front();

  // Every member with a fine grid, aligned into the kept item's frame (or the first one that has a grid).
  std::vector<std::optional<image::fine_alignment>> aligned(n);
  std::optional<image::fine_grid> frame;
  for (std::size_t i : order) {
    if (!members[i].fine.empty()) {
      frame = image::unpack_fine(members[i].fine);
      break;
    }
  }
  if (frame) {
    for (std::size_t i = 0; i < n; ++i) {
      if (!members[i].fine.empty()) aligned[i] = image::align_fine(image::unpack_fine(members[i].fine), *frame);
    }
  }
  // Anchors, best first; each member joins the anchor closest in the anchors' own disagreement region.
  std::vector<std::size_t> anchor_of(n, n);
  std::vector<float> distance(n, -1.0f);
  std::vector<std::size_t> anchors;
  for (std::size_t i : order) {
    if (anchors.empty()) {
      anchors.push_back(i);
      anchor_of[i] = i;
      distance[i] = 0;
      continue;
    }
    if (identical(members[i], members[anchors.front()]) || !aligned[i]) {
      // Without a fine grid only the first stage speaks: a copy of the first anchor it is identical
      // to, else of the kept item.
      std::size_t target = anchors.front();
      for (auto a : anchors) {
        if (identical(members[i], members[a])) {
          target = a;
          break;
        }
      }
      anchor_of[i] = target;
      continue;
    }
    // The anchors aligned into this member's own frame, compared where they differ among themselves
    // (image::rank_fine_candidates).
    std::vector<std::size_t> with_grid;
    std::vector<image::fine_grid> grids;
    for (auto a : anchors) {
      if (aligned[a]) {
        with_grid.push_back(a);
        grids.push_back(image::unpack_fine(members[a].fine));
      }
    }
    std::size_t best = n;
    float best_d = 0;
    for (auto a : anchors) {
      if (identical(members[i], members[a])) best = a;
    }
    if (best == n && !grids.empty()) {
      const auto d = image::rank_fine_candidates(image::unpack_fine(members[i].fine), grids);
      for (std::size_t k = 0; k < d.size(); ++k) {
        if (std::isfinite(d[k]) && (best == n || d[k] < best_d)) {
          best = with_grid[k];
          best_d = d[k];
        }
      }
    }
    if (best != n && (identical(members[i], members[best]) || !local_change(*aligned[i], *aligned[best]))) {
      anchor_of[i] = best;
      distance[i] = best_d;
    } else {
      anchors.push_back(i);
      anchor_of[i] = i;
      distance[i] = 0;
    }
  }

  std::vector<std::string> ids;
  for (const auto& m : members) ids.push_back(m.facts.id);
  g.id = group_id_of(ids);
  g.keep = members[keep].facts.id;
  for (std::size_t i : order) {
    group_member m;
    m.id = members[i].facts.id;
    m.source = members[i].source;
    m.copy_of = members[anchor_of[i]].facts.id;
    m.fine_distance = aligned[i] ? distance[i] : -1.0f;
    if (i == keep) {
      m.relation = member_relation::keep;
      m.score = 1.0f;
    } else {
      m.score = signature_score(members[i], members[keep]);
      if (anchor_of[i] != anchor_of[keep]) {
        m.relation = member_relation::variant;
      } else {
        m.relation = identical(members[i], members[keep]) ? member_relation::exact : member_relation::near_duplicate;
      }
    }
    g.members.push_back(std::move(m));
  }
  // Pairs re-indexed to the members' output order.
  std::vector<std::size_t> out_pos(n);
  for (std::size_t k = 0; k < n; ++k) out_pos[order[k]] = k;
  for (const auto& p : pairs) g.pairs.push_back({out_pos[p.a], out_pos[p.b], p.score});
  return g;
}

dedup_report find_duplicates(const search_service& service, const dedup_options& options) {
  const auto started = std::chrono::steady_clock::now();
  dedup_report report;
  report.space = options.space.empty() ? std::string(signature_space) : options.space;
  const bool on_signature = report.space == signature_space;
  report.threshold = options.threshold.value_or(on_signature ? image::near_duplicate_similarity : 0.95f);
  if (!(report.threshold > 0.0f && report.threshold <= 1.0f))
    fail(errc::bad_parameter, "threshold must be in (0, 1], got {}", report.threshold);
  if (options.neighbours < 1 || options.neighbours > 256)
    fail(errc::bad_parameter, "neighbours must be in [1, 256], got {}", options.neighbours);
  const auto rule = options.keep_rule.empty() ? parse_keep_rule(default_keep_rule) : options.keep_rule;
  const auto& spaces = service.spaces();
  if (!spaces.has(report.space)) fail(errc::not_found, "unknown vector space '{}'", report.space);

  std::vector<std::string> ids;
  std::vector<float> data;
  int dim = 0;
  // Scores are cosine similarities: rows are normalised here (signatures already are), and rows that
  // cannot be (zero, not finite, another dimension) take no part, as in the space's index.
  service.store().for_each_vector(report.space, [&](const std::string& id, std::span<const float> v) {
    if (dim == 0) dim = static_cast<int>(v.size());
    if (static_cast<int>(v.size()) != dim) return;
    double norm = 0.0;
    for (float x : v) norm += static_cast<double>(x) * x;
    if (!(norm > 0.0) || !std::isfinite(norm)) return;
    const auto inv = static_cast<float>(1.0 / std::sqrt(norm));
    ids.push_back(id);
    for (float x : v) data.push_back(x * inv);
  });
  report.items = ids.size();
  if (ids.empty()) return report;
  index::self_join_options join;
  join.threshold = report.threshold;
  join.neighbours = options.neighbours;
  auto pairs = self_join(data, dim, on_signature && dim == image::signature_dim, join);
  report.candidate_pairs = pairs.size();

  // Load what the second stage needs for every item in a pair.
  std::map<std::size_t, group_input> inputs;
  for (const auto& p : pairs) {
    for (auto x : {p.a, p.b}) {
      if (inputs.count(x)) continue;
      if (auto it = service.store().get(ids[x])) inputs.emplace(x, input_of(*it));
    }
  }
  // Second stage: pairs whose fine grids do not align are different drawings.
  std::vector<candidate_pair> kept;
  for (const auto& p : pairs) {
    auto a = inputs.find(p.a);
    auto b = inputs.find(p.b);
    if (a == inputs.end() || b == inputs.end()) continue;  // deleted meanwhile
    if (!a->second.fine.empty() && !b->second.fine.empty()) {
      const auto al = image::align_fine(image::unpack_fine(a->second.fine), image::unpack_fine(b->second.fine));
      if (al.error > image::fine_different_above) {
        ++report.fine_rejected;
        continue;
      }
    }
    kept.push_back(p);
  }
  for (const auto& members : connected_groups(ids.size(), kept)) {
    std::vector<group_input> in;
    std::map<std::size_t, std::size_t> local;
    for (auto m : members) {
      local[m] = in.size();
      in.push_back(inputs.at(m));
    }
    std::vector<candidate_pair> group_pairs;
    for (const auto& p : kept) {
      if (local.count(p.a) && local.count(p.b)) group_pairs.push_back({local[p.a], local[p.b], p.score});
    }
    report.groups.push_back(analyse_group(in, group_pairs, rule));
  }
  std::sort(report.groups.begin(), report.groups.end(), [](const auto& a, const auto& b) {
    return a.members.size() != b.members.size() ? a.members.size() > b.members.size() : a.id < b.id;
  });
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

json to_json(const dedup_report& report) {
  json groups = json::array();
  for (const auto& g : report.groups) {
    json members = json::array();
    for (const auto& m : g.members) {
      json j{{"id", m.id},
             {"source", m.source},
             {"relation", to_string(m.relation)},
             {"score", m.score},
             {"copy_of", m.copy_of}};
      j["fine_distance"] = m.fine_distance >= 0 ? json(m.fine_distance) : json(nullptr);
      members.push_back(std::move(j));
    }
    json pairs = json::array();
    for (const auto& p : g.pairs) pairs.push_back({{"a", g.members[p.a].id}, {"b", g.members[p.b].id}, {"score", p.score}});
    groups.push_back({{"id", g.id}, {"keep", g.keep}, {"members", std::move(members)}, {"pairs", std::move(pairs)}});
  }
  return {{"space", report.space},
          {"threshold", report.threshold},
          {"items", report.items},
          {"candidate_pairs", report.candidate_pairs},
          {"fine_rejected", report.fine_rejected},
          {"seconds", report.seconds},
          {"groups", std::move(groups)}};
}

namespace {

// Merges `from` into `into`: tag union (highest score per tagger and tag), scores and metadata keys
// `into` lacks, and a provenance record in metadata.merged_from.
void merge_into(store::item& into, const store::item& from) {
  for (const auto& [tagger, tags] : from.tags) {
    auto& target = into.tags[tagger];
    for (const auto& [tag, score] : tags) {
      auto it = std::find_if(target.begin(), target.end(), [&](const auto& t) { return t.first == tag; });
      if (it == target.end()) target.emplace_back(tag, score);
      else it->second = std::max(it->second, score);
    }
  }
  for (const auto& [scorer, values] : from.scores) {
    auto& target = into.scores[scorer];
    for (const auto& [name, value] : values) target.try_emplace(name, value);
  }
  if (!into.metadata.is_object()) into.metadata = json::object();
  if (from.metadata.is_object()) {
    for (const auto& [key, value] : from.metadata.items()) {
      if (key == "merged_from") continue;
      if (!into.metadata.contains(key)) into.metadata[key] = value;
    }
  }
  auto& provenance = into.metadata["merged_from"];
  if (!provenance.is_array()) provenance = json::array();
  json record{{"id", store::item_id_to_json(from)},
              {"source", from.source},
              {"content_hash", from.content_hash},
              {"width", from.width},
              {"height", from.height},
              {"created_at", from.created_at},
              {"metadata", from.metadata.is_object() ? from.metadata : json::object()}};
  provenance.push_back(std::move(record));
  // The removed item's own provenance travels too (a chain of resolves keeps every origin).
  if (from.metadata.is_object() && from.metadata.contains("merged_from") && from.metadata["merged_from"].is_array()) {
    for (const auto& r : from.metadata["merged_from"]) provenance.push_back(r);
  }
}

}  // namespace

resolve_plan plan_resolve(const search_service& service, const duplicate_group& group,
                          const std::optional<std::string>& keep_override) {
  resolve_plan plan;
  plan.group = group.id;
  std::map<std::string, std::vector<const group_member*>> by_anchor;
  for (const auto& m : group.members) by_anchor[m.copy_of].push_back(&m);
  if (keep_override) {
    const bool member = std::any_of(group.members.begin(), group.members.end(),
                                    [&](const auto& m) { return m.id == *keep_override; });
    if (!member) fail(errc::bad_parameter, "'{}' is not a member of group {}", *keep_override, group.id);
  }
  for (const auto& [anchor, copies] : by_anchor) {
    if (copies.size() < 2) continue;
    // Members are in keep order, so the first copy of each anchor is the best one.
    const group_member* keeper = copies.front();
    if (keep_override) {
      for (const auto* c : copies) {
        if (c->id == *keep_override) keeper = c;
      }
    }
    auto kept = service.store().get(keeper->id);
    if (!kept) fail(errc::conflict, "item {} of group {} is gone; list the duplicates again", keeper->id, group.id);
    resolve_plan::merge merge;
    merge.kept = std::move(*kept);
    for (const auto* c : copies) {
      if (c == keeper) continue;
      auto removed = service.store().get(c->id);
      if (!removed) fail(errc::conflict, "item {} of group {} is gone; list the duplicates again", c->id, group.id);
      merge_into(merge.kept, *removed);
      merge.removed.push_back(std::move(*removed));
    }
    plan.merges.push_back(std::move(merge));
  }
  return plan;
}

json apply_resolve(search_service& service, std::span<const resolve_plan> plans, const resolve_options& options) {
  std::vector<store::item> kept;
  std::vector<std::string> removed;
  std::set<std::string> kept_sources;
  for (const auto& p : plans) {
    for (const auto& m : p.merges) {
      kept.push_back(m.kept);
      kept_sources.insert(m.kept.source);
      for (const auto& r : m.removed) removed.push_back(r.id);
    }
  }
  if (!options.dry_run && !kept.empty()) {
    // Test hook: ACG2VEC_RESOLVE_STALL_MS holds the transaction open (after its writes, before the
    // commit) and says so on stderr, so that a test can SIGKILL the process exactly there.
    std::function<void()> stall;
    if (const char* ms = std::getenv("ACG2VEC_RESOLVE_STALL_MS"); ms != nullptr && *ms != '\0') {
      const long wait = std::strtol(ms, nullptr, 10);
      stall = [wait] {
        std::fprintf(stderr, "resolve: transaction open\n");
        std::fflush(stderr);
        std::this_thread::sleep_for(std::chrono::milliseconds(wait));
      };
    }
    service.commit_merge(kept, removed, stall);
  }

  json groups = json::array();
  for (const auto& p : plans) {
    json merges = json::array();
    for (const auto& m : p.merges) {
      json gone = json::array();
      for (const auto& r : m.removed) {
        bool deleted = false;
        std::string note;
        if (options.delete_files && !r.source.empty() && kept_sources.count(r.source) == 0) {
          std::error_code ec;
          const std::filesystem::path path(r.source);
          if (path.is_absolute() && std::filesystem::is_regular_file(path, ec)) {
            if (options.dry_run) {
              note = "would delete";
            } else if (std::filesystem::remove(path, ec)) {
              deleted = true;
            } else {
              note = ec ? ec.message() : "not deleted";
            }
          } else {
            note = "not a local file";
          }
        }
        json j{{"id", store::item_id_to_json(r)}, {"source", r.source}, {"file_deleted", deleted}};
        if (!note.empty()) j["file_note"] = note;
        gone.push_back(std::move(j));
      }
      merges.push_back({{"id", store::item_id_to_json(m.kept)}, {"source", m.kept.source}, {"removed", std::move(gone)}});
    }
    groups.push_back({{"group", p.group}, {"kept", std::move(merges)}});
  }
  return {{"dry_run", options.dry_run}, {"groups", std::move(groups)}};
}

}  // namespace acg2vec::search