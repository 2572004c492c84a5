#pragma once
// `acg2vec models pull`: model packs from the Hugging Face Hub and from plain URLs (GitHub releases).
//
// The Hub is spoken as huggingface_hub speaks it:
//   GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true → commit sha and siblings
//       (rfilename, size, blobId, lfs.sha256);
//   GET {endpoint}/{repo}/resolve/{commit}/{path} → the file, or a 302 to the CDN, with
//       X-Repo-Commit, X-Linked-Etag / ETag and X-Linked-Size.
// Files land in the Hub's own cache layout ({cache}/models--org--name/{blobs,snapshots,refs}),
// so files already fetched with Python tools are reused and ours serve them in turn. Downloads
// resume with Range (blobs/<etag>.incomplete, as huggingface_hub names them), every LFS file is
// checked against its sha256 (the rest by size), and the pack is assembled in a hidden folder
// of the models directory and renamed into place only when every file is verified.
//
// Environment: HF_ENDPOINT, HF_TOKEN (else $HF_HOME/token), HF_HOME, HF_HUB_CACHE,
// HF_HUB_OFFLINE, and the proxy variables libcurl reads.

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace acg2vec::hub {

struct settings {
  std::string endpoint = "https://huggingface.co";
  std::filesystem::path cache_dir;  ///< the Hub cache (…/huggingface/hub)
  std::string token;
  bool offline = false;
  /// @brief From the environment, as huggingface_hub reads it.
  static settings from_env();
};

/// What `models pull` was asked for.
struct source {
  bool is_hub = true;
  std::string repo;                ///< org/name
  std::string revision = "main";
  std::string subdir;              ///< only files under this folder; the pack is that folder
  std::string url;                 ///< a plain https URL (GitHub release asset)
  /// @brief hf://ORG/REPO[@REV][#SUBDIR], ORG/REPO[@REV][#SUBDIR] or an http(s) URL.
  static source parse(const std::string& text);
  [[nodiscard]] std::string to_string() const;
};

/// One catalogue entry: a known pack and where its weights live.
struct catalogue_entry {
  std::string name;                ///< pack name (models pull NAME)
  std::string source;              ///< as source::parse reads it
  std::vector<std::string> files;  ///< files to fetch (relative to the repo); empty: all
  std::string what;                ///< one line for `models list --available`
  std::string license;
  std::uint64_t approx_bytes = 0;  ///< download size, as published (the pull prints the exact size first)
  std::string sha256;              ///< for URL sources: the archive's or file's sha256 when known
  std::map<std::string, std::string> verify;  ///< pack file → sha256 checked before installing
  nlohmann::json manifest;         ///< written as manifest.json; null = the folder's own layout
  bool default_set = false;        ///< pulled by scripts/setup.sh
};

/// @brief The packs acg2vec knows how to pull.
const std::vector<catalogue_entry>& catalogue();
/// @brief A catalogue entry by name, or nullptr.
const catalogue_entry* find_in_catalogue(const std::string& name);

struct pull_options {
  std::string name;                ///< the installed pack's folder name; empty: from the source
  std::vector<std::string> files;  ///< restrict to these repo paths
  std::string sha256;              ///< URL sources: expected sha256
  std::map<std::string, std::string> verify;  ///< pack file → sha256 checked before installing
  nlohmann::json manifest;         ///< written as manifest.json unless null
  bool force = false;              ///< replace an installed pack of the same name
  bool quiet = false;              ///< no progress bar
};

struct pull_result {
  std::filesystem::path pack_dir;
  std::string revision;            ///< the commit (Hub) or the sha256 (URL) that was installed
  std::uint64_t downloaded = 0;    ///< bytes fetched over the network
  std::uint64_t reused = 0;        ///< bytes found in the cache
};

/// @brief Fetches src (or takes it from the cache) and installs it as a pack under models_dir.
/// Throws acg2vec::error with a message naming the file, repo or variable to fix.
pull_result pull(const source& src, const pull_options& options, const std::filesystem::path& models_dir,
                 const settings& env);

/// @brief Reads the pull record (.acg2vec-pull.json) of an installed pack, if it has one.
std::optional<nlohmann::json> pull_record(const std::filesystem::path& pack_dir);

/// @brief SHA-256 of a file as lower-case hex.
std::string sha256_file(const std::filesystem::path& file);

}  // namespace acg2vec::hub
