// Keras .h5 files written by real Keras (tests/data/keras-real, listed with their sources in SOURCE):
// each file is the one its source published (sha256), and each loads and runs, or fails with an error
// naming the layer we do not support, as SOURCE says. Numerical parity with TensorFlow.js on the same
// files is KerasParity.DISABLED_RealKerasFiles (driven by tests/parity/test_keras_parity.py).
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/executor.h"
#include "runtime/keras_h5.h"

namespace acg2vec::runtime {
namespace {

namespace fs = std::filesystem;

const fs::path real_dir = fs::path(ACG2VEC_TEST_DATA) / "keras-real";

// SOURCE: blocks of "key: value" lines separated by blank lines; '#' lines are comments.
std::vector<std::map<std::string, std::string>> read_source() {
  std::ifstream in(real_dir / "SOURCE");
  EXPECT_TRUE(in) << real_dir / "SOURCE";
  std::vector<std::map<std::string, std::string>> blocks(1);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) {
      if (!blocks.back().empty()) blocks.emplace_back();
      continue;
    }
    if (line[0] == '#') continue;
    const auto colon = line.find(": ");
    if (colon == std::string::npos) {
      ADD_FAILURE() << "SOURCE: not a key: value line: " << line;
      continue;
    }
    blocks.back()[line.substr(0, colon)] = line.substr(colon + 2);
  }
  if (blocks.back().empty()) blocks.pop_back();
  return blocks;
}

std::string sha256_hex(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  const std::string bytes = s.str();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr) != 1) return {};
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    static constexpr char digits[] = "0123456789abcdef";
    hex += digits[digest[i] >> 4];
    hex += digits[digest[i] & 15];
  }
  return hex;
}

TEST(KerasRealFiles, EveryFileIsListedWithItsSourceAndChecksum) {
  const auto blocks = read_source();
  ASSERT_GE(blocks.size(), 5u);
  std::set<std::string> listed;
  for (const auto& b : blocks) {
    for (const char* key : {"file", "repository", "commit", "path", "licence", "sha256", "written by", "load"}) {
      EXPECT_TRUE(b.count(key)) << (b.count("file") ? b.at("file") : "?") << " has no '" << key << "'";
    }
    if (!b.count("file") || !b.count("sha256")) continue;
    listed.insert(b.at("file"));
    EXPECT_EQ(sha256_hex(real_dir / b.at("file")), b.at("sha256")) << b.at("file");
  }
  for (const auto& e : fs::directory_iterator(real_dir)) {
    const auto ext = e.path().extension();
    if (ext == ".h5" || ext == ".hdf5") EXPECT_TRUE(listed.count(e.path().filename().string())) << e.path() << " not in SOURCE";
  }
}

TEST(KerasRealFiles, EachLoadsAndRunsOrNamesTheUnsupportedLayer) {
  int ran = 0;
  for (const auto& b : read_source()) {
    if (!b.count("file") || !b.count("load")) continue;
    const std::string file = b.at("file");
    SCOPED_TRACE(file);
    const std::string load = b.at("load");
    if (load.rfind("error: ", 0) == 0) {
      try {
        (void)load_keras_h5(real_dir / file);
        ADD_FAILURE() << "loaded, but SOURCE says: " << load;
      } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find(load.substr(7)), std::string::npos) << e.what();
      }
      continue;
    }
    ASSERT_EQ(load, "runs");
    graph g = load_keras_h5(real_dir / file);
    ASSERT_EQ(g.inputs.size(), 1u);
    ASSERT_EQ(g.outputs.size(), 1u);
    std::vector<std::int64_t> shape = g.inputs[0].shape;
    ASSERT_EQ(shape.size(), 4u);
    shape[0] = 2;
    for (auto d : shape) ASSERT_GT(d, 0) << "input dimensions must be fixed";
    executor exec(std::move(g));
    // A smooth input in [-1, 1] (the range these models were trained on).
    std::int64_t count = 1;
    for (auto d : shape) count *= d;
    const auto x = at::sin(at::arange(count, at::kFloat).reshape(shape) * 0.37f);
    const auto y = exec.run({x}).at(0);
    ASSERT_EQ(y.dim(), 2);
    EXPECT_EQ(y.size(0), 2);
    EXPECT_TRUE(at::isfinite(y).all().item<bool>());
    // Every one of these models ends in a softmax: rows are probability distributions.
    EXPECT_TRUE(at::allclose(y.sum(1), at::ones({2}), 1e-5, 1e-5)) << y;
    ++ran;
  }
  EXPECT_GE(ran, 5);
}

}  // namespace
}  // namespace acg2vec::runtime
