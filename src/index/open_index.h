#pragma once
// Chooses where vector spaces live from one address (--index / ACG2VEC_INDEX): the embedded
// FAISS indexes under --data-dir, or a Milvus server.

#include "index/faiss_index.h"
#include "index/vector_index.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <memory>
#include <string>

namespace acg2vec::index {

struct space_config {
  std::string name;
  int dim = 0;
  metric space_metric = metric::inner_product;
  faiss_options options;
};

/// What a space holds now (for stats and logs).
struct space_info {
  std::string name;
  int dim = 0;
  metric space_metric = metric::inner_product;
  index_kind kind = index_kind::flat;
  std::size_t size = 0;
  std::size_t positions = 0;
};

/// Makes a space's index on an external engine (e.g. Milvus) instead of FAISS. The engine keeps
/// its own data: nothing is saved under data_dir, and define() refills it from the store only
/// when its size disagrees with the store.
using remote_index_factory = std::function<std::unique_ptr<vector_index>(const space_config&)>;

/// Where vector spaces live, from --index / ACG2VEC_INDEX.
struct index_address {
  /// Set for an external engine (milvus://...); empty for the embedded FAISS indexes.
  remote_index_factory remote;
  /// FAISS parameters named in the address ("faiss?kind=hnsw&m=32..."); unset for "" or "faiss",
  /// which keep the parameters saved with the index (or the defaults).
  std::optional<faiss_options> faiss;
};

/// @brief Parses an index address:
/// - "" or "faiss": FAISS files under --data-dir/index, with the parameters saved there;
/// - "faiss?kind=auto|flat|hnsw|ivfpq&m=&ef_construction=&ef_search=&nlist=&nprobe=&refine=&hnsw_threshold=&min_train=":
///   FAISS with these parameters (m is HNSW's M for kind=hnsw/auto and PQ's bytes per code for
///   kind=ivfpq, as in FAISS's own index names); the rest keep their defaults;
/// - "milvus://host:port[?...]" (see parse_milvus_uri): one Milvus collection per space.
/// Anything else, an unknown key or an out-of-range value is errc::bad_parameter.
index_address parse_index_address(const std::string& uri);

/// @brief The FAISS parameters as saved beside the indexes, and back (unknown keys refused).
nlohmann::json faiss_options_to_json(const faiss_options& o);
faiss_options faiss_options_from_json(const nlohmann::json& j);
/// @brief One line for logs and stats: "hnsw (m=32, ef_construction=40, ef_search=128)".
std::string describe(const faiss_options& o);

}  // namespace acg2vec::index
