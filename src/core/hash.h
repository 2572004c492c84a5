#pragma once
// SHA-256 (OpenSSL's libcrypto) and hex text: content hashes of items, pack verification,
// the tagger API's image names.

#include <filesystem>
#include <string>
#include <string_view>

namespace acg2vec {

/// @brief Lower-case hex of raw bytes.
std::string to_hex(std::string_view bytes);
/// @brief SHA-256 of bytes as 64 lower-case hex digits.
std::string sha256_hex(std::string_view bytes);
/// @brief SHA-256 of a file's content, read in 1 MiB pieces (errc::not_found when unreadable).
std::string sha256_file_hex(const std::filesystem::path& file);

}  // namespace acg2vec
