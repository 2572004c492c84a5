#include "image/decode.h"

#include "core/cpu_turns.h"

#include "core/timing.h"

#include <vips/vips8>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>

#include "core/error.h"
#include "core/log.h"

namespace acg2vec::image {
namespace {

// libvips needs one process-wide initialisation; every decode goes through here first.
void ensure_vips() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (VIPS_INIT("acg2vec") != 0) {
      fail(errc::internal, "libvips failed to initialise: {}", vips_error_buffer());
    }
    // Only the loaders chosen by sniff_image_format() are ever called, but blocking the
    // "untrusted" loaders (ImageMagick, PDF, SVG, ...) keeps them unreachable by any path.
    vips_block_untrusted_set(TRUE);
    // The operation cache keys loads by buffer address; each decode is one-shot, so caching would
    // only hold memory (and could match a recycled address).
    vips_cache_set_max(0);
    // One worker per pipeline: requests already run in parallel, and with several workers libvips 8.14
    // sometimes loses a worker's read error (a TIFF strip past the end decoded "successfully" in 2 of
    // 40 runs; never with one worker), which would let truncated data through.
    vips_concurrency_set(1);
    // Decoder warnings about hostile input are expected traffic, not operator news: send them to
    // the debug log instead of raw stderr.
    g_log_set_handler(
        "VIPS", static_cast<GLogLevelFlags>(G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO),
        [](const gchar*, GLogLevelFlags, const gchar* message, gpointer) { spdlog::debug("libvips: {}", message); },
        nullptr);
  });
}

std::string vips_message(const vips::VError& e) {
  std::string msg = e.what();
  // libvips appends to one process-wide error buffer; clear it so the next failure reports only itself.
  vips_error_clear();
  // libvips messages are multi-line "loader: text\n"; keep one readable line.
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  while (!msg.empty() && msg.back() == ' ') msg.pop_back();
  return msg.empty() ? std::string("corrupt or unsupported data") : msg;
}

void check_pixels(std::uint64_t width, std::uint64_t height, const decode_limits& limits, std::string_view format) {
  if (width == 0 || height == 0) fail(errc::unsupported_media, "{} image has an empty size {}x{}", format, width, height);
  if (width * height > limits.max_pixels) {
    fail(errc::too_large, "{} image is {}x{} = {} pixels, over the limit of {}", format, width, height, width * height,
         limits.max_pixels);
  }
}

// Composites one 8-bit sample over white.
inline std::uint8_t over_white(unsigned c, unsigned a) noexcept {
  return static_cast<std::uint8_t>((c * a + 255u * (255u - a) + 127u) / 255u);
}

// ---------------------------------------------------------------------------------------------
// BMP. libvips has no BMP loader of its own (only through ImageMagick, which we keep blocked),
// so this is a small strict decoder: BI_RGB 1/4/8/16/24/32 bit, BI_BITFIELDS 16/32 bit, the
// OS/2 core header and the V2..V5 info headers. RLE is refused.

std::uint16_t le16(const unsigned char* p) noexcept { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }
std::uint32_t le32(const unsigned char* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

struct channel_mask {
  std::uint32_t mask = 0;
  int shift = 0;
  std::uint32_t max = 0;

  explicit channel_mask(std::uint32_t m = 0) : mask(m) {
    if (m == 0) return;
    shift = std::countr_zero(m);
    const std::uint32_t bits = m >> shift;
    max = bits;
  }
  [[nodiscard]] std::uint8_t extract(std::uint32_t px) const noexcept {
    if (max == 0) return 0;
    const std::uint64_t v = (px & mask) >> shift;
    return static_cast<std::uint8_t>((v * 255u + max / 2) / max);
  }
};

image_rgb8 decode_bmp(std::string_view bytes, const decode_limits& limits) {
  const auto* d = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  if (n < 14 + 12) fail(errc::unsupported_media, "BMP file is truncated ({} bytes)", n);
  const std::uint32_t data_offset = le32(d + 10);
  const std::uint32_t header_size = le32(d + 14);
  const bool core = header_size == 12;
  if (!core && header_size != 40 && header_size != 52 && header_size != 56 && header_size != 64 &&
      header_size != 108 && header_size != 124) {
    fail(errc::unsupported_media, "BMP has an unknown header size {}", header_size);
  }
  if (n < 14 + std::size_t{header_size}) fail(errc::unsupported_media, "BMP header is truncated");
  const unsigned char* h = d + 14;

  std::int64_t width = 0;
  std::int64_t height = 0;
  unsigned bpp = 0;
  std::uint32_t compression = 0;
  std::uint32_t colours_used = 0;
  if (core) {
    width = le16(h + 4);
    height = static_cast<std::int16_t>(le16(h + 6));
    bpp = le16(h + 10);
  } else {
    width = static_cast<std::int32_t>(le32(h + 4));
    height = static_cast<std::int32_t>(le32(h + 8));
    bpp = le16(h + 14);
    compression = le32(h + 16);
    colours_used = le32(h + 32);
  }
  const bool top_down = height < 0;
  if (height == INT32_MIN) fail(errc::unsupported_media, "BMP has an invalid height");
  height = top_down ? -height : height;
  if (width <= 0 || height <= 0) fail(errc::unsupported_media, "BMP has an invalid size {}x{}", width, height);
  check_pixels(static_cast<std::uint64_t>(width), static_cast<std::uint64_t>(height), limits, "BMP");

  if (compression == 1 || compression == 2) fail(errc::unsupported_media, "BMP with RLE compression is not supported");
  if (compression == 4 || compression == 5) fail(errc::unsupported_media, "BMP with embedded JPEG/PNG is not supported");
  const bool bitfields = compression == 3 || compression == 6;
  if (compression > 6 || (compression != 0 && !bitfields)) {
    fail(errc::unsupported_media, "BMP compression {} is not supported", compression);
  }
  if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32) {
    fail(errc::unsupported_media, "BMP bit depth {} is not supported", bpp);
  }
  if (bitfields && bpp != 16 && bpp != 32) fail(errc::unsupported_media, "BMP bit fields need 16 or 32 bits, not {}", bpp);

  // Channel masks: defaults, then from the V2+ header or the 12/16 bytes after a 40-byte header.
  channel_mask red;
  channel_mask green;
  channel_mask blue;
  channel_mask alpha;
  std::size_t after_header = 14 + std::size_t{header_size};
  if (bpp == 16) {
    red = channel_mask(0x7C00);
    green = channel_mask(0x03E0);
    blue = channel_mask(0x001F);
  } else if (bpp == 32) {
    red = channel_mask(0x00FF0000);
    green = channel_mask(0x0000FF00);
    blue = channel_mask(0x000000FF);
  }
  if (bitfields) {
    if (header_size == 64) fail(errc::unsupported_media, "OS/2 BMP compression {} is not supported", compression);
    const unsigned char* m = nullptr;
    // Where the alpha mask lies inside the data we hold: after a 40-byte header only with
    // BI_ALPHABITFIELDS, inside the header only from V3 (56 bytes) on.
    bool has_alpha_mask = header_size == 40 ? compression == 6 : header_size >= 56;
    if (header_size == 40) {
      const std::size_t mask_bytes = compression == 6 ? 16 : 12;
      if (n < after_header + mask_bytes) fail(errc::unsupported_media, "BMP bit masks are truncated");
      m = d + after_header;
      after_header += mask_bytes;
    } else {
      m = h + 40;
    }
    red = channel_mask(le32(m));
    green = channel_mask(le32(m + 4));
    blue = channel_mask(le32(m + 8));
    if (has_alpha_mask) alpha = channel_mask(le32(m + 12));
    if (red.mask == 0 && green.mask == 0 && blue.mask == 0) fail(errc::unsupported_media, "BMP has empty colour masks");
  } else if (header_size >= 56 && bpp == 32) {
    // V3+ headers may declare an alpha mask even for BI_RGB; honour it only where it is set.
    alpha = channel_mask(le32(h + 52));
  }

  // Palette (bpp <= 8): 4 bytes per entry (3 for the core header), BGR order.
  std::vector<std::array<std::uint8_t, 3>> palette;
  if (bpp <= 8) {
    const std::size_t max_entries = std::size_t{1} << bpp;
    std::size_t entries = colours_used == 0 ? max_entries : colours_used;
    if (entries > max_entries) fail(errc::unsupported_media, "BMP palette has {} entries, more than {} bits allow", entries, bpp);
    const std::size_t entry_size = core ? 3 : 4;
    if (after_header + entries * entry_size > n) fail(errc::unsupported_media, "BMP palette is truncated");
    palette.resize(entries);
    for (std::size_t i = 0; i < entries; ++i) {
      const unsigned char* e = d + after_header + i * entry_size;
      palette[i] = {e[2], e[1], e[0]};
    }
  }

  const std::uint64_t stride = ((static_cast<std::uint64_t>(width) * bpp + 31) / 32) * 4;
  if (data_offset < after_header || data_offset > n || stride * static_cast<std::uint64_t>(height) > n - data_offset) {
    fail(errc::unsupported_media, "BMP pixel data is truncated ({} of {} bytes present)", n > data_offset ? n - data_offset : 0,
         stride * static_cast<std::uint64_t>(height));
  }

  const int w = static_cast<int>(width);
  const int hgt = static_cast<int>(height);
  image_rgb8 out;
  out.width = w;
  out.height = hgt;
  out.pixels.resize(static_cast<std::size_t>(w) * static_cast<std::size_t>(hgt) * 3);
  // 32-bit BI_RGB files usually carry garbage or zero in the 4th byte, so it is only used as alpha
  // when a header declared an alpha mask.
  const bool use_alpha = alpha.mask != 0;
  for (int y = 0; y < hgt; ++y) {
    const int src_row = top_down ? y : hgt - 1 - y;
    const unsigned char* row = d + data_offset + static_cast<std::size_t>(src_row) * stride;
    std::uint8_t* dst = out.at(0, y);
    for (int x = 0; x < w; ++x, dst += 3) {
      std::uint8_t r = 0;
      std::uint8_t g = 0;
      std::uint8_t b = 0;
      unsigned a = 255;
      if (bpp <= 8) {
        const std::size_t bit = static_cast<std::size_t>(x) * bpp;
        const unsigned byte = row[bit / 8];
        const unsigned index = (byte >> (8 - bpp - bit % 8)) & ((1u << bpp) - 1);
        if (index >= palette.size()) {
          fail(errc::unsupported_media, "BMP pixel uses palette index {} but the palette has {} entries", index, palette.size());
        }
        r = palette[index][0];
        g = palette[index][1];
        b = palette[index][2];
      } else if (bpp == 24) {
        const unsigned char* p = row + static_cast<std::size_t>(x) * 3;
        b = p[0];
        g = p[1];
        r = p[2];
      } else {
        const std::uint32_t px = bpp == 16 ? le16(row + static_cast<std::size_t>(x) * 2) : le32(row + static_cast<std::size_t>(x) * 4);
        r = red.extract(px);
        g = green.extract(px);
        b = blue.extract(px);
        if (use_alpha) a = alpha.extract(px);
      }
      if (a != 255) {
        r = over_white(r, a);
        g = over_white(g, a);
        b = over_white(b, a);
      }
      dst[0] = r;
      dst[1] = g;
      dst[2] = b;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Everything else goes through the libvips loader named by the magic bytes.

struct blob_deleter {
  void operator()(VipsBlob* b) const noexcept { vips_area_unref(VIPS_AREA(b)); }
};

vips::VImage load_with_vips(std::string_view format, std::string_view bytes) {
  // The blob borrows the caller's bytes (no copy, no free); the image is fully read into memory
  // before decode_image returns, so the bytes outlive every use.
  std::unique_ptr<VipsBlob, blob_deleter> blob(vips_blob_new(nullptr, bytes.data(), bytes.size()));
  auto options = [] { return vips::VImage::option()->set("fail_on", VIPS_FAIL_ON_ERROR); };
  if (format == "jpeg") return vips::VImage::jpegload_buffer(blob.get(), options());
  if (format == "png") return vips::VImage::pngload_buffer(blob.get(), options());
  if (format == "webp") return vips::VImage::webpload_buffer(blob.get(), options());
  // n=1/page=0: the first frame of an animation or the first page of a multi-page TIFF.
  if (format == "gif") return vips::VImage::gifload_buffer(blob.get(), options()->set("n", 1)->set("page", 0));
  if (format == "tiff") return vips::VImage::tiffload_buffer(blob.get(), options()->set("n", 1)->set("page", 0));
  fail(errc::internal, "no loader for format {}", format);
}

image_rgb8 decode_with_vips(std::string_view format, std::string_view bytes, const decode_limits& limits) {
  ensure_vips();
  try {
    vips::VImage img = load_with_vips(format, bytes);
    // Only the header has been read at this point: refuse bombs before any pixel is decoded.
    check_pixels(static_cast<std::uint64_t>(img.width()), static_cast<std::uint64_t>(img.height()), limits, format);

    img = img.autorot();
    const VipsInterpretation interpretation = img.interpretation();
    if (interpretation == VIPS_INTERPRETATION_CMYK || interpretation == VIPS_INTERPRETATION_LAB ||
        interpretation == VIPS_INTERPRETATION_LABS || interpretation == VIPS_INTERPRETATION_XYZ ||
        interpretation == VIPS_INTERPRETATION_scRGB) {
      img = img.colourspace(VIPS_INTERPRETATION_sRGB);
    }
    switch (img.format()) {
      case VIPS_FORMAT_UCHAR:
        break;
      case VIPS_FORMAT_CHAR:
      case VIPS_FORMAT_USHORT:
      case VIPS_FORMAT_SHORT:
      case VIPS_FORMAT_UINT:
      case VIPS_FORMAT_INT:
        // shift=true maps the full range of the source type onto 0..255 (16 bit: v >> 8).
        img = img.cast(VIPS_FORMAT_UCHAR, vips::VImage::option()->set("shift", true));
        break;
      default:
        fail(errc::unsupported_media, "{} image with {} samples is not supported", format,
             vips_enum_nick(VIPS_TYPE_BAND_FORMAT, img.format()));
    }
    const int bands = img.bands();
    if (bands < 1 || bands > 4) fail(errc::unsupported_media, "{} image with {} bands is not supported", format, bands);

    std::size_t size = 0;
    std::unique_ptr<void, decltype(&g_free)> memory(img.write_to_memory(&size), &g_free);
    const auto w = static_cast<std::size_t>(img.width());
    const auto h = static_cast<std::size_t>(img.height());
    if (!memory || size != w * h * static_cast<std::size_t>(bands)) {
      fail(errc::internal, "{} decoder returned {} bytes for {}x{}x{}", format, size, w, h, bands);
    }
    const auto* src = static_cast<const std::uint8_t*>(memory.get());
    image_rgb8 out;
    out.width = img.width();
    out.height = img.height();
    out.pixels.resize(w * h * 3);
    std::uint8_t* dst = out.pixels.data();
    const std::size_t count = w * h;
    for (std::size_t i = 0; i < count; ++i, dst += 3, src += bands) {
      switch (bands) {
        case 1:
          dst[0] = dst[1] = dst[2] = src[0];
          break;
        case 2:
          dst[0] = dst[1] = dst[2] = over_white(src[0], src[1]);
          break;
        case 3:
          dst[0] = src[0];
          dst[1] = src[1];
          dst[2] = src[2];
          break;
        default:
          dst[0] = over_white(src[0], src[3]);
          dst[1] = over_white(src[1], src[3]);
          dst[2] = over_white(src[2], src[3]);
          break;
      }
    }
    return out;
  } catch (const vips::VError& e) {
    fail(errc::unsupported_media, "cannot decode {} image: {}", format, vips_message(e));
  }
}

// The same loaders and checks as decode_with_vips, keeping alpha (grey + alpha becomes RGBA).
image_rgba8 decode_rgba_with_vips(std::string_view format, std::string_view bytes, const decode_limits& limits) {
  ensure_vips();
  try {
    vips::VImage img = load_with_vips(format, bytes);
    check_pixels(static_cast<std::uint64_t>(img.width()), static_cast<std::uint64_t>(img.height()), limits, format);
    img = img.autorot();
    const VipsInterpretation interpretation = img.interpretation();
    if (interpretation == VIPS_INTERPRETATION_CMYK || interpretation == VIPS_INTERPRETATION_LAB ||
        interpretation == VIPS_INTERPRETATION_LABS || interpretation == VIPS_INTERPRETATION_XYZ ||
        interpretation == VIPS_INTERPRETATION_scRGB) {
      img = img.colourspace(VIPS_INTERPRETATION_sRGB);
    }
    if (img.format() != VIPS_FORMAT_UCHAR) {
      if (img.format() == VIPS_FORMAT_FLOAT || img.format() == VIPS_FORMAT_DOUBLE || img.format() == VIPS_FORMAT_COMPLEX ||
          img.format() == VIPS_FORMAT_DPCOMPLEX)
        fail(errc::unsupported_media, "{} image with {} samples is not supported", format,
             vips_enum_nick(VIPS_TYPE_BAND_FORMAT, img.format()));
      img = img.cast(VIPS_FORMAT_UCHAR, vips::VImage::option()->set("shift", true));
    }
    const int bands = img.bands();
    if (bands < 1 || bands > 4) fail(errc::unsupported_media, "{} image with {} bands is not supported", format, bands);
    std::size_t size = 0;
    std::unique_ptr<void, decltype(&g_free)> memory(img.write_to_memory(&size), &g_free);
    const auto w = static_cast<std::size_t>(img.width());
    const auto h = static_cast<std::size_t>(img.height());
    if (!memory || size != w * h * static_cast<std::size_t>(bands))
      fail(errc::internal, "{} decoder returned {} bytes for {}x{}x{}", format, size, w, h, bands);
    const auto* src = static_cast<const std::uint8_t*>(memory.get());
    image_rgba8 out;
    out.width = img.width();
    out.height = img.height();
    out.has_alpha = bands == 2 || bands == 4;
    out.pixels.resize(w * h * 4);
    std::uint8_t* dst = out.pixels.data();
    for (std::size_t i = 0; i < w * h; ++i, dst += 4, src += bands) {
      if (bands <= 2) {
        dst[0] = dst[1] = dst[2] = src[0];
        dst[3] = bands == 2 ? src[1] : 255;
      } else {
        dst[0] = src[0];
        dst[1] = src[1];
        dst[2] = src[2];
        dst[3] = bands == 4 ? src[3] : 255;
      }
    }
    return out;
  } catch (const vips::VError& e) {
    fail(errc::unsupported_media, "cannot decode {} image: {}", format, vips_message(e));
  }
}

}  // namespace

std::string_view sniff_image_format(std::string_view b) noexcept {
  auto starts = [&](std::string_view magic, std::size_t at = 0) {
    return b.size() >= at + magic.size() && b.substr(at, magic.size()) == magic;
  };
  using namespace std::string_view_literals;
  if (starts("\xFF\xD8\xFF"sv)) return "jpeg";
  if (starts("\x89PNG\r\n\x1A\n"sv)) return "png";
  if (starts("GIF87a"sv) || starts("GIF89a"sv)) return "gif";
  if (starts("RIFF"sv) && starts("WEBP"sv, 8)) return "webp";
  if (starts("BM"sv)) return "bmp";
  // Classic TIFF (42) and BigTIFF (43), both byte orders.
  if (starts("II\x2A\x00"sv) || starts("MM\x00\x2A"sv) || starts("II\x2B\x00"sv) || starts("MM\x00\x2B"sv)) return "tiff";
  return "";
}

image_rgb8 decode_image(std::string_view bytes, const decode_limits& limits) {
  const input_turn turn;  // shares the CPU with forward passes (core/cpu_turns.h)
  timed_span span("decode");
  if (bytes.empty()) fail(errc::bad_parameter, "image data is empty (0 bytes)");
  if (bytes.size() > limits.max_bytes) {
    fail(errc::too_large, "image data is {} bytes, over the limit of {}", bytes.size(), limits.max_bytes);
  }
  const std::string_view format = sniff_image_format(bytes);
  if (format.empty()) {
    fail(errc::unsupported_media, "data is not a supported image (expected JPEG, PNG, WebP, GIF, BMP or TIFF; {} bytes)",
         bytes.size());
  }
  if (format == "bmp") return decode_bmp(bytes, limits);
  return decode_with_vips(format, bytes, limits);
}

image_rgba8 decode_image_rgba(std::string_view bytes, const decode_limits& limits) {
  const input_turn turn;  // shares the CPU with forward passes (core/cpu_turns.h)
  timed_span span("decode");
  if (bytes.empty()) fail(errc::bad_parameter, "image data is empty (0 bytes)");
  if (bytes.size() > limits.max_bytes)
    fail(errc::too_large, "image data is {} bytes, over the limit of {}", bytes.size(), limits.max_bytes);
  const std::string_view format = sniff_image_format(bytes);
  if (format.empty())
    fail(errc::unsupported_media, "data is not a supported image (expected JPEG, PNG, WebP, GIF, BMP or TIFF; {} bytes)",
         bytes.size());
  if (format == "bmp") {
    const image_rgb8 rgb = decode_bmp(bytes, limits);
    image_rgba8 out{rgb.width, rgb.height, false, {}};
    out.pixels.resize(rgb.pixels.size() / 3 * 4);
    for (std::size_t i = 0, j = 0; i < rgb.pixels.size(); i += 3, j += 4) {
      out.pixels[j] = rgb.pixels[i];
      out.pixels[j + 1] = rgb.pixels[i + 1];
      out.pixels[j + 2] = rgb.pixels[i + 2];
      out.pixels[j + 3] = 255;
    }
    return out;
  }
  return decode_rgba_with_vips(format, bytes, limits);
}

image_rgb8 decode_image_file(const std::filesystem::path& path, const decode_limits& limits) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) fail(errc::not_found, "image file {} not found", path.string());
  if (!std::filesystem::is_regular_file(status)) fail(errc::bad_parameter, "{} is not a regular file", path.string());
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) fail(errc::not_found, "cannot stat image file {}: {}", path.string(), ec.message());
  if (size > limits.max_bytes) {
    fail(errc::too_large, "image file {} is {} bytes, over the limit of {}", path.string(), size, limits.max_bytes);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(errc::not_found, "cannot open image file {}", path.string());
  std::string bytes(static_cast<std::size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (static_cast<std::uintmax_t>(in.gcount()) != size) fail(errc::internal, "short read on image file {}", path.string());
  try {
    return decode_image(bytes, limits);
  } catch (const error& e) {
    throw error(e.code(), fmt::format("{}: {}", path.filename().string(), e.what()));
  }
}

image_rgb8 make_image(int width, int height, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  if (width <= 0 || height <= 0) fail(errc::bad_parameter, "image size {}x{} must be positive", width, height);
  image_rgb8 out;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3);
  for (std::size_t i = 0; i < out.pixels.size(); i += 3) {
    out.pixels[i] = r;
    out.pixels[i + 1] = g;
    out.pixels[i + 2] = b;
  }
  return out;
}

image_rgb8 flip_horizontal(const image_rgb8& img) {
  image_rgb8 out;
  out.width = img.width;
  out.height = img.height;
  out.pixels.resize(img.pixels.size());
  for (int y = 0; y < img.height; ++y) {
    for (int x = 0; x < img.width; ++x) std::memcpy(out.at(img.width - 1 - x, y), img.at(x, y), 3);
  }
  return out;
}

image_rgb8 crop(const image_rgb8& img, int x, int y, int width, int height) {
  if (width <= 0 || height <= 0 || x < 0 || y < 0 || x > img.width - width || y > img.height - height) {
    fail(errc::bad_parameter, "crop {}x{} at ({}, {}) is outside the {}x{} image", width, height, x, y, img.width, img.height);
  }
  image_rgb8 out;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3);
  for (int row = 0; row < height; ++row) std::memcpy(out.at(0, row), img.at(x, y + row), static_cast<std::size_t>(width) * 3);
  return out;
}

}  // namespace acg2vec::image
