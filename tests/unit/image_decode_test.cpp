// Decoding of every supported format and refusal of bad input. Fixtures: tests/data/images/
// (formats/ and bad/ are made by tools/make_image_fixtures.py; see tests/data/images/SOURCE.md).
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include "core/error.h"
#include "image/decode.h"

namespace acg2vec::image {
namespace {

const std::string data_dir = std::string(ACG2VEC_TEST_DATA) + "/images";

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

using rgb = std::array<int, 3>;

// The test card is 64x48 with four flat quadrants. Every pixel of a quadrant, except a 4-pixel margin
// along the quadrant borders (JPEG/WebP blur edges), must be within `tolerance` of the expected colour.
void expect_card(const image_rgb8& img, const std::array<rgb, 4>& expected, int tolerance, const std::string& what) {
  ASSERT_EQ(img.width, 64) << what;
  ASSERT_EQ(img.height, 48) << what;
  ASSERT_EQ(img.pixels.size(), 64u * 48u * 3u) << what;
  int worst = 0;
  for (int q = 0; q < 4; ++q) {
    const int x0 = (q % 2) * 32;
    const int y0 = (q / 2) * 24;
    for (int y = y0 + 4; y < y0 + 20; ++y) {
      for (int x = x0 + 4; x < x0 + 28; ++x) {
        const std::uint8_t* p = img.at(x, y);
        for (int c = 0; c < 3; ++c) {
          const int diff = std::abs(static_cast<int>(p[c]) - expected[static_cast<std::size_t>(q)][static_cast<std::size_t>(c)]);
          worst = std::max(worst, diff);
          if (diff > tolerance) {
            ADD_FAILURE() << what << ": pixel (" << x << "," << y << ") channel " << c << " is " << int(p[c]) << ", expected "
                          << expected[static_cast<std::size_t>(q)][static_cast<std::size_t>(c)] << " +- " << tolerance;
            return;
          }
        }
      }
    }
  }
}

constexpr rgb red{255, 0, 0};
constexpr rgb green{0, 255, 0};
constexpr rgb blue{0, 0, 255};
constexpr rgb yellow{255, 255, 0};
constexpr rgb white{255, 255, 255};
// Blue at alpha 128 over white: (c * 128 + 255 * 127 + 127) / 255 per channel.
constexpr rgb blue_half{127, 127, 255};
constexpr std::array<rgb, 4> card{red, green, blue, yellow};
// The RGBA variants: top-right transparent, bottom-left alpha 128.
constexpr std::array<rgb, 4> card_alpha{red, white, blue_half, yellow};

image_rgb8 decode_fixture(const std::string& name) { return decode_image_file(data_dir + "/formats/" + name); }

struct format_case {
  const char* file;
  std::array<rgb, 4> expected;
  int tolerance;  // 0 for lossless formats; lossy ones are checked away from the edges
};

class DecodeFormat : public ::testing::TestWithParam<format_case> {};

TEST_P(DecodeFormat, DecodesTestCard) {
  const auto& c = GetParam();
  expect_card(decode_fixture(c.file), c.expected, c.tolerance, c.file);
}

constexpr rgb g0{0, 0, 0};
constexpr rgb g85{85, 85, 85};
constexpr rgb g170{170, 170, 170};
constexpr rgb g255{255, 255, 255};
// Grey 170 at alpha 128 over white: (170 * 128 + 255 * 127 + 127) / 255 = 212.
constexpr rgb g170_half{212, 212, 212};

INSTANTIATE_TEST_SUITE_P(
    Formats, DecodeFormat,
    ::testing::Values(
        format_case{"card.png", card, 0}, format_case{"card_rgba.png", card_alpha, 0},
        format_case{"card_16.png", card, 0}, format_case{"card_rgba16.png", card_alpha, 0},
        format_case{"card_grey.png", {g0, g85, g170, g255}, 0},
        format_case{"card_grey16.png", {g0, g85, g170, g255}, 0},
        format_case{"card_grey_alpha.png", {g0, white, g170_half, g255}, 0},
        format_case{"card_palette.png", card, 0}, format_case{"card_palette_trns.png", {red, white, blue, yellow}, 0},
        // JPEG q95 on flat colours: within 8 levels away from the block edges.
        format_case{"card.jpg", card, 8}, format_case{"card_progressive.jpg", card, 8},
        format_case{"card_grey.jpg", {g0, g85, g170, g255}, 8},
        format_case{"card_exif3.jpg", card, 8}, format_case{"card_exif6.jpg", card, 8},
        format_case{"card_exif8.jpg", card, 8},
        format_case{"card_lossless.webp", card, 0}, format_case{"card_lossy.webp", card, 12},
        format_case{"card_rgba.webp", card_alpha, 0},
        format_case{"card.gif", card, 0}, format_case{"card_trns.gif", {red, white, blue, yellow}, 0},
        format_case{"card_anim.gif", card, 0},
        format_case{"card.bmp", card, 0}, format_case{"card_topdown.bmp", card, 0},
        format_case{"card_8bit.bmp", card, 0}, format_case{"card_4bit.bmp", card, 0},
        format_case{"card_1bit.bmp", {g0, g0, g255, g255}, 0}, format_case{"card_565.bmp", card, 0},
        format_case{"card_v5_alpha.bmp", card_alpha, 0},
        format_case{"card.tif", card, 0}, format_case{"card_deflate.tif", card, 0},
        format_case{"card_rgba.tif", card_alpha, 0}, format_case{"card_multipage.tif", card, 0}),
    [](const auto& info) {
      std::string name = info.param.file;
      for (char& ch : name) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return name;
    });

// CMYK goes through an ICC transform (the file's profile or libvips' built-in one), so exact values
// depend on the profile; each quadrant must still be clearly its colour (a missing conversion gives
// 4 bands, an uninverted Adobe CMYK gives the complementary colours).
void expect_cmyk_card(const image_rgb8& img, const std::string& what) {
  ASSERT_EQ(img.width, 64) << what;
  ASSERT_EQ(img.height, 48) << what;
  auto px = [&](int x, int y) {
    const std::uint8_t* p = img.at(x, y);
    return rgb{p[0], p[1], p[2]};
  };
  const rgb tl = px(16, 12);
  const rgb tr = px(48, 12);
  const rgb bl = px(16, 36);
  const rgb br = px(48, 36);
  EXPECT_GT(tl[0], 180) << what;
  EXPECT_LT(tl[1], 100) << what;
  EXPECT_LT(tl[2], 100) << what;
  EXPECT_GT(tr[1], 120) << what;
  EXPECT_LT(tr[0], 100) << what;
  EXPECT_GT(bl[2], 100) << what;
  EXPECT_LT(bl[0], 100) << what;
  EXPECT_LT(bl[1], 100) << what;
  EXPECT_GT(br[0], 200) << what;
  EXPECT_GT(br[1], 200) << what;
  EXPECT_LT(br[2], 100) << what;
}

TEST(ImageDecode, CmykJpegBecomesSrgb) { expect_cmyk_card(decode_fixture("card_cmyk.jpg"), "card_cmyk.jpg"); }
TEST(ImageDecode, CmykTiffBecomesSrgb) { expect_cmyk_card(decode_fixture("card_cmyk.tif"), "card_cmyk.tif"); }

TEST(ImageDecode, ExifRotationSwapsStoredSize) {
  // The file stores 48x64 pixels; orientation 6 turns them into the 64x48 card (checked above);
  // here: the top-left corner must be red, i.e. the rotation went the right way.
  const auto img = decode_fixture("card_exif6.jpg");
  EXPECT_EQ(img.width, 64);
  EXPECT_EQ(img.height, 48);
  EXPECT_GT(img.at(2, 2)[0], 200);
  EXPECT_LT(img.at(2, 2)[2], 60);
  EXPECT_GT(img.at(61, 45)[1], 200);  // bottom-right yellow
}

TEST(ImageDecode, SniffsMagicBytes) {
  EXPECT_EQ(sniff_image_format(read_bytes(data_dir + "/formats/card.jpg")), "jpeg");
  EXPECT_EQ(sniff_image_format(read_bytes(data_dir + "/formats/card.png")), "png");
  EXPECT_EQ(sniff_image_format(read_bytes(data_dir + "/formats/card_lossy.webp")), "webp");
  EXPECT_EQ(sniff_image_format(read_bytes(data_dir + "/formats/card.gif")), "gif");
  EXPECT_EQ(sniff_image_format(read_bytes(data_dir + "/formats/card.bmp")), "bmp");
  EXPECT_EQ(sniff_image_format(read_bytes(data_dir + "/formats/card.tif")), "tiff");
  EXPECT_EQ(sniff_image_format(""), "");
  EXPECT_EQ(sniff_image_format("<html>"), "");
  EXPECT_EQ(sniff_image_format("RIFF1234WAVE"), "");
  EXPECT_EQ(sniff_image_format("\x89PN"), "");
}

TEST(ImageDecode, RealImagesDecode) {
  // Real files of the fixture set: size as stored, alpha composited on white at the corners.
  const auto girl = decode_image_file(data_dir + "/real/blue_girl_dirk_struve_.png");
  EXPECT_EQ(girl.width, 320);
  EXPECT_EQ(girl.height, 387);
  EXPECT_EQ(girl.at(0, 0)[0], 255);  // transparent corner becomes white
  EXPECT_EQ(girl.at(0, 0)[1], 255);
  EXPECT_EQ(girl.at(0, 0)[2], 255);
  const auto hall = decode_image_file(data_dir + "/real/thequestion_bg_lecturehall.jpg");
  EXPECT_EQ(hall.width, 1280);
  EXPECT_EQ(hall.height, 720);
}

TEST(ImageDecode, ConcurrentDecodesAgree) {
  const std::string bytes = read_bytes(data_dir + "/real/demo_lucy_happy.png");
  const auto reference = decode_image(bytes);
  std::vector<std::thread> threads;
  std::array<bool, 4> same{};
  for (std::size_t t = 0; t < same.size(); ++t) {
    threads.emplace_back([&, t] {
      bool ok = true;
      for (int i = 0; i < 5; ++i) ok = ok && decode_image(bytes).pixels == reference.pixels;
      same[t] = ok;
    });
  }
  for (auto& th : threads) th.join();
  for (bool s : same) EXPECT_TRUE(s);
}

TEST(ImageDecode, HelpersFlipAndCrop) {
  const auto img = decode_fixture("card.png");
  const auto flipped = flip_horizontal(img);
  EXPECT_EQ(flipped.at(0, 0)[1], 255);  // green now top-left
  EXPECT_EQ(flipped.at(63, 0)[0], 255);
  const auto part = crop(img, 32, 24, 32, 24);
  EXPECT_EQ(part.width, 32);
  EXPECT_EQ(part.at(0, 0)[0], 255);  // yellow
  EXPECT_EQ(part.at(0, 0)[1], 255);
  EXPECT_THROW(crop(img, 40, 0, 32, 10), error);
  EXPECT_THROW(make_image(0, 3), error);
}

// ----------------------------------------------------------------------------------------------
// Bad input: each must be a typed acg2vec::error with a one-line message, never a crash.

struct bad_case {
  std::string name;
  std::string bytes;
  errc expected;
  decode_limits limits{};
};

std::string truncated(const std::string& file, double fraction) {
  const std::string b = read_bytes(file);
  return b.substr(0, static_cast<std::size_t>(static_cast<double>(b.size()) * fraction));
}

std::vector<bad_case> bad_cases() {
  const std::string f = data_dir + "/formats/";
  const std::string r = data_dir + "/real/";
  const std::string b = data_dir + "/bad/";
  std::vector<bad_case> cases;
  cases.push_back({"empty", "", errc::bad_parameter});
  cases.push_back({"text", "hello, this is not an image\n", errc::unsupported_media});
  cases.push_back({"html", "<!DOCTYPE html><html><body><img src=x></body></html>", errc::unsupported_media});
  cases.push_back({"svg", "<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>", errc::unsupported_media});
  cases.push_back({"pdf", "%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n", errc::unsupported_media});
  {
    std::mt19937 rng(12345);
    std::string noise(4096, '\0');
    for (char& c : noise) c = static_cast<char>(rng() & 0xFF);
    noise[0] = 'x';  // never a magic number by chance
    cases.push_back({"random_bytes", noise, errc::unsupported_media});
  }
  cases.push_back({"jpeg_magic_only", "\xFF\xD8\xFF", errc::unsupported_media});
  cases.push_back({"png_signature_only", "\x89PNG\r\n\x1A\n", errc::unsupported_media});
  cases.push_back({"webp_riff_garbage", std::string("RIFF\x10\0\0\0WEBPVP8 \x04\0\0\0abcd", 24), errc::unsupported_media});
  cases.push_back({"bmp_header_only", std::string("BM\0\0\0\0\0\0\0\0\x36\0\0\0", 14), errc::unsupported_media});
  cases.push_back({"truncated_jpeg", truncated(r + "thequestion_bg_lecturehall.jpg", 0.5), errc::unsupported_media});
  cases.push_back({"truncated_jpeg_header", truncated(f + "card.jpg", 0.1), errc::unsupported_media});
  cases.push_back({"truncated_png", truncated(r + "blue_girl_dirk_struve_.png", 0.5), errc::unsupported_media});
  cases.push_back({"truncated_gif", truncated(f + "card_anim.gif", 0.3), errc::unsupported_media});
  cases.push_back({"truncated_webp", truncated(f + "card_lossy.webp", 0.5), errc::unsupported_media});
  cases.push_back({"truncated_tiff", truncated(f + "card.tif", 0.5), errc::unsupported_media});
  cases.push_back({"truncated_bmp", truncated(f + "card.bmp", 0.5), errc::unsupported_media});
  cases.push_back({"png_palette_bad_length", read_bytes(b + "palette_bad_length.png"), errc::unsupported_media});
  cases.push_back({"png_palette_missing", read_bytes(b + "palette_missing.png"), errc::unsupported_media});
  cases.push_back({"png_bad_ihdr_crc", read_bytes(b + "bad_ihdr_crc.png"), errc::unsupported_media});
  cases.push_back({"png_bad_zlib", read_bytes(b + "bad_zlib.png"), errc::unsupported_media});
  cases.push_back({"png_bad_bit_depth", read_bytes(b + "bad_bit_depth.png"), errc::unsupported_media});
  cases.push_back({"gif_no_frames", read_bytes(b + "no_frames.gif"), errc::unsupported_media});
  cases.push_back({"bmp_palette_index", read_bytes(b + "palette_index.bmp"), errc::unsupported_media});
  cases.push_back({"bmp_rle8", read_bytes(b + "rle8.bmp"), errc::unsupported_media});
  cases.push_back({"bmp_zero_width", read_bytes(b + "zero_width.bmp"), errc::unsupported_media});
  cases.push_back({"tiff_strip_past_end", read_bytes(b + "strip_past_end.tif"), errc::unsupported_media});
  // Decompression bombs: headers claim 10^9..10^10 pixels in files of a few bytes.
  cases.push_back({"bomb_png_100000x100000", read_bytes(b + "bomb.png"), errc::too_large});
  cases.push_back({"bomb_jpeg_65000x65000", read_bytes(b + "bomb.jpg"), errc::too_large});
  cases.push_back({"bomb_gif_65535x65535", read_bytes(b + "bomb.gif"), errc::too_large});
  cases.push_back({"bomb_webp_16000x16000", read_bytes(b + "bomb.webp"), errc::too_large});
  cases.push_back({"bomb_bmp_50000x50000", read_bytes(b + "bomb.bmp"), errc::too_large});
  // Limits configured by the caller.
  cases.push_back({"over_max_bytes", read_bytes(f + "card.png"), errc::too_large, decode_limits{100, 100'000'000}});
  cases.push_back({"over_max_pixels", read_bytes(f + "card.jpg"), errc::too_large, decode_limits{20u << 20, 64 * 48 - 1}});
  cases.push_back({"over_max_pixels_bmp", read_bytes(f + "card.bmp"), errc::too_large, decode_limits{20u << 20, 1000}});
  return cases;
}

TEST(ImageDecode, BadInputsFailWithTypedErrors) {
  const auto cases = bad_cases();
  ASSERT_GE(cases.size(), 15u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::clock_t start = std::clock();
    try {
      const auto img = decode_image(c.bytes, c.limits);
      ADD_FAILURE() << c.name << " decoded to " << img.width << "x" << img.height << " instead of failing";
    } catch (const error& e) {
      EXPECT_EQ(e.code(), c.expected) << c.name << ": " << to_string(e.code()) << ": " << e.what();
      if (std::getenv("ACG2VEC_TEST_VERBOSE")) std::printf("%-28s %s: %s\n", c.name.c_str(), std::string(to_string(e.code())).c_str(), e.what());
      const std::string msg = e.what();
      EXPECT_FALSE(msg.empty());
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.name << " threw an untyped exception: " << e.what();
    }
    // A bomb is refused from its header: no time goes into decoding 10^10 pixels (minutes of CPU).
    // The bound is CPU time and generous, so a busy machine cannot fail it; speed is a benchmark.
    const double seconds = static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC;
    EXPECT_LT(seconds, 30.0) << c.name;
  }
}

TEST(ImageDecode, MutatedFilesNeverCrash) {
  // Seeded byte flips and truncations of every format fixture: each decode either succeeds with a
  // consistent image or throws acg2vec::error. (Run under the ASan/UBSan debug preset too.) The pixel
  // limit keeps a mutated size field from turning into a slow 10^8-pixel decode.
  const decode_limits limits{1u << 20, 1'000'000};
  std::mt19937 rng(7);
  int decoded = 0;
  int refused = 0;
  const char* rounds_env = std::getenv("ACG2VEC_FUZZ_ROUNDS");  // longer local runs
  const int rounds = rounds_env != nullptr ? std::atoi(rounds_env) : 12;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir + "/formats")) {
    const std::string original = read_bytes(entry.path().string());
    for (int round = 0; round < rounds; ++round) {
      std::string bytes = original;
      const int flips = 1 + static_cast<int>(rng() % 8);
      for (int k = 0; k < flips; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xFF);
      if (round % 3 == 2) bytes.resize(rng() % bytes.size());
      try {
        const auto img = decode_image(bytes, limits);
        ASSERT_EQ(img.pixels.size(), static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * 3)
            << entry.path().filename();
        ++decoded;
      } catch (const error&) {
        ++refused;
      } catch (const std::exception& e) {
        ADD_FAILURE() << entry.path().filename() << " round " << round << ": untyped exception " << e.what();
      }
    }
  }
  EXPECT_GT(decoded + refused, 300);
}

TEST(ImageDecode, FileErrors) {
  try {
    decode_image_file(data_dir + "/formats/no_such_file.png");
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::not_found);
  }
  try {
    decode_image_file(data_dir + "/formats/card.png", decode_limits{10, 100});
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::too_large);
  }
  try {
    decode_image_file(data_dir + "/bad/bomb.png");
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::too_large);
    EXPECT_NE(std::string(e.what()).find("bomb.png"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace acg2vec::image
