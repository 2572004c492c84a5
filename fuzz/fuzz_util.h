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
