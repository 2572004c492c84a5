#include "core/json_guard.h"

#include "core/error.h"

namespace acg2vec {

nlohmann::json parse_json_guarded(std::string_view text, std::string_view what, const json_limits& limits) {
  if (text.size() > limits.max_bytes) {
    fail(errc::too_large, "{} is {} bytes of JSON; the limit is {} bytes", what, text.size(), limits.max_bytes);
  }
  auto guard = [&limits, what](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if ((event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start) &&
        depth >= limits.max_depth) {
      throw error(errc::bad_parameter, fmt::format("{} is JSON nested deeper than {} levels", what, limits.max_depth));
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), guard);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number that does not fit a double ("1e999").
    fail(errc::bad_parameter, "{} is not valid JSON: {}", what, e.what());
  }
}

}  // namespace acg2vec
