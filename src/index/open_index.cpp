#include "index/open_index.h"

#include "core/error.h"
#include "index/milvus_index.h"

#include <map>
#include <mutex>

namespace acg2vec::index {

remote_index_factory index_factory(const std::string& uri) {
  if (uri.empty() || uri == "faiss") return {};
  if (uri.starts_with("milvus://")) {
    auto options = std::make_shared<milvus_options>(parse_milvus_uri(uri));
    // Which space each collection serves in this process. The name mapping is injective, so two
    // spaces cannot meet here; the check keeps it that way if the mapping ever changes.
    struct claims {
      std::mutex mutex;
      std::map<std::string, std::string> space_of;
    };
    auto taken = std::make_shared<claims>();
    return [options, taken](const space_config& config) -> std::unique_ptr<vector_index> {
      {
        const auto collection = milvus_collection_name(options->collection_prefix, config.name);
        std::lock_guard lock(taken->mutex);
        const auto [it, inserted] = taken->space_of.try_emplace(collection, config.name);
        if (!inserted && it->second != config.name)
          fail(errc::conflict, "vector spaces '{}' and '{}' would share the Milvus collection {}", it->second,
               config.name, collection);
      }
      return std::make_unique<milvus_index>(*options, config.name, config.dim, config.space_metric);
    };
  }
  fail(errc::bad_parameter, "unknown index '{}': use faiss or milvus://host:port", uri.substr(0, uri.find('?')));
}

}  // namespace acg2vec::index
