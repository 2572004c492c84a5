#pragma once
// Image decoding: untrusted bytes in, 8-bit RGB pixels out.
//
// Rules every caller can rely on:
// - Formats: JPEG, PNG, WebP, GIF (first frame only), BMP, TIFF (first page only). The format is
//   recognised by its magic bytes, never by a file name, and only these loaders are ever reached.
// - Output is always 8-bit RGB, row-major HWC, no row padding.
// - JPEG CMYK/YCCK is converted to sRGB through the embedded ICC profile, or libvips' built-in CMYK
//   profile when there is none. ICC profiles of RGB and grey images are ignored (pixels are taken as
//   sRGB), which is what TensorFlow's decode_image, the reference of the seed's models, does too.
// - EXIF orientation is applied (for every format that carries it), so the pixels are upright.
// - 16-bit samples are reduced to 8 bits by dropping the low byte (v >> 8).
// - Grey is replicated to R=G=B; palettes are expanded.
// - Alpha is composited on WHITE: out = round((c * a + 255 * (255 - a)) / 255), per channel, in 8 bits.
//   Transparent areas therefore become white (255,255,255), as ACG art is usually drawn on white.
// - Limits: more than max_bytes input bytes -> errc::too_large, before anything is parsed;
//   width * height over max_pixels -> errc::too_large, checked on the header before any pixel is
//   decoded, so a decompression bomb is refused without allocating its pixels.
// - Broken input (truncated, corrupt, not an image, an unsupported variant) -> errc::unsupported_media.
//   Decoders run with libvips' fail_on=error: truncated files and decoder errors fail instead of
//   producing a partially grey image. Decoder warnings (e.g. stray bytes between JPEG markers) are
//   tolerated, because many real-world files carry them and decode fine.
// - Empty input -> errc::bad_parameter.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>
#include <vector>

namespace acg2vec::image {

/// 8-bit RGB pixels, row-major HWC (pixels.size() == width * height * 3).
struct image_rgb8 {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;

  [[nodiscard]] bool empty() const noexcept { return width <= 0 || height <= 0; }
  /// @brief Pointer to the 3 bytes of pixel (x, y); no bounds check.
  [[nodiscard]] const std::uint8_t* at(int x, int y) const noexcept {
    return pixels.data() + (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) * 3;
  }
  [[nodiscard]] std::uint8_t* at(int x, int y) noexcept {
    return pixels.data() + (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) * 3;
  }
};

/// Denial-of-service limits applied by the decoders.
struct decode_limits {
  std::size_t max_bytes = 20u << 20;          ///< largest accepted encoded input
  std::uint64_t max_pixels = 100'000'000;     ///< largest accepted width * height
};

/// @brief Decodes an encoded image (see the rules above); throws acg2vec::error.
image_rgb8 decode_image(std::string_view bytes, const decode_limits& limits = {});

/// @brief Reads and decodes a file; a missing file is errc::not_found, a large one errc::too_large.
image_rgb8 decode_image_file(const std::filesystem::path& path, const decode_limits& limits = {});

/// 8-bit pixels with alpha, row-major HWC RGBA (pixels.size() == width * height * 4). Used where
/// transparency must survive (upscaling); has_alpha is false when the source had no alpha
/// channel (alpha is then 255 everywhere).
struct image_rgba8 {
  int width = 0;
  int height = 0;
  bool has_alpha = false;
  std::vector<std::uint8_t> pixels;
};

/// @brief As decode_image, but alpha is kept instead of composited on white (grey is still
/// replicated to RGB; BMP alpha is dropped). Same formats, limits and errors.
image_rgba8 decode_image_rgba(std::string_view bytes, const decode_limits& limits = {});

/// @brief Format from magic bytes: "jpeg", "png", "webp", "gif", "bmp", "tiff", or "" when unknown.
std::string_view sniff_image_format(std::string_view bytes) noexcept;

/// @brief Creates an image of the given size filled with one colour; throws bad_parameter on bad sizes.
image_rgb8 make_image(int width, int height, std::uint8_t r = 0, std::uint8_t g = 0, std::uint8_t b = 0);

/// @brief The image mirrored left-right.
image_rgb8 flip_horizontal(const image_rgb8& img);

/// @brief The rectangle [x, x+width) x [y, y+height); throws bad_parameter when it is not inside the image.
image_rgb8 crop(const image_rgb8& img, int x, int y, int width, int height);

}  // namespace acg2vec::image
