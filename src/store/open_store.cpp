#include "store/open_store.h"

#include "core/error.h"
#include "store/redis_store.h"
#include "store/sqlite_store.h"

namespace acg2vec::store {

std::unique_ptr<item_store> open_store(const std::string& uri, const std::filesystem::path& data_dir) {
  if (uri.empty() || uri == "sqlite") {
    std::filesystem::create_directories(data_dir);
    return std::make_unique<sqlite_store>(data_dir / "acg2vec.db");
  }
  if (uri.starts_with("sqlite:")) {
    std::filesystem::path file = uri.substr(7);
    if (file.empty()) fail(errc::bad_parameter, "store address 'sqlite:' names no file");
    if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
    return std::make_unique<sqlite_store>(file);
  }
  if (uri.starts_with("redis://")) return std::make_unique<redis_store>(parse_redis_uri(uri));
  fail(errc::bad_parameter, "unknown store '{}': use sqlite, sqlite:PATH or redis://host:port", redact_store_uri(uri));
}

std::string redact_store_uri(const std::string& uri) {
  const auto scheme = uri.find("://");
  const auto at = uri.rfind('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) return uri;
  return uri.substr(0, scheme + 3) + "***" + uri.substr(at);
}

}  // namespace acg2vec::store
