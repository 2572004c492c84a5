#include "fixtures.h"

#include <gtest/gtest.h>

namespace acg2vec::test_support {

std::filesystem::path fresh_dir(std::string_view group, std::string_view name) {
  const auto dir = std::filesystem::path(ACG2VEC_TEST_WORK) / group / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

store::item make_item(const std::string& id, std::int64_t created) {
  store::item it;
  it.id = id;
  it.source = "/pics/" + id + ".png";
  it.content_hash = "hash-" + id;
  it.width = 640;
  it.height = 480;
  it.metadata = {{"title", "picture " + id}, {"page", 1}};
  it.created_at = created;
  return it;
}

errc code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no acg2vec::error thrown";
  return errc::internal;
}

}  // namespace acg2vec::test_support
