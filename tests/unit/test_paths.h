#pragma once
// Paths the unit tests use, as functions: the absolute paths of this checkout live only in
// test_paths.cpp. Included into every test file by tests/CMakeLists.txt.

#include "core/source_dir.h"

namespace acg2vec::testing_paths {
const char* data_dir() noexcept;  ///< tests/data
const char* work_dir() noexcept;  ///< a scratch folder in the build tree
}  // namespace acg2vec::testing_paths

#define ACG2VEC_TEST_DATA (::acg2vec::testing_paths::data_dir())
#define ACG2VEC_TEST_WORK (::acg2vec::testing_paths::work_dir())
#define ACG2VEC_SOURCE_DIR (::acg2vec::source_dir())
