#pragma once
// Chooses where vector spaces live from one address (--index / ACG2VEC_INDEX): the embedded
// FAISS indexes under --data-dir, or a Milvus server.

#include "index/vector_spaces.h"

#include <string>

namespace acg2vec::index {

/// @brief "" or "faiss": an empty factory (FAISS); "milvus://host:port[?...]" (see
/// parse_milvus_uri): one Milvus collection per space. Throws bad_parameter for anything else.
remote_index_factory index_factory(const std::string& uri);

}  // namespace acg2vec::index
