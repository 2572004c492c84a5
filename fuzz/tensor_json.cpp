#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "models/postprocess.h"

namespace acg2vec::fuzz {

std::int64_t tensor_rank_from_json(const nlohmann::json& value, bool integer) {
  auto t = models::tensor_from_json(value, integer ? at::kLong : at::kFloat);
  return t.dim();
}

}  // namespace acg2vec::fuzz
