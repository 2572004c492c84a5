#include "core/error.h"
#include "fuzz_util.h"
#include "image/decode.h"
#include "image/preprocess.h"
#include "image/signature.h"
#include "targets.h"

namespace acg2vec::fuzz {

int fuzz_image(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  image::image_rgb8 img;
  try {
    img = image::decode_image(as_text(data, size), image::decode_limits{});
  } catch (const error&) {
    return 0;
  }
  // The last byte picks the resize mode, so every mode sees decoded pixels; the output stays
  // small because the interesting part is reading an arbitrary-sized source image.
  image::preprocess_spec spec;
  const int modes = 4;
  spec.mode = static_cast<image::resize_mode>(size == 0 ? 0 : data[size - 1] % modes);
  spec.width = 24;
  spec.height = 16;
  spec.nchw = (size % 2) == 0;
  spec.scale = 255.0f;
  auto tensor = image::preprocess(img, spec);
  if (tensor.data.size() != static_cast<std::size_t>(spec.width) * spec.height * 3) std::abort();
  auto signature = image::perceptual_signature(img);
  if (signature.size() != static_cast<std::size_t>(image::signature_dim)) std::abort();
  return 0;
}

}  // namespace acg2vec::fuzz
