// Perceptual signature: properties, and robustness on real drawings. The edits are made with libvips
// (Lanczos resize, its JPEG encoder, flip, extract, embed), independent of the area filter the signature
// uses. Each edited copy must find its own original as the nearest of all originals.
#include <gtest/gtest.h>

#include <vips/vips8>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "image/decode.h"
#include "image/signature.h"

namespace acg2vec::image {
namespace {

const std::string real_dir = std::string(ACG2VEC_TEST_DATA) + "/images/real";

float dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(s);
}

vips::VImage to_vips(const image_rgb8& img) {
  // copy_memory() detaches the result from img's buffer.
  return vips::VImage::new_from_memory(const_cast<std::uint8_t*>(img.pixels.data()), img.pixels.size(), img.width,
                                       img.height, 3, VIPS_FORMAT_UCHAR)
      .copy_memory();
}

image_rgb8 from_vips(vips::VImage v) {
  v = v.cast(VIPS_FORMAT_UCHAR);
  std::size_t size = 0;
  void* mem = v.write_to_memory(&size);
  image_rgb8 out;
  out.width = v.width();
  out.height = v.height();
  out.pixels.assign(static_cast<std::uint8_t*>(mem), static_cast<std::uint8_t*>(mem) + size);
  g_free(mem);
  return out;
}

image_rgb8 reencode_jpeg(const image_rgb8& img, int quality) {
  void* buf = nullptr;
  std::size_t size = 0;
  to_vips(img).write_to_buffer(".jpg", &buf, &size, vips::VImage::option()->set("Q", quality));
  const std::string bytes(static_cast<const char*>(buf), size);
  g_free(buf);
  return decode_image(bytes);
}

TEST(ImageSignature, BasicProperties) {
  const auto img = decode_image_file(real_dir + "/blue_girl_dirk_struve_.png");
  const auto sig = perceptual_signature(img);
  ASSERT_EQ(sig.size(), static_cast<std::size_t>(signature_dim));
  EXPECT_NEAR(dot(sig, sig), 1.0f, 1e-5f);
  // Mirroring by sign flips equals the signature of the flipped pixels (tolerance: float rounding).
  const auto mirrored = perceptual_signature_mirrored(img);
  const auto of_flipped = perceptual_signature(flip_horizontal(img));
  for (int i = 0; i < signature_dim; ++i) EXPECT_NEAR(mirrored[static_cast<std::size_t>(i)], of_flipped[static_cast<std::size_t>(i)], 1e-5f);
  EXPECT_EQ(mirror_signature(mirrored), sig);
  // A flat image has nothing to describe.
  const auto flat = perceptual_signature(make_image(40, 30, 128, 128, 128));
  EXPECT_EQ(dot(flat, flat), 0.0f);
  // Brightness shifts do not move the luma part at all (no DC); a pure colour keeps a chroma part.
  EXPECT_NEAR(dot(perceptual_signature(make_image(8, 8, 255, 0, 0)), perceptual_signature(make_image(8, 8, 200, 0, 0))), 1.0f,
              1e-5f);
  EXPECT_THROW(perceptual_signature(image_rgb8{}), error);
  EXPECT_THROW(mirror_signature({1.0f, 2.0f}), error);
}

TEST(ImageSignature, SimilarityHelpers) {
  EXPECT_EQ(signature_similarity_from_inner_product(0.9f), 0.9f);
  EXPECT_EQ(signature_similarity_from_inner_product(-0.3f), 0.0f);
  EXPECT_EQ(signature_similarity_from_inner_product(1.0001f), 1.0f);
  EXPECT_FLOAT_EQ(signature_similarity_from_squared_l2(0.2f), 0.9f);  // unit vectors: ip = 1 - d2/2
  EXPECT_EQ(signature_similarity_from_squared_l2(4.0f), 0.0f);
  EXPECT_EQ(signature_similarity_from_squared_l2(0.0f), 1.0f);
}

struct edit {
  const char* name;
  bool mirrored_query;
  image_rgb8 (*apply)(const image_rgb8&);
};

const edit edits[] = {
    {"resize_0.5", false, [](const image_rgb8& i) { return from_vips(to_vips(i).resize(0.5)); }},
    {"resize_0.3", false, [](const image_rgb8& i) { return from_vips(to_vips(i).resize(0.3)); }},
    {"jpeg_q60", false, [](const image_rgb8& i) { return reencode_jpeg(i, 60); }},
    {"flip", true, [](const image_rgb8& i) { return from_vips(to_vips(i).flip(VIPS_DIRECTION_HORIZONTAL)); }},
    {"crop_5pct", false,
     [](const image_rgb8& i) {
       const int dx = i.width / 20;
       const int dy = i.height / 20;
       return from_vips(to_vips(i).extract_area(dx, dy, i.width - 2 * dx, i.height - 2 * dy));
     }},
    {"border_10px_black", false,
     [](const image_rgb8& i) {
       return from_vips(to_vips(i).embed(10, 10, i.width + 20, i.height + 20,
                                         vips::VImage::option()->set("extend", VIPS_EXTEND_BACKGROUND)->set("background", 0.0)));
     }},
    {"border_10px_white", false,
     [](const image_rgb8& i) {
       return from_vips(to_vips(i).embed(10, 10, i.width + 20, i.height + 20,
                                         vips::VImage::option()->set("extend", VIPS_EXTEND_WHITE)));
     }},
};

TEST(ImageSignature, EditedCopiesFindTheirOriginal) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(real_dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_GE(names.size(), 8u);
  std::vector<image_rgb8> images;
  std::vector<std::vector<float>> originals;
  for (const auto& n : names) {
    images.push_back(decode_image_file(real_dir + "/" + n));
    originals.push_back(perceptual_signature(images.back()));
  }

  float worst_margin = 2;
  float worst_own = 2;
  float best_other = -2;
  std::printf("%-22s %-36s %8s %8s %8s\n", "edit", "image", "own", "other", "margin");
  for (const auto& e : edits) {
    for (std::size_t i = 0; i < images.size(); ++i) {
      const image_rgb8 edited = e.apply(images[i]);
      // The plain query for ordinary edits; the mirrored one for flips. A real search queries both and
      // keeps the better score, which must also land on the original.
      const auto plain = perceptual_signature(edited);
      const auto query = e.mirrored_query ? mirror_signature(plain) : plain;
      const auto other_query = e.mirrored_query ? plain : mirror_signature(plain);
      float own = 0;
      float other = -2;
      std::size_t other_index = 0;
      for (std::size_t j = 0; j < originals.size(); ++j) {
        const float s = dot(query, originals[j]);
        const float s_both = std::max(s, dot(other_query, originals[j]));
        if (j == i) {
          own = s;
        } else if (s_both > other) {
          other = s_both;
          other_index = j;
        }
      }
      const float margin = own - other;
      std::printf("%-22s %-36s %8.4f %8.4f %8.4f%s\n", e.name, names[i].c_str(), own, other, margin,
                  margin <= 0 ? "  <-- WRONG" : "");
      EXPECT_GT(margin, 0.0f) << e.name << " of " << names[i] << " is closer to " << names[other_index];
      worst_margin = std::min(worst_margin, margin);
      worst_own = std::min(worst_own, own);
      best_other = std::max(best_other, other);
    }
  }
  std::printf("worst margin %.4f, lowest own similarity %.4f, highest similarity to another image %.4f\n", worst_margin,
              worst_own, best_other);
  // The default near-duplicate threshold must separate the two groups on this set.
  EXPECT_GE(worst_own, near_duplicate_similarity);
  EXPECT_LT(best_other, near_duplicate_similarity);
}

}  // namespace
}  // namespace acg2vec::image
