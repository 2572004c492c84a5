#include "fuzz_util.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace acg2vec::fuzz {

namespace {

// Removes the scratch folder when the process exits normally.
struct scratch_folder {
  std::filesystem::path path;
  scratch_folder() {
    path = std::filesystem::temp_directory_path() / ("acg2vec_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
  }
  ~scratch_folder() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace

const std::filesystem::path& scratch_dir() {
  static const scratch_folder folder;
  return folder.path;
}

std::filesystem::path write_scratch(std::string_view name, std::string_view bytes) {
  auto path = scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

void quiet_logs() {
  static const bool once = [] {
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)once;
}

}  // namespace acg2vec::fuzz
