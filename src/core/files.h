#pragma once
// Whole-file reads and crash-safe writes, with errors that name the file and what it is.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace acg2vec {

/// @brief The whole file as bytes. `what` names it in errors ("ONNX model", "manifest", ...).
/// Missing or unreadable: errc::not_found; over max_bytes: errc::too_large; a short read (the file
/// shrank, an I/O error): errc::bad_parameter.
std::string read_file(const std::filesystem::path& path, std::string_view what = "file",
                      std::uintmax_t max_bytes = std::uintmax_t{1} << 31);

/// @brief Replaces `path` with `bytes` so that after a crash it holds the old or the whole new
/// content: written to a temporary beside it (`temporary`, or "<name>.tmp.<pid>" when empty),
/// flushed to disk, then renamed over it. Creates missing parent folders. Failures are
/// errc::internal (disk full, permissions) and leave no temporary behind.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes,
                       const std::filesystem::path& temporary = {});

}  // namespace acg2vec
