#include "core/source_dir.h"

namespace acg2vec {

const char* source_dir() noexcept { return ACG2VEC_SOURCE_DIR_PATH; }

}  // namespace acg2vec
