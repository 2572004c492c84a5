#include "index/open_index.h"

#include "core/error.h"
#include "core/uri.h"
#include "index/milvus_index.h"

#include <fmt/format.h>

#include <charconv>
#include <map>
#include <mutex>

namespace acg2vec::index {

namespace {

remote_index_factory milvus_factory(const std::string& uri) {
  auto options = std::make_shared<milvus_options>(parse_milvus_uri(uri));
  // Which space each collection serves in this process. The name mapping is injective, so two
  // spaces cannot meet here; the check keeps it that way if the mapping ever changes.
  struct claims {
    std::mutex mutex;
    std::map<std::string, std::string> space_of;
  };
  auto taken = std::make_shared<claims>();
  return [options, taken](const space_config& config) -> std::unique_ptr<vector_index> {
    {
      const auto collection = milvus_collection_name(options->collection_prefix, config.name);
      std::lock_guard lock(taken->mutex);
      const auto [it, inserted] = taken->space_of.try_emplace(collection, config.name);
      if (!inserted && it->second != config.name)
        fail(errc::conflict, "vector spaces '{}' and '{}' would share the Milvus collection {}", it->second,
             config.name, collection);
    }
    return std::make_unique<milvus_index>(*options, config.name, config.dim, config.space_metric);
  };
}

long long whole_number(std::string_view uri, std::string_view key, std::string_view value, long long lo, long long hi) {
  long long v = 0;
  const auto r = std::from_chars(value.data(), value.data() + value.size(), v);
  if (r.ec != std::errc() || r.ptr != value.data() + value.size() || v < lo || v > hi)
    fail(errc::bad_parameter, "index address '{}': {} must be a whole number from {} to {}", uri, key, lo, hi);
  return v;
}

index_kind kind_named(std::string_view uri, std::string_view name) {
  if (name == "auto" || name == "automatic") return index_kind::automatic;
  if (name == "flat") return index_kind::flat;
  if (name == "hnsw") return index_kind::hnsw;
  if (name == "ivfpq" || name == "ivf_pq") return index_kind::ivf_pq;
  fail(errc::bad_parameter, "index address '{}': kind must be auto, flat, hnsw or ivfpq, not '{}'", uri, name);
}

faiss_options parse_faiss_query(const std::string& uri, const uri_parts& parts) {
  faiss_options o;
  for (const auto& [key, value] : parts.query) {
    if (key == "kind") o.kind = kind_named(uri, value);
  }
  const bool pq = o.kind == index_kind::ivf_pq;
  const bool graph = o.kind == index_kind::hnsw || o.kind == index_kind::automatic;
  auto only_for = [&](std::string_view key, bool allowed, std::string_view kinds) {
    if (!allowed) fail(errc::bad_parameter, "index address '{}': {} applies to kind={} only", uri, key, kinds);
  };
  for (const auto& [key, value] : parts.query) {
    if (key == "kind") continue;
    if (key == "m") {
      // HNSW's M (links per node) or PQ's bytes per code, as FAISS names both.
      only_for(key, graph || pq, "hnsw, auto or ivfpq");
      if (pq) {
        o.ivf_pq_m = static_cast<std::size_t>(whole_number(uri, key, value, 1, 4096));
      } else {
        o.hnsw_m = static_cast<int>(whole_number(uri, key, value, 2, 512));
      }
    } else if (key == "ef_construction") {
      only_for(key, graph, "hnsw or auto");
      o.hnsw_ef_construction = static_cast<int>(whole_number(uri, key, value, 1, 1 << 16));
    } else if (key == "ef_search") {
      only_for(key, graph, "hnsw or auto");
      o.hnsw_ef_search = static_cast<int>(whole_number(uri, key, value, 1, 1 << 16));
    } else if (key == "hnsw_threshold") {
      only_for(key, o.kind == index_kind::automatic, "auto");
      o.auto_hnsw_threshold = static_cast<std::size_t>(whole_number(uri, key, value, 1, 1LL << 40));
    } else if (key == "nlist") {
      only_for(key, pq, "ivfpq");
      o.ivf_nlist = static_cast<std::size_t>(whole_number(uri, key, value, 1, 1 << 20));
    } else if (key == "nprobe") {
      only_for(key, pq, "ivfpq");
      o.ivf_nprobe = static_cast<int>(whole_number(uri, key, value, 1, 1 << 20));
    } else if (key == "refine") {
      only_for(key, pq, "ivfpq");
      o.ivf_refine_factor = static_cast<float>(whole_number(uri, key, value, 1, 1024));
    } else if (key == "min_train") {
      only_for(key, pq, "ivfpq");
      o.ivf_min_train = static_cast<std::size_t>(whole_number(uri, key, value, 1, 1LL << 40));
    } else {
      fail(errc::bad_parameter,
           "index address '{}': unknown option '{}' (kind, m, ef_construction, ef_search, hnsw_threshold, nlist, "
           "nprobe, refine, min_train)",
           uri, key);
    }
  }
  return o;
}

}  // namespace

index_address parse_index_address(const std::string& uri) {
  if (uri.empty() || uri == "faiss") return {};
  if (uri.starts_with("milvus://")) return {milvus_factory(uri), std::nullopt};
  if (uri.starts_with("faiss?")) return {{}, parse_faiss_query(uri, parse_uri(uri, "index", 0))};
  fail(errc::bad_parameter, "unknown index '{}': use faiss, faiss?kind=... or milvus://host:port",
       uri.substr(0, uri.find('?')));
}

nlohmann::json faiss_options_to_json(const faiss_options& o) {
  return {{"kind", to_string(o.kind)},
          {"hnsw_m", o.hnsw_m},
          {"hnsw_ef_construction", o.hnsw_ef_construction},
          {"hnsw_ef_search", o.hnsw_ef_search},
          {"auto_hnsw_threshold", o.auto_hnsw_threshold},
          {"ivf_min_train", o.ivf_min_train},
          {"ivf_nlist", o.ivf_nlist},
          {"ivf_pq_m", o.ivf_pq_m},
          {"ivf_nprobe", o.ivf_nprobe},
          {"ivf_refine_factor", o.ivf_refine_factor}};
}

faiss_options faiss_options_from_json(const nlohmann::json& j) {
  if (!j.is_object()) fail(errc::bad_parameter, "saved FAISS parameters are not a JSON object");
  faiss_options o;
  try {
    for (const auto& [key, value] : j.items()) {
      if (key == "kind") o.kind = parse_index_kind(value.get<std::string>());
      else if (key == "hnsw_m") o.hnsw_m = value.get<int>();
      else if (key == "hnsw_ef_construction") o.hnsw_ef_construction = value.get<int>();
      else if (key == "hnsw_ef_search") o.hnsw_ef_search = value.get<int>();
      else if (key == "auto_hnsw_threshold") o.auto_hnsw_threshold = value.get<std::size_t>();
      else if (key == "ivf_min_train") o.ivf_min_train = value.get<std::size_t>();
      else if (key == "ivf_nlist") o.ivf_nlist = value.get<std::size_t>();
      else if (key == "ivf_pq_m") o.ivf_pq_m = value.get<std::size_t>();
      else if (key == "ivf_nprobe") o.ivf_nprobe = value.get<int>();
      else if (key == "ivf_refine_factor") o.ivf_refine_factor = value.get<float>();
      else fail(errc::bad_parameter, "saved FAISS parameters: unknown key '{}'", key);
    }
  } catch (const nlohmann::json::exception& e) {
    fail(errc::bad_parameter, "saved FAISS parameters: {}", e.what());
  }
  return o;
}

std::string describe(const faiss_options& o) {
  switch (o.kind) {
    case index_kind::flat:
      return "flat (exact)";
    case index_kind::hnsw:
      return fmt::format("hnsw (m={}, ef_construction={}, ef_search={})", o.hnsw_m, o.hnsw_ef_construction,
                         o.hnsw_ef_search);
    case index_kind::automatic:
      return fmt::format("auto (flat, hnsw from {} vectors: m={}, ef_construction={}, ef_search={})",
                         o.auto_hnsw_threshold, o.hnsw_m, o.hnsw_ef_construction, o.hnsw_ef_search);
    case index_kind::ivf_pq:
      return fmt::format("ivfpq (nlist={}, m={}, nprobe={}, refine={}, exact below {} vectors)",
                         o.ivf_nlist == 0 ? std::string("auto") : std::to_string(o.ivf_nlist),
                         o.ivf_pq_m == 0 ? std::string("auto") : std::to_string(o.ivf_pq_m),
                         o.ivf_nprobe == 0 ? std::string("auto") : std::to_string(o.ivf_nprobe),
                         o.ivf_refine_factor, o.ivf_min_train);
  }
  return "unknown";
}

}  // namespace acg2vec::index
