#include "image/encode.h"

#include <vips/vips8>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>

#include "core/error.h"

namespace acg2vec::image {
namespace {

void ensure_vips_for_encoding() {
  static std::once_flag once;
  std::call_once(once, [] {
    // VIPS_INIT is idempotent; decode.cpp applies the loader hardening on its first use.
    if (VIPS_INIT("acg2vec") != 0) fail(errc::internal, "libvips failed to initialise: {}", vips_error_buffer());
  });
}

}  // namespace

std::string_view parse_output_format(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "png") return "png";
  if (lower == "webp") return "webp";
  if (lower == "jpg" || lower == "jpeg") return "jpeg";
  fail(errc::bad_parameter, "unknown output format '{}' (png, webp, jpg)", name);
}

std::string_view output_content_type(std::string_view format) {
  if (format == "png") return "image/png";
  if (format == "webp") return "image/webp";
  return "image/jpeg";
}

std::string encode_image(const image_rgba8& img, std::string_view format, int quality) {
  ensure_vips_for_encoding();
  const auto w = static_cast<std::size_t>(img.width), h = static_cast<std::size_t>(img.height);
  if (img.width <= 0 || img.height <= 0 || img.pixels.size() != w * h * 4)
    fail(errc::bad_parameter, "cannot encode an image of {}x{} with {} bytes", img.width, img.height, img.pixels.size());
  const std::string_view fmt_name = parse_output_format(format);
  const bool keep_alpha = img.has_alpha && fmt_name != "jpeg";
  std::vector<std::uint8_t> packed;
  const int bands = keep_alpha ? 4 : 3;
  packed.resize(w * h * static_cast<std::size_t>(bands));
  const std::uint8_t* s = img.pixels.data();
  std::uint8_t* d = packed.data();
  for (std::size_t i = 0; i < w * h; ++i, s += 4, d += bands) {
    if (keep_alpha || !img.has_alpha) {
      std::copy(s, s + bands, d);
    } else {  // JPEG of a transparent image: over white, as decode_image does
      for (int c = 0; c < 3; ++c) d[c] = static_cast<std::uint8_t>((s[c] * s[3] + 255u * (255u - s[3]) + 127u) / 255u);
    }
  }
  try {
    vips::VImage v = vips::VImage::new_from_memory(packed.data(), packed.size(), img.width, img.height, bands,
                                                   VIPS_FORMAT_UCHAR);
    void* buf = nullptr;
    std::size_t size = 0;
    if (fmt_name == "png") {
      v.write_to_buffer(".png", &buf, &size, vips::VImage::option()->set("compression", 6));
    } else if (fmt_name == "webp") {
      auto opt = vips::VImage::option()->set("Q", quality);
      if (keep_alpha) opt->set("lossless", true);
      v.write_to_buffer(".webp", &buf, &size, opt);
    } else {
      v.write_to_buffer(".jpg", &buf, &size, vips::VImage::option()->set("Q", quality));
    }
    std::unique_ptr<void, decltype(&g_free)> owner(buf, &g_free);
    return std::string(static_cast<const char*>(buf), size);
  } catch (const vips::VError& e) {
    fail(errc::internal, "cannot encode {} image: {}", fmt_name, e.what());
  }
}

}  // namespace acg2vec::image
