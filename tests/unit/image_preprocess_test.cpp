// Preprocess: manifest parsing, layout/channel/normalisation bookkeeping and small cases worked out by
// hand from each resize definition. Numerical parity against torch / PIL / numpy on real images is in
// tests/parity/test_preprocess.py.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "image/preprocess.h"

namespace acg2vec::image {
namespace {

using json = nlohmann::json;

image_rgb8 row_image(std::initializer_list<std::uint8_t> greys) {
  image_rgb8 img = make_image(static_cast<int>(greys.size()), 1);
  int x = 0;
  for (auto g : greys) {
    std::uint8_t* p = img.at(x++, 0);
    p[0] = p[1] = p[2] = g;
  }
  return img;
}

std::vector<float> channel0(const std::vector<float>& hwc) {
  std::vector<float> out;
  for (std::size_t i = 0; i < hwc.size(); i += 3) out.push_back(hwc[i]);
  return out;
}

TEST(ImagePreprocessSpec, ParsesDesignExample) {
  const auto spec = parse_preprocess_spec(json::parse(
      R"({"size": [512, 512], "resize": "stretch_bilinear_tf", "layout": "NHWC", "scale": 255, "channels": "RGB"})"));
  EXPECT_EQ(spec.mode, resize_mode::stretch_bilinear_tf);
  EXPECT_EQ(spec.width, 512);
  EXPECT_EQ(spec.height, 512);
  EXPECT_FALSE(spec.nchw);
  EXPECT_FALSE(spec.bgr);
  EXPECT_EQ(spec.scale, 255.0f);
  EXPECT_EQ(spec.mean, (std::array<float, 3>{0, 0, 0}));
  EXPECT_EQ(spec.std, (std::array<float, 3>{1, 1, 1}));
}

TEST(ImagePreprocessSpec, SizeIsHeightThenWidth) {
  const auto spec = parse_preprocess_spec(json::parse(R"({"size": [100, 200]})"));
  EXPECT_EQ(spec.height, 100);
  EXPECT_EQ(spec.width, 200);
  const auto square = parse_preprocess_spec(json::parse(R"({"size": 448, "resize": "pad_square", "channels": "BGR"})"));
  EXPECT_EQ(square.width, 448);
  EXPECT_EQ(square.height, 448);
  EXPECT_EQ(square.mode, resize_mode::pad_square_area);
  EXPECT_TRUE(square.bgr);
  EXPECT_EQ(square.pad_fill, 255);
}

TEST(ImagePreprocessSpec, ClipDefaultsAndOverrides) {
  const auto clip = parse_preprocess_spec(json::parse(R"({"size": 224, "resize": "clip_center_crop_bicubic"})"));
  // seed-spec Appendix A constants.
  EXPECT_TRUE(clip.nchw);
  EXPECT_EQ(clip.scale, 255.0f);
  EXPECT_FLOAT_EQ(clip.mean[0], 0.48145466f);
  EXPECT_FLOAT_EQ(clip.mean[2], 0.40821073f);
  EXPECT_FLOAT_EQ(clip.std[1], 0.26130258f);
  const auto nhwc = parse_preprocess_spec(
      json::parse(R"({"size": 224, "resize": "clip_center_crop_bicubic", "layout": "NHWC", "mean": 0.5, "std": [2, 2, 2]})"));
  EXPECT_FALSE(nhwc.nchw);
  EXPECT_EQ(nhwc.mean, (std::array<float, 3>{0.5f, 0.5f, 0.5f}));
  EXPECT_EQ(nhwc.std, (std::array<float, 3>{2, 2, 2}));
  for (auto mode : {resize_mode::stretch_bilinear_tf, resize_mode::stretch_bilinear_align_corners,
                    resize_mode::clip_center_crop_bicubic, resize_mode::pad_square_area}) {
    EXPECT_EQ(parse_resize_mode(to_string(mode)), mode);
  }
}

TEST(ImagePreprocessSpec, RejectsBadValues) {
  const char* bad[] = {
      R"([512, 512])",
      R"({})",
      R"({"size": [0, 5]})",
      R"({"size": [1, 2, 3]})",
      R"({"size": "big"})",
      R"({"size": 100000})",
      R"({"size": 2.5})",
      R"({"size": 8, "resize": "lanczos"})",
      R"({"size": 8, "resize": 3})",
      R"({"size": 8, "layout": "CHW"})",
      R"({"size": 8, "channels": "RGBA"})",
      R"({"size": 8, "scale": 0})",
      R"({"size": 8, "scale": -255})",
      R"({"size": 8, "scale": "255"})",
      R"({"size": 8, "mean": [1, 2]})",
      R"({"size": 8, "mean": ["a", 0, 0]})",
      R"({"size": 8, "std": [0, 1, 1]})",
      R"({"size": 8, "pad_fill": 300})",
      R"({"size": 8, "pad_fill": 1.5})",
      R"({"size": 8, "pad": 256})",
      R"({"size": 8, "pad": 0, "pad_fill": 0})",
      R"({"size": 8, "pading": 0})",
  };
  for (const char* text : bad) {
    try {
      parse_preprocess_spec(json::parse(text));
      ADD_FAILURE() << "accepted " << text;
    } catch (const error& e) {
      EXPECT_EQ(e.code(), errc::bad_parameter) << text;
    }
  }
}

TEST(ImagePreprocess, BilinearHalfPixelByHand) {
  // 2 -> 4 pixels: source x = (i + 0.5) * 0.5 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to the edges.
  const auto out = channel0(resize_bilinear(row_image({0, 255}), 4, 1, false));
  ASSERT_EQ(out.size(), 4u);
  EXPECT_FLOAT_EQ(out[0], 0.0f);
  EXPECT_FLOAT_EQ(out[1], 63.75f);
  EXPECT_FLOAT_EQ(out[2], 191.25f);
  EXPECT_FLOAT_EQ(out[3], 255.0f);
  // Shrinking 4 -> 2 without antialias: x = 0.5 and 2.5, the means of neighbours.
  const auto down = channel0(resize_bilinear(row_image({0, 100, 200, 40}), 2, 1, false));
  EXPECT_FLOAT_EQ(down[0], 50.0f);
  EXPECT_FLOAT_EQ(down[1], 120.0f);
}

TEST(ImagePreprocess, BilinearAlignCornersByHand) {
  // 2 -> 4 with corners aligned: x = i / 3.
  const auto out = channel0(resize_bilinear(row_image({0, 255}), 4, 1, true));
  EXPECT_FLOAT_EQ(out[0], 0.0f);
  EXPECT_NEAR(out[1], 85.0f, 1e-4f);
  EXPECT_NEAR(out[2], 170.0f, 1e-4f);
  EXPECT_FLOAT_EQ(out[3], 255.0f);
}

TEST(ImagePreprocess, AreaByHand) {
  // 3 -> 2: each output covers 1.5 input pixels.
  const auto out = channel0(resize_area(row_image({0, 90, 180}), 2, 1));
  EXPECT_NEAR(out[0], (0 * 1.0 + 90 * 0.5) / 1.5, 1e-4);
  EXPECT_NEAR(out[1], (90 * 0.5 + 180 * 1.0) / 1.5, 1e-4);
  // 1 -> 3 (upscale): every output lies inside the single input pixel.
  const auto up = channel0(resize_area(row_image({77}), 3, 1));
  for (float v : up) EXPECT_NEAR(v, 77.0f, 1e-4f);
}

TEST(ImagePreprocess, PilBicubicIdentityAndConstant) {
  // Same size: the cubic kernel is 1 at 0 and 0 at +-1, +-2, so PIL returns the input unchanged.
  const auto img = row_image({0, 255, 10, 200, 3});
  EXPECT_EQ(resize_bicubic_pil(img, 5, 1).pixels, img.pixels);
  // A constant image stays constant at any size (weights are normalised).
  const auto flat = resize_bicubic_pil(make_image(17, 9, 40, 50, 60), 5, 3);
  for (std::size_t i = 0; i < flat.pixels.size(); i += 3) {
    EXPECT_EQ(flat.pixels[i], 40);
    EXPECT_EQ(flat.pixels[i + 1], 50);
    EXPECT_EQ(flat.pixels[i + 2], 60);
  }
}

TEST(ImagePreprocess, CropAndPadOffsetsAreFloored) {
  const auto wide = row_image({1, 2, 3, 4, 5});  // 5x1 -> 1x1 at x = floor(4 / 2) = 2
  const auto sq = center_crop_square(wide);
  ASSERT_EQ(sq.width, 1);
  EXPECT_EQ(sq.at(0, 0)[0], 3);
  image_rgb8 tall = make_image(2, 5, 9, 9, 9);  // 2x5 -> 5x5 with left = floor(3 / 2) = 1
  const auto padded = pad_to_square(tall, 200);
  ASSERT_EQ(padded.width, 5);
  EXPECT_EQ(padded.at(0, 0)[0], 200);
  EXPECT_EQ(padded.at(1, 0)[0], 9);
  EXPECT_EQ(padded.at(2, 4)[0], 9);
  EXPECT_EQ(padded.at(3, 0)[0], 200);
}

TEST(ImagePreprocess, LayoutChannelsAndNormalisation) {
  const image_rgb8 img = make_image(6, 4, 10, 20, 30);
  preprocess_spec spec;
  spec.width = 3;
  spec.height = 2;
  spec.scale = 10.0f;
  spec.mean = {1.0f, 0.0f, 0.5f};
  spec.std = {0.5f, 1.0f, 2.0f};
  // RGB values 1, 2, 3 after / scale; then (v - mean) / std = 0, 2, 1.25.
  for (auto mode : {resize_mode::stretch_bilinear_tf, resize_mode::stretch_bilinear_align_corners,
                    resize_mode::clip_center_crop_bicubic, resize_mode::pad_square_area}) {
    spec.mode = mode;
    spec.pad_fill = 255;
    for (bool nchw : {false, true}) {
      for (bool bgr : {false, true}) {
        spec.nchw = nchw;
        spec.bgr = bgr;
        SCOPED_TRACE(std::string(to_string(mode)) + (nchw ? " NCHW" : " NHWC") + (bgr ? " BGR" : " RGB"));
        // pad_square_area pads 6x4 with white rows, so check only its centre rows there.
        const auto out = preprocess(img, spec);
        ASSERT_EQ(out.data.size(), 3u * 2u * 3u);
        EXPECT_EQ(out.nchw, nchw);
        EXPECT_EQ(out.width, 3);
        EXPECT_EQ(out.height, 2);
        const float expected[3] = {0.0f, 2.0f, 1.25f};
        if (mode == resize_mode::pad_square_area) continue;
        for (int c = 0; c < 3; ++c) {
          const int source = bgr ? 2 - c : c;
          for (int y = 0; y < 2; ++y) {
            for (int x = 0; x < 3; ++x) EXPECT_NEAR(out.at(c, y, x), expected[source], 1e-5f);
          }
        }
        // Raw layout check on the first element of channel 1.
        EXPECT_NEAR(nchw ? out.data[6] : out.data[1], expected[1], 1e-5f);
      }
    }
  }
}

TEST(ImagePreprocess, PadSquareFillShowsInPaddedArea) {
  // 4 wide x 2 high red image padded to 4x4 with fill 0, area-resized to 2x2: the top row of output
  // covers one pad row and one image row -> red channel (0 + 255) / 2.
  preprocess_spec spec;
  spec.mode = resize_mode::pad_square_area;
  spec.width = 2;
  spec.height = 2;
  spec.pad_fill = 0;
  const auto out = preprocess(make_image(4, 2, 255, 0, 0), spec);
  EXPECT_NEAR(out.at(0, 0, 0), 127.5f, 1e-4f);
  EXPECT_NEAR(out.at(1, 0, 0), 0.0f, 1e-4f);
  EXPECT_NEAR(out.at(0, 1, 1), 127.5f, 1e-4f);
}

TEST(ImagePreprocess, RejectsBadSpecAndImage) {
  preprocess_spec spec;
  spec.width = 0;
  spec.height = 8;
  EXPECT_THROW(preprocess(make_image(4, 4), spec), error);
  spec.width = 8;
  spec.std = {1, 0, 1};
  EXPECT_THROW(preprocess(make_image(4, 4), spec), error);
  spec.std = {1, 1, 1};
  spec.scale = 0;
  EXPECT_THROW(preprocess(make_image(4, 4), spec), error);
  spec.scale = 1;
  EXPECT_THROW(preprocess(image_rgb8{}, spec), error);
}


// Found by fuzzing (fuzz/regressions/image): a 65535-pixel-wide GIF one row high passes the pixel
// limit, and padding it to a square first needed 65535^2 pixels (12 GB). The padded area resize now
// never builds the square; it must still equal resizing the explicitly padded image.
TEST(ImagePreprocess, PadSquareAreaOfElongatedImages) {
  preprocess_spec spec;
  spec.mode = resize_mode::pad_square_area;
  spec.width = 13;
  spec.height = 11;
  spec.pad_fill = 200;
  for (auto [w, h] : {std::pair{301, 7}, std::pair{5, 97}, std::pair{40, 39}}) {
    image_rgb8 img = make_image(w, h);
    for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<std::uint8_t>((i * 37) % 251);
    const auto got = preprocess(img, spec);
    const auto want = resize_area(pad_to_square(img, spec.pad_fill), spec.width, spec.height);
    ASSERT_EQ(got.data.size(), want.size());
    for (std::size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got.data[i], want[i], 1e-4) << w << "x" << h << " at " << i;
  }
  const auto line = make_image(200000, 1, 10, 20, 30);
  const auto out = preprocess(line, spec);
  // The one image row is far thinner than an output row, so every output value is the fill.
  for (float v : out.data) EXPECT_NEAR(v, 200.0f, 0.1f);
}

TEST(ImagePreprocess, PadIsTheDocumentedNameAndUnknownKeysAreNamed) {
  EXPECT_EQ(parse_preprocess_spec(json::parse(R"({"size": 8, "resize": "pad_square_area", "pad": 17})")).pad_fill, 17);
  EXPECT_EQ(parse_preprocess_spec(json::parse(R"({"size": 8, "pad_fill": 3})")).pad_fill, 3);
  try {
    parse_preprocess_spec(json::parse(R"({"size": 8, "pad_colour": 0})"));
    ADD_FAILURE() << "an unknown key was accepted";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("input.pad_colour"), std::string::npos) << e.what();
  }
}

TEST(ImagePreprocess, PadSquareBicubicIsPaddingThenPilBicubic) {
  image_rgb8 img;
  img.width = 37;
  img.height = 20;
  img.pixels.resize(37 * 20 * 3);
  for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<std::uint8_t>((i * 37) % 251);
  preprocess_spec spec = parse_preprocess_spec(
      json::parse(R"({"size": 16, "resize": "pad_square_bicubic", "channels": "BGR", "scale": 1, "pad": 255})"));
  EXPECT_EQ(spec.mode, resize_mode::pad_square_bicubic);
  const auto out = preprocess(img, spec);
  const auto want = resize_bicubic_pil(pad_to_square(img, 255), 16, 16);
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 16; ++x) {
      for (int c = 0; c < 3; ++c) {
        // BGR: output channel c holds input channel 2 - c; values stay integers 0..255.
        ASSERT_EQ(out.at(c, y, x), static_cast<float>(want.at(x, y)[2 - c])) << x << "," << y << "," << c;
      }
    }
  }
}

}  // namespace
}  // namespace acg2vec::image
