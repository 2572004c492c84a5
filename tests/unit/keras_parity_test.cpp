// Numerical parity of the Keras .h5 / TF.js loaders (plus the executor) with TensorFlow.js.
// Fixtures come from tests/parity/test_keras_parity.py, which generates them with tfjs and runs
// these tests (DISABLED_, so ctest lists them as disabled, not as perpetual skips) with
// --gtest_also_run_disabled_tests and ACG2VEC_KERAS_FIXTURES pointing at them; without it they fail.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/executor.h"
#include "runtime/keras_h5.h"
#include "runtime/keras_layers.h"
#include "runtime/tfjs.h"

namespace acg2vec::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr double tolerance = 1e-4;  // max abs difference, every output and cut layer

at::Tensor read_f32(const fs::path& file, const std::vector<std::int64_t>& shape) {
  std::ifstream in(file, std::ios::binary);
  EXPECT_TRUE(in) << file;
  auto t = at::empty(shape, at::kFloat);
  in.read(reinterpret_cast<char*>(t.data_ptr<float>()), static_cast<std::streamsize>(t.numel() * sizeof(float)));
  EXPECT_EQ(in.gcount(), static_cast<std::streamsize>(t.numel() * sizeof(float))) << file;
  return t;
}

void run_group(const std::string& group) {
  const char* root_env = std::getenv("ACG2VEC_KERAS_FIXTURES");
  ASSERT_NE(root_env, nullptr) << "ACG2VEC_KERAS_FIXTURES not set (run tests/parity/test_keras_parity.py)";
  const fs::path root(root_env);
  std::ifstream in(root / "cases.json");
  ASSERT_TRUE(in) << root / "cases.json";
  const json cases = json::parse(in)["cases"];
  int ran = 0;
  for (const auto& c : cases) {
    if (c["group"] != group) continue;
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto t0 = std::chrono::steady_clock::now();
    const fs::path model = root / c["model"].get<std::string>();
    graph g = c["format"] == "keras_h5" ? load_keras_h5(model) : load_tfjs_layers(model);
    std::vector<std::string> names;
    for (const auto& o : c["outputs"]) {
      names.push_back(o["name"]);
      const auto& n = names.back();
      if (n.size() > 4 && n.compare(n.size() - 4, 4, "/gap") == 0) {
        EXPECT_EQ(append_keras_gap(g, n.substr(0, n.size() - 4)), n);
      }
    }
    executor exec(std::move(g), names);
    const auto input = read_f32(root / c["input"]["file"].get<std::string>(), c["input"]["shape"]);
    const auto t1 = std::chrono::steady_clock::now();
    const auto outputs = exec.run({input});
    const auto t2 = std::chrono::steady_clock::now();
    ASSERT_EQ(outputs.size(), names.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
      const auto& o = c["outputs"][i];
      const std::vector<std::int64_t> shape = o["shape"];
      const auto expected = read_f32(root / o["file"].get<std::string>(), shape);
      ASSERT_EQ(outputs[i].sizes(), expected.sizes()) << names[i];
      const double diff = (outputs[i].to(at::kFloat) - expected).abs().max().item<double>();
      const double scale = expected.abs().max().item<double>();
      std::printf("PARITY %-34s %-20s max_abs_diff %.3g (max |ref| %.3g)\n", c["name"].get<std::string>().c_str(),
                  names[i].c_str(), diff, scale);
      EXPECT_LE(diff, tolerance) << names[i];
    }
    std::printf("TIMING %-34s load %.0f ms, run %.0f ms (batch %lld)\n", c["name"].get<std::string>().c_str(),
                std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(t2 - t1).count(),
                static_cast<long long>(input.size(0)));
    ++ran;
  }
  EXPECT_GT(ran, 0) << "no fixtures for " << group;
}

TEST(KerasParity, DISABLED_RandomResnetCustomV3) { run_group("resnet_custom_v3"); }
TEST(KerasParity, DISABLED_RandomResNet101V2Pix2score) { run_group("pix2score"); }
TEST(KerasParity, DISABLED_RandomLayerZoo) { run_group("zoo"); }
TEST(KerasParity, DISABLED_RandomLayerZooExtra) { run_group("zoo_extra"); }
TEST(KerasParity, DISABLED_NsfwMobileNetV2) { run_group("nsfw_mobilenet_v2"); }
TEST(KerasParity, DISABLED_NsfwInceptionV3) { run_group("nsfw_inception_v3"); }
// The .h5 files written by real Keras versions (tests/data/keras-real/SOURCE) against TF.js on the
// same weights.
TEST(KerasParity, DISABLED_RealKerasFiles) { run_group("keras_real"); }

}  // namespace
}  // namespace acg2vec::runtime
