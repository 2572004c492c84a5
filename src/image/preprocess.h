#pragma once
// Turns decoded pixels into the float tensor a model expects. Each resize_mode is one exact,
// tested procedure (tests/parity/test_preprocess.py compares each against an independent reference):
//
// - stretch_bilinear_tf: tf.image.resize(method=bilinear) defaults: half-pixel centres, no antialias,
//   aspect ratio not kept, float output not rounded; then / scale. (DeepDanbooru, illust2vec 512,
//   pix2score 224.) Matches torch interpolate(bilinear, align_corners=False, antialias=False). Source
//   coordinates are computed in double (TF/torch use float, which moves weights by ~1 float ulp of
//   the coordinate: <= 4e-5 after / 255 on the test images).
// - stretch_bilinear_align_corners: / scale first, then tf.image.resizeBilinear(alignCorners=true)
//   (nsfwjs). Matches torch interpolate(bilinear, align_corners=True).
// - clip_center_crop_bicubic: centre crop to c = min(H, W) at offsets floor((H-c)/2), floor((W-c)/2),
//   then PIL Image.resize(BICUBIC) reproduced bit for bit (Keys cubic a = -0.5, support widened by the
//   downscale factor, 22-bit fixed-point weights, horizontal pass first, 8-bit rounding after each
//   pass), then / scale. The values before / scale are therefore integers 0..255, as in the PIL/torchvision
//   pipeline CLIP was trained with.
// - pad_square_area: pad to a max(H, W) square of pad_fill (image centred at floor offsets), then area
//   resize (each output pixel is the mean of the input area it covers, partial pixels weighted by the
//   covered fraction, as cv2 INTER_AREA does when shrinking), float not rounded. (What WD tagger tools
//   built on cv2.INTER_AREA do: BGR, scale 1.)
// - pad_square_bicubic: SmilingWolf's reference WD v3 app: pad to a max(H, W) square of pad_fill (image
//   centred at floor offsets), then PIL Image.resize(BICUBIC) as in clip_center_crop_bicubic, so the
//   values before / scale are integers 0..255. (WD v3 taggers: BGR, scale 1.)
//
// After resizing, every mode applies (v / scale - mean[c]) / std[c] per RGB channel, then reorders to
// BGR if asked, then lays the values out NHWC or NCHW.

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "image/decode.h"

namespace acg2vec::image {

enum class resize_mode {
  stretch_bilinear_tf,
  stretch_bilinear_align_corners,
  clip_center_crop_bicubic,
  pad_square_area,
  pad_square_bicubic
};

struct preprocess_spec {
  resize_mode mode = resize_mode::stretch_bilinear_tf;
  int width = 0;
  int height = 0;
  bool nchw = false;  ///< false: NHWC
  bool bgr = false;   ///< false: RGB channel order
  float scale = 1.0f; ///< values are divided by this
  std::array<float, 3> mean{0, 0, 0};  ///< per RGB channel, subtracted after / scale
  std::array<float, 3> std{1, 1, 1};   ///< per RGB channel, divided by after the mean
  std::uint8_t pad_fill = 255;         ///< pad_square_area: the padding grey level
};

/// A batch of one image as floats; data is laid out NCHW or NHWC as nchw says.
struct float_image {
  int batch = 1;
  int channels = 3;
  int height = 0;
  int width = 0;
  bool nchw = false;
  std::vector<float> data;

  /// @brief Value at (channel c, row y, column x) of the single image, whatever the layout.
  [[nodiscard]] float at(int c, int y, int x) const noexcept {
    const auto h = static_cast<std::size_t>(height);
    const auto w = static_cast<std::size_t>(width);
    const auto cs = static_cast<std::size_t>(channels);
    return nchw ? data[(static_cast<std::size_t>(c) * h + static_cast<std::size_t>(y)) * w + static_cast<std::size_t>(x)]
                : data[(static_cast<std::size_t>(y) * w + static_cast<std::size_t>(x)) * cs + static_cast<std::size_t>(c)];
  }
};

/// @brief The resize mode named in a manifest ("stretch_bilinear_tf", ..., "pad_square" = pad_square_area).
resize_mode parse_resize_mode(std::string_view name);
/// @brief The manifest name of a resize mode.
std::string_view to_string(resize_mode mode) noexcept;

/// @brief The spec described by a manifest "input" object; throws errc::bad_parameter naming the bad key.
///
/// Keys: "size": [height, width] or one number (square; required), "resize" (default stretch_bilinear_tf),
/// "layout": "NHWC"|"NCHW" (default NHWC), "channels": "RGB"|"BGR" (default RGB), "scale" (> 0, default 1),
/// "mean"/"std": three numbers or one (default 0 / 1), "pad" (or "pad_fill"): 0..255 (default 255). With
/// "resize": "clip_center_crop_bicubic" the defaults are CLIP's: NCHW, scale 255, CLIP mean/std.
/// Any other key is an error naming it.
preprocess_spec parse_preprocess_spec(const nlohmann::json& input);

/// @brief The CLIP image constants of seed-spec Appendix A (224, ÷255, mean/std, NCHW, RGB).
preprocess_spec clip_preprocess_spec(int size = 224);

/// @brief Resizes and normalises one image into a batch-of-one tensor; throws bad_parameter on a bad spec.
float_image preprocess(const image_rgb8& img, const preprocess_spec& spec);

// The resamplers, exposed for the perceptual signature and for tests. All work on 8-bit RGB input.

/// @brief TF/torch half-pixel bilinear (align_corners=false) or align_corners=true; float HWC RGB out.
std::vector<float> resize_bilinear(const image_rgb8& img, int out_width, int out_height, bool align_corners);
/// @brief Exact area average (fractional coverage); float HWC RGB out.
std::vector<float> resize_area(const image_rgb8& img, int out_width, int out_height);
/// @brief PIL Image.resize(BICUBIC) for RGB images, bit-exact; 8-bit RGB out.
image_rgb8 resize_bicubic_pil(const image_rgb8& img, int out_width, int out_height);
/// @brief Centre of the image padded to a square of one grey level (floor offsets).
image_rgb8 pad_to_square(const image_rgb8& img, std::uint8_t fill);
/// @brief Largest centred square crop (floor offsets).
image_rgb8 center_crop_square(const image_rgb8& img);

}  // namespace acg2vec::image
