#pragma once
// Image encoding for results that are images (upscaling): RGBA pixels to PNG, WebP or JPEG bytes.

#include <string>
#include <string_view>

#include "image/decode.h"

namespace acg2vec::image {

/// @brief "png", "webp" or "jpeg" for the names users type (png, webp, jpg, jpeg; any case);
/// throws bad_parameter for anything else.
std::string_view parse_output_format(std::string_view name);

/// @brief MIME type of an output format ("image/png", "image/webp", "image/jpeg").
std::string_view output_content_type(std::string_view format);

/// @brief Encodes img as format (see parse_output_format). PNG and WebP keep alpha when
/// img.has_alpha (lossless WebP then, so that edges stay exact); JPEG has no alpha, so a
/// transparent image is composited on white first. quality applies to JPEG and lossy WebP.
std::string encode_image(const image_rgba8& img, std::string_view format, int quality = 92);

}  // namespace acg2vec::image
