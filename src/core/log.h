#pragma once
// Logging goes through spdlog's default logger; init_logging() configures it once at start-up.

#include <spdlog/spdlog.h>

#include <string_view>

namespace acg2vec {

/// @brief Sets the level ("trace".."off") and the line format of the default logger (stderr).
void init_logging(std::string_view level);

}  // namespace acg2vec
