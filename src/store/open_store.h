#pragma once
// Chooses the item store backend from one address, so the service and every command take the
// same --store option (ACG2VEC_STORE): the embedded SQLite file or a Redis/Tendis server.

#include "store/item_store.h"

#include <filesystem>
#include <memory>
#include <string>

namespace acg2vec::store {

/// @brief Opens "" or "sqlite" (data_dir/acg2vec.db), "sqlite:PATH", or a redis:// address
/// (see parse_redis_uri). Throws bad_parameter for anything else, unavailable when unreachable.
std::unique_ptr<item_store> open_store(const std::string& uri, const std::filesystem::path& data_dir);

/// @brief The address with any password replaced by "***", for logs.
std::string redact_store_uri(const std::string& uri);

}  // namespace acg2vec::store
