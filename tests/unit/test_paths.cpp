#include "test_paths.h"

namespace acg2vec::testing_paths {

const char* data_dir() noexcept { return ACG2VEC_TEST_DATA_PATH; }
const char* work_dir() noexcept { return ACG2VEC_TEST_WORK_PATH; }

}  // namespace acg2vec::testing_paths
