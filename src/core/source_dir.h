#pragma once
// The source checkout this binary was built from (the bundled web page, tools/, test data).

namespace acg2vec {

/// @brief Absolute path of the source tree at build time.
const char* source_dir() noexcept;

}  // namespace acg2vec
