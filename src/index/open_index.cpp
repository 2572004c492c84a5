#include "index/open_index.h"

#include "core/error.h"
#include "index/milvus_index.h"

namespace acg2vec::index {

remote_index_factory index_factory(const std::string& uri) {
  if (uri.empty() || uri == "faiss") return {};
  if (uri.starts_with("milvus://")) {
    auto options = std::make_shared<milvus_options>(parse_milvus_uri(uri));
    return [options](const space_config& config) -> std::unique_ptr<vector_index> {
      return std::make_unique<milvus_index>(*options, config.name, config.dim, config.space_metric);
    };
  }
  fail(errc::bad_parameter, "unknown index '{}': use faiss or milvus://host:port", uri.substr(0, uri.find('?')));
}

}  // namespace acg2vec::index
