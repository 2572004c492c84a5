#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "core/error.h"

namespace acg2vec {

void init_logging(std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    fail(errc::bad_parameter, "unknown log level '{}' (use trace, debug, info, warn, error or off)", level);
  }
  // stdout belongs to command output (tables, JSON), so logs always go to stderr.
  auto logger = spdlog::stderr_color_mt("acg2vec");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  logger->set_level(parsed);
  spdlog::set_default_logger(logger);
}

}  // namespace acg2vec
