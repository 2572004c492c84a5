#pragma once
// Duplicate and variant groups over the whole collection, and resolving them.
//
// Grouping, in two stages:
//  1. A similarity self-join over a stored vector space (the perceptual signature by default): each
//     vector's best k neighbours at or above the threshold (on the signature also those of its
//     mirrored form) are candidates. The join clusters the vectors and compares each one only with
//     the few clusters nearest to it, as matrix products (index/similarity_join.h); up to 30,000
//     items it compares all pairs. BENCHMARKS.md, "Collection: duplicate grouping", has its scaling.
//  2. Candidates whose fine grids (image/fine_signature.h) do not align, i.e. a different drawing,
//     are dropped; the rest are joined into groups (connected components).
// Within a group, members are taken best first by the keep rule. The first is an "anchor"; each next
// member is placed between every two anchors where they differ (image::rank_fine_candidates), and
// joins the closest one as its copy unless even that one differs locally (then it is a variant and
// becomes an anchor itself). A member's relation to the group's kept item is then:
// exact (same content hash, or same size with identical signature and fine grid), near_duplicate
// (a copy of the same anchor) or variant.
//
// The keep rule orders copies: by default the largest pixel count, then a lossless file over a lossy
// one, then the larger file, then the oldest item, then the smaller id.
//
// Resolve (keep-best): within each anchor's copies, the best is kept and the others are removed from
// the collection; their tags (union, highest score), scores and metadata keys the kept item lacks are
// merged into it, and metadata.merged_from lists each removed item's id, source, content hash and
// metadata (provenance). Variants are never removed. The store change is one transaction.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "index/similarity_join.h"
#include "index/vector_index.h"
#include "store/item_store.h"

namespace acg2vec::search {

class search_service;

/// Name of the per-item fine grid (stored with the item's vectors; no index is built on it).
inline constexpr std::string_view fine_space = "signature-fine";

enum class keep_criterion { pixels, lossless, file_size, oldest, newest };
inline constexpr std::string_view default_keep_rule = "pixels,lossless,size,oldest";

/// @brief Parses "pixels,lossless,size,oldest" (any order, any subset; "newest" instead of "oldest");
/// errc::bad_parameter names an unknown word.
std::vector<keep_criterion> parse_keep_rule(std::string_view text);

/// What the keep rule looks at.
struct keep_facts {
  std::string id;
  std::int64_t pixels = 0;
  bool lossless = false;
  double file_bytes = 0;
  std::int64_t created_at = 0;
};

/// @brief True when a is the better copy to keep under rule (ties end on the smaller id).
bool keep_first(const keep_facts& a, const keep_facts& b, std::span<const keep_criterion> rule);

enum class member_relation { keep, exact, near_duplicate, variant };
std::string_view to_string(member_relation r) noexcept;

/// A first-stage pair (indexes into the caller's row list, a < b).
using candidate_pair = index::row_pair;

/// @brief The first stage: the similarity self-join over n vectors (rows of data, dim floats each),
/// each row's best `options.neighbours` rows scoring >= options.threshold, each pair once. With mirror
/// set (perceptual signatures), each row also asks with the signature of its mirrored image.
/// options.queries > 0 asks only for the first rows' neighbours (a measured sample; pairs with every
/// row still count). The join runs on the vectors given, not on the space's search index, so it is
/// the same on every index backend.
std::vector<candidate_pair> self_join(std::span<const float> data, int dim, bool mirror,
                                      const index::self_join_options& options,
                                      index::self_join_stats* stats = nullptr);

/// @brief Connected components of n nodes under pairs, only components of two or more, each sorted.
std::vector<std::vector<std::size_t>> connected_groups(std::size_t n, std::span<const candidate_pair> pairs);

/// One item as the group analysis sees it.
struct group_input {
  keep_facts facts;
  std::string source;
  std::string content_hash;
  int width = 0;
  int height = 0;
  std::vector<float> signature;      ///< may be empty
  std::vector<float> fine;           ///< packed fine grid, may be empty (items stored before it existed)
};

struct group_member {
  std::string id;
  std::string source;
  member_relation relation = member_relation::variant;
  float score = 0.0f;          ///< first-stage similarity to the kept item (signature cosine, mirror included)
  float fine_distance = -1.0f; ///< fine-stage distance to its anchor (-1: no fine grid)
  std::string copy_of;         ///< the anchor whose copy it is (itself for an anchor)
};

struct duplicate_group {
  std::string id;    ///< stable: derived from the sorted member ids
  std::string keep;  ///< the best copy of the whole group
  std::vector<group_member> members;
  std::vector<candidate_pair> pairs;  ///< first-stage pairs inside the group (indexes into members)
};

/// @brief Relations inside one group (members in any order; pairs index into members).
duplicate_group analyse_group(std::span<const group_input> members, std::span<const candidate_pair> pairs,
                              std::span<const keep_criterion> rule);

/// @brief The stable id of a group with these member ids.
std::string group_id_of(std::vector<std::string> ids);

struct dedup_options {
  std::string space;               ///< empty: the signature space
  std::optional<float> threshold;  ///< default: 0.75 on the signature, 0.95 on other spaces
  std::size_t neighbours = 16;
  std::vector<keep_criterion> keep_rule;  ///< empty: default_keep_rule
};

struct dedup_report {
  std::string space;
  float threshold = 0.0f;
  std::size_t items = 0;
  std::size_t candidate_pairs = 0;
  std::size_t fine_rejected = 0;
  double seconds = 0;
  std::vector<duplicate_group> groups;
};

/// @brief Groups the whole collection (see the header comment).
dedup_report find_duplicates(const search_service& service, const dedup_options& options);

/// @brief The report as the JSON: {"groups": [{"id", "keep", "members": [{"id", "source",
/// "relation", "score", ...}], "pairs": [...]}], ...}.
nlohmann::json to_json(const dedup_report& report);

/// What resolving one group does (or would do).
struct resolve_plan {
  std::string group;
  struct merge {
    store::item kept;                  ///< as it will be written
    std::vector<store::item> removed;  ///< as they were
  };
  std::vector<merge> merges;
};

/// @brief The merges of keep-best for a group; keep_override, when set, is kept as its anchor's copy
/// instead of the rule's choice (errc::bad_parameter when it is not a member).
resolve_plan plan_resolve(const search_service& service, const duplicate_group& group,
                          const std::optional<std::string>& keep_override = std::nullopt);

struct resolve_options {
  bool dry_run = false;
  bool delete_files = false;  ///< also delete the removed items' local source files
};

/// @brief Applies plans in ONE store transaction (all or nothing), then updates the indexes; returns
/// {"dry_run", "groups": [{"group", "kept": [{"id", "removed": [{"id", "source", "file_deleted"}]}]}]}.
nlohmann::json apply_resolve(search_service& service, std::span<const resolve_plan> plans,
                             const resolve_options& options);

}  // namespace acg2vec::search