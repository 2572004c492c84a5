#pragma once
// What several unit test files need: scratch folders, a typical stored item, the error code a
// call throws.

#include "core/error.h"
#include "store/item_store.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace acg2vec::test_support {

/// @brief An empty folder under the build tree's test work dir: <work>/<group>/<name>.
std::filesystem::path fresh_dir(std::string_view group, std::string_view name);

/// @brief An item with a source, hash, size and metadata (no tags or vectors), created at `created`.
store::item make_item(const std::string& id, std::int64_t created = 0);

/// @brief The errc of the acg2vec::error that f throws; a test failure (and errc::internal) when
/// it throws none.
errc code_of(const std::function<void()>& f);

}  // namespace acg2vec::test_support
