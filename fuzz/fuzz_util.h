#pragma once
// Helpers shared by the fuzz targets.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

namespace acg2vec::fuzz {

/// @brief A per-process scratch folder under the system temp dir (created on first use).
const std::filesystem::path& scratch_dir();

/// @brief Writes bytes to scratch_dir()/name, replacing the file; returns its path.
std::filesystem::path write_scratch(std::string_view name, std::string_view bytes);

/// @brief Quietens logging once (spdlog off) so that fuzzing is not slowed down by log lines.
void quiet_logs();

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace acg2vec::fuzz

#include <nlohmann/json_fwd.hpp>

namespace acg2vec::fuzz {

/// @brief Runs the routes' nested-JSON-to-tensor conversion (models/postprocess.h) and returns the
/// rank. Kept in its own file: it is the only target code that needs libtorch's headers.
std::int64_t tensor_rank_from_json(const nlohmann::json& value, bool integer);

}  // namespace acg2vec::fuzz
