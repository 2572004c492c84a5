// Checkpoint loading and the DistilBERT / CLIP towers against an independent python3-torch reference:
// tools/make_text_model_fixtures.py builds tiny random-weight models from torch's own layers
// (nn.TransformerEncoderLayer etc.), writes their weights under HF names as safetensors, sharded safetensors
// and pytorch_model.bin, plus reference outputs. Tolerance: max|ours-ref| <= 1e-4 * max|ref|.
// The tests fail (not skip) when /usr/bin/python3 with torch is missing.

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>

#include "core/error.h"
#include "models/clip.h"
#include "models/distilbert.h"
#include "runtime/safetensors.h"

namespace acg2vec {
namespace {

namespace fs = std::filesystem;
constexpr double relative_tolerance = 1e-4;

fs::path run_generator(const fs::path& out, const std::string& extra) {
  const std::string cmd = "/usr/bin/python3 '" + (fs::path(ACG2VEC_SOURCE_DIR) / "tools" / "make_text_model_fixtures.py").string() +
                          "' '" + out.string() + "' " + extra + " > /dev/null";
  const int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << "reference generation failed (needs /usr/bin/python3 with python3-torch): " << cmd;
  return out;
}

// The small fixtures are generated once per version of the generator script and shared by the test
// processes ctest starts (written to a private folder, then renamed into place).
fs::path small_fixtures() {
  std::ifstream script(fs::path(ACG2VEC_SOURCE_DIR) / "tools" / "make_text_model_fixtures.py", std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(script)), std::istreambuf_iterator<char>());
  const fs::path work = fs::path(ACG2VEC_TEST_WORK) / "text_models";
  const fs::path out = work / ("fixtures_" + std::to_string(std::hash<std::string>{}(text)));
  if (fs::exists(out / "expected.safetensors")) return out;
  fs::create_directories(work);
  const fs::path tmp = work / ("tmp_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  run_generator(tmp, "");
  std::error_code ec;
  fs::rename(tmp, out, ec);
  if (ec) fs::remove_all(tmp);  // another process got there first
  return out;
}

class TextModels : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(small_fixtures());
    expected_ = new runtime::tensor_map(runtime::load_safetensors(*dir_ / "expected.safetensors"));
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete expected_;
  }
  static const at::Tensor& ref(const std::string& name) { return expected_->at(name); }
  static fs::path* dir_;
  static runtime::tensor_map* expected_;
};
fs::path* TextModels::dir_ = nullptr;
runtime::tensor_map* TextModels::expected_ = nullptr;

void expect_close(const at::Tensor& ours, const at::Tensor& reference, const std::string& what) {
  ASSERT_EQ(ours.sizes(), reference.sizes()) << what;
  const double max_ref = reference.abs().max().item<double>();
  const double max_diff = (ours - reference).abs().max().item<double>();
  std::cout << "[parity] " << what << ": max abs diff " << max_diff << ", max |ref| " << max_ref << ", relative "
            << max_diff / max_ref << "\n";
  EXPECT_GT(max_ref, 0.0) << what;
  EXPECT_LE(max_diff, relative_tolerance * max_ref) << what;
}

TEST_F(TextModels, SafetensorsDtypes) {
  EXPECT_EQ(ref("dtype_f16").scalar_type(), at::kHalf);
  EXPECT_TRUE(at::equal(ref("dtype_f16").to(at::kFloat), ref("dtype_f16_as_f32")));
  EXPECT_EQ(ref("dtype_bf16").scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(ref("dtype_bf16").to(at::kFloat), ref("dtype_bf16_as_f32")));
  EXPECT_TRUE(at::equal(ref("dtype_i32"), at::arange(-3, 3, at::kInt)));
  EXPECT_EQ(ref("dtype_f64").scalar_type(), at::kDouble);
  EXPECT_TRUE(at::allclose(ref("dtype_f64").to(at::kHalf).to(at::kFloat), ref("dtype_f16_as_f32")));
  EXPECT_TRUE(at::equal(ref("dtype_u8"), at::arange(0, 250, 50, at::kByte)));
  EXPECT_EQ(ref("dtype_bool").scalar_type(), at::kBool);
  EXPECT_EQ(ref("dtype_bool")[1].item<bool>(), false);
  EXPECT_EQ(ref("dtype_empty").sizes(), (std::vector<std::int64_t>{0, 4}));
  EXPECT_EQ(ref("st_input_ids").scalar_type(), at::kLong);
}

TEST_F(TextModels, SafetensorsRoundTrip) {
  const fs::path p = fs::path(ACG2VEC_TEST_WORK) / "text_models" / ("roundtrip_" + std::to_string(::getpid()) + ".safetensors");
  runtime::save_safetensors(p, *expected_);
  const auto back = runtime::load_safetensors(p);
  ASSERT_EQ(back.size(), expected_->size());
  for (const auto& [name, t] : *expected_) EXPECT_TRUE(at::equal(back.at(name), t)) << name;
  fs::remove(p);
}

std::string safetensors_bytes(const std::string& header, std::size_t data_bytes) {
  std::string s;
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  return s + header + std::string(data_bytes, '\0');
}

TEST(Safetensors, RejectsMalformedFiles) {
  auto expect_bad = [](const std::string& bytes, const char* why) {
    try {
      (void)runtime::parse_safetensors(bytes, "test");
      ADD_FAILURE() << "accepted: " << why;
    } catch (const error& e) {
      EXPECT_EQ(e.code(), errc::bad_parameter) << why;
    }
  };
  expect_bad("abc", "shorter than the length prefix");
  expect_bad(std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", "header length beyond the file");
  expect_bad(safetensors_bytes("not json", 0), "header not JSON");
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8), "offsets past the end");
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "length/shape mismatch");
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "reversed offsets");
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype");
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "overlapping tensors");
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "missing offsets");
  const auto ok = runtime::parse_safetensors(
      safetensors_bytes(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8), "test");
  EXPECT_EQ(ok.at("a").item<std::int64_t>(), 0);
  EXPECT_THROW(runtime::load_checkpoint("/nonexistent/model"), error);
}

TEST_F(TextModels, ShardedAndBinCheckpointsEqualSafetensors) {
  const auto single = runtime::load_checkpoint(*dir_ / "clip_safetensors");
  const auto sharded = runtime::load_checkpoint(*dir_ / "clip_sharded");
  const auto bin = runtime::load_checkpoint(*dir_ / "clip_bin");
  const auto sharded_bin = runtime::load_checkpoint(*dir_ / "clip_sharded_bin");
  ASSERT_EQ(sharded.size(), single.size());
  ASSERT_EQ(bin.size(), single.size());
  ASSERT_EQ(sharded_bin.size(), single.size());
  for (const auto& [name, t] : single) {
    EXPECT_TRUE(at::equal(sharded.at(name), t)) << name;
    EXPECT_TRUE(at::equal(bin.at(name), t)) << name;
    EXPECT_TRUE(at::equal(sharded_bin.at(name), t)) << name;
  }
  EXPECT_EQ(single.at("text_model.embeddings.position_ids").scalar_type(), at::kLong);
}

TEST_F(TextModels, SentenceEncoderMatchesTorchReference) {
  for (const char* folder : {"st_safetensors", "st_bin"}) {
    const auto model = models::sentence_encoder::load(*dir_ / folder);
    EXPECT_EQ(model->dim(), 16);
    EXPECT_EQ(model->max_seq_length(), 40);
    expect_close(model->encode(ref("st_input_ids"), ref("st_attention_mask")), ref("st_output"),
                 std::string("distilbert+mean+dense tanh (") + folder + ")");
  }
}

TEST_F(TextModels, SentenceEncoderRejectsBadInput) {
  const auto model = models::sentence_encoder::load(*dir_ / "st_safetensors");
  const at::Tensor ids = at::full({1, 4}, 100, at::kLong);  // vocabulary is 100
  EXPECT_THROW((void)model->encode(ids, at::ones({1, 4}, at::kLong)), error);
  EXPECT_THROW((void)model->encode(at::ones({1, 41}, at::kLong), at::ones({1, 41}, at::kLong)), error);
  EXPECT_THROW((void)model->encode(at::ones({1, 4}, at::kLong), at::ones({1, 5}, at::kLong)), error);
}

TEST_F(TextModels, ClipTextMatchesTorchReference) {
  for (const char* folder : {"clip_safetensors", "clip_bin", "clip_sharded"}) {
    const auto model = models::clip_text_encoder::load(*dir_ / folder);
    EXPECT_EQ(model->dim(), 24);
    EXPECT_EQ(model->context_length(), 16);
    expect_close(model->encode(ref("clip_input_ids")), ref("clip_text_output"), std::string("clip text (") + folder + ")");
  }
}

TEST_F(TextModels, ClipVisionMatchesTorchReference) {
  for (const char* folder : {"clip_safetensors", "clip_bin", "clip_sharded"}) {
    const auto model = models::clip_vision_encoder::load(*dir_ / folder);
    EXPECT_EQ(model->dim(), 24);
    EXPECT_EQ(model->image_size(), 32);
    expect_close(model->encode(ref("clip_pixels")), ref("clip_vision_output"), std::string("clip vision (") + folder + ")");
  }
}

TEST_F(TextModels, ClipHalfPrecisionCheckpoints) {
  // float16 safetensors and bfloat16 pytorch_model.bin; the reference used the same rounded weights.
  for (const char* tag : {"f16", "bf16"}) {
    const auto pair = models::clip_model::load(*dir_ / (std::string("clip_") + tag));
    expect_close(pair.text->encode(ref("clip_input_ids")), ref(std::string("clip_text_output_") + tag),
                 std::string("clip text (") + tag + " checkpoint)");
    expect_close(pair.vision->encode(ref("clip_pixels")), ref(std::string("clip_vision_output_") + tag),
                 std::string("clip vision (") + tag + " checkpoint)");
  }
}

TEST_F(TextModels, ClipRejectsBadInput) {
  const auto text = models::clip_text_encoder::load(*dir_ / "clip_safetensors");
  EXPECT_THROW((void)text->encode(at::ones({1, 17}, at::kLong)), error);
  EXPECT_THROW((void)text->encode(at::full({1, 4}, 64, at::kLong)), error);
  const auto vision = models::clip_vision_encoder::load(*dir_ / "clip_safetensors");
  EXPECT_THROW((void)vision->encode(at::zeros({1, 3, 31, 32})), error);
}

// Full-size ViT-L/14 (dclip's shape) with random weights: slow and ~4 GB of RAM, so run on demand with
// --gtest_also_run_disabled_tests --gtest_filter='*ClipL14*'.
TEST(TextModelsFull, DISABLED_ClipL14FullSize) {
  const fs::path dir = run_generator(fs::path(ACG2VEC_TEST_WORK) / "text_models" / "clip_l14_fixtures", "--full-clip-l14");
  const auto expected = runtime::load_safetensors(dir / "clip_l14_expected.safetensors");
  {
    const auto text = models::clip_text_encoder::load(dir / "clip_l14");
    EXPECT_EQ(text->dim(), 768);
    expect_close(text->encode(expected.at("clip_input_ids")), expected.at("clip_text_output"), "clip L/14 text");
  }
  {
    const auto vision = models::clip_vision_encoder::load(dir / "clip_l14");
    EXPECT_EQ(vision->dim(), 768);
    expect_close(vision->encode(expected.at("clip_pixels")), expected.at("clip_vision_output"), "clip L/14 vision");
  }
  fs::remove_all(dir);
}

// acgvoc2vec's real shape (vocab 119547, 6 layers, 768 -> 512), pytorch_model.bin folders, on demand like
// the test above.
TEST(TextModelsFull, DISABLED_Acgvoc2vecFullSize) {
  const fs::path dir =
      run_generator(fs::path(ACG2VEC_TEST_WORK) / "text_models" / "acgvoc2vec_fixtures", "--full-acgvoc2vec");
  const auto expected = runtime::load_safetensors(dir / "acgvoc2vec_expected.safetensors");
  const auto model = models::sentence_encoder::load(dir / "acgvoc2vec");
  EXPECT_EQ(model->dim(), 512);
  EXPECT_EQ(model->max_seq_length(), 128);
  expect_close(model->encode(expected.at("st_input_ids"), expected.at("st_attention_mask")), expected.at("st_output"),
               "acgvoc2vec full size");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace acg2vec
