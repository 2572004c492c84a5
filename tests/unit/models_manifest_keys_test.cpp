// Manifest keys are checked: a misspelt key fails the load naming the key and the pack.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "core/error.h"
#include "models/layouts.h"
#include "models/manifest.h"

namespace acg2vec {
namespace {

using json = nlohmann::json;

std::string load_error(const json& j) {
  try {
    (void)models::manifest_from_json(j, std::filesystem::temp_directory_path());
  } catch (const error& e) {
    return e.what();
  }
  return "";
}

TEST(ManifestKeys, UnknownKeysNameTheKeyAndThePack) {
  const json base{{"name", "p1"}, {"task", "tagger"}, {"format", "onnx"}, {"file", "model.onnx"}};
  EXPECT_EQ(load_error(base), "");
  auto top = base;
  top["max_bach"] = 4;
  auto msg = load_error(top);
  EXPECT_NE(msg.find("p1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("max_bach"), std::string::npos) << msg;

  auto input = base;
  input["input"] = {{"size", 8}, {"pad_colour", 255}};
  msg = load_error(input);
  EXPECT_NE(msg.find("p1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("input.pad_colour"), std::string::npos) << msg;

  auto cut = base;
  cut["cut"] = {{"layer", "add_43"}, {"pooling", "gap"}};
  msg = load_error(cut);
  EXPECT_NE(msg.find("cut.pooling"), std::string::npos) << msg;

  auto outputs = base;
  outputs["outputs"] = json::array({{{"name", "a"}, {"tfname", "x"}}});
  msg = load_error(outputs);
  EXPECT_NE(msg.find("outputs[].tfname"), std::string::npos) << msg;
}

TEST(ManifestKeys, PadIsAccepted) {
  json j{{"name", "wd"}, {"task", "tagger"}, {"format", "onnx"}, {"file", "model.onnx"},
         {"input", {{"size", 448}, {"resize", "pad_square_bicubic"}, {"channels", "BGR"}, {"scale", 1}, {"pad", 255}}}};
  EXPECT_EQ(load_error(j), "");
}

TEST(ManifestKeys, DropInLayoutsAreRecognised) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("acg2vec-layouts-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "wd");
  std::ofstream(dir / "wd" / "model.onnx") << "x";
  std::ofstream(dir / "wd" / "selected_tags.csv") << "tag_id,name,category,count\n1,general,9,1\n";
  auto wd = models::infer_packs(dir / "wd");
  ASSERT_EQ(wd.size(), 1u);
  EXPECT_EQ(wd[0].layout, "wd_tagger");
  EXPECT_EQ(wd[0].manifest["input"]["resize"], "pad_square_bicubic");

  fs::create_directories(dir / "immich" / "visual");
  fs::create_directories(dir / "immich" / "textual");
  std::ofstream(dir / "immich" / "visual" / "model.onnx") << "x";
  std::ofstream(dir / "immich" / "textual" / "model.onnx") << "x";
  std::ofstream(dir / "immich" / "visual" / "preprocess_cfg.json") << R"({"size": [256, 256], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})";
  auto im = models::infer_packs(dir / "immich");
  ASSERT_EQ(im.size(), 2u);
  EXPECT_EQ(im[0].manifest["name"], "immich-visual");
  EXPECT_EQ(im[0].manifest["input"]["size"], json::array({256, 256}));
  EXPECT_EQ(im[1].manifest["space"], "immich-visual");

  fs::create_directories(dir / "ddb");
  std::ofstream(dir / "ddb" / "project.json") << R"({"image_width": 512, "image_height": 512, "model": "resnet_custom_v3"})";
  std::ofstream(dir / "ddb" / "model-resnet_custom_v3.h5") << "x";
  std::ofstream(dir / "ddb" / "tags.txt") << "1girl\n";
  auto ddb = models::infer_packs(dir / "ddb");
  ASSERT_EQ(ddb.size(), 1u);
  EXPECT_EQ(ddb[0].manifest["embedding"]["layer"], "add_43");

  fs::create_directories(dir / "nothing");
  EXPECT_TRUE(models::infer_packs(dir / "nothing").empty());
  EXPECT_FALSE(models::is_pack_dir(dir / "nothing"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace acg2vec
