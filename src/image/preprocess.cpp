#include "image/preprocess.h"

#include "core/cpu_turns.h"

#include "core/timing.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace acg2vec::image {
namespace {

constexpr int max_output_side = 16384;

void check_output_size(int width, int height) {
  if (width <= 0 || height <= 0 || width > max_output_side || height > max_output_side) {
    fail(errc::bad_parameter, "resize target {}x{} must be within 1..{}", width, height, max_output_side);
  }
}

void check_input(const image_rgb8& img) {
  if (img.empty() || img.pixels.size() != static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * 3) {
    fail(errc::bad_parameter, "image {}x{} is empty or has {} bytes of pixels", img.width, img.height, img.pixels.size());
  }
}

// ---------------------------------------------------------------------------------------------
// Bilinear, the TensorFlow way (resize_bilinear_op.cc): source coordinate, lower/upper taps clamped
// to the image, result = a + (b - a) * t, horizontal first. TF and torch compute the coordinate in
// float, whose rounding (and whether the compiler fuses it into an FMA) moves t by up to one float ulp
// of the coordinate, ~1e-4 for 2000-pixel images; computing it in double makes the result the exact
// one, independent of the build, and within ~1e-7 of torch's float64 path.

struct lerp_tap {
  int lower = 0;
  int upper = 0;
  float t = 0;
};

std::vector<lerp_tap> bilinear_taps(int in_size, int out_size, bool align_corners) {
  std::vector<lerp_tap> taps(static_cast<std::size_t>(out_size));
  const bool aligned = align_corners && out_size > 1;
  const double scale = aligned ? static_cast<double>(in_size - 1) / static_cast<double>(out_size - 1)
                               : static_cast<double>(in_size) / static_cast<double>(out_size);
  for (int i = 0; i < out_size; ++i) {
    const double in = align_corners ? static_cast<double>(i) * scale : (static_cast<double>(i) + 0.5) * scale - 0.5;
    const double in_floor = std::floor(in);
    auto& tap = taps[static_cast<std::size_t>(i)];
    tap.lower = std::clamp(static_cast<int>(in_floor), 0, in_size - 1);
    tap.upper = std::clamp(static_cast<int>(std::ceil(in)), 0, in_size - 1);
    tap.t = static_cast<float>(in - in_floor);
  }
  return taps;
}

// ---------------------------------------------------------------------------------------------
// Area: output pixel i covers [i * s, (i + 1) * s) of the input with s = in / out; each input pixel j
// contributes |[j, j+1) ∩ that span| / s.

struct weighted_taps {
  int first = 0;
  std::vector<double> weights;
};

/// The horizontal pass of a separable resize: every source row resampled with taps (one per
/// output column), as doubles [height][taps.size() * 3]. A tap with no weights gives 0.
std::vector<double> resample_rows(const image_rgb8& img, const std::vector<weighted_taps>& taps) {
  const std::size_t row_len = taps.size() * 3;
  std::vector<double> rows(static_cast<std::size_t>(img.height) * row_len);
  for (int r = 0; r < img.height; ++r) {
    const std::uint8_t* src = img.at(0, r);
    double* dst = rows.data() + static_cast<std::size_t>(r) * row_len;
    for (const auto& x : taps) {
      double acc[3] = {0, 0, 0};
      const std::uint8_t* p = src + static_cast<std::size_t>(std::max(x.first, 0)) * 3;
      for (double w : x.weights) {
        acc[0] += w * p[0];
        acc[1] += w * p[1];
        acc[2] += w * p[2];
        p += 3;
      }
      *dst++ = acc[0];
      *dst++ = acc[1];
      *dst++ = acc[2];
    }
  }
  return rows;
}

std::vector<weighted_taps> area_taps(int in_size, int out_size) {
  std::vector<weighted_taps> taps(static_cast<std::size_t>(out_size));
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  for (int i = 0; i < out_size; ++i) {
    // Exact rational ends avoid drift: start = i * in / out.
    const double start = static_cast<double>(i) * in_size / out_size;
    const double end = static_cast<double>(i + 1) * in_size / out_size;
    const int first = static_cast<int>(std::floor(start));
    const int last = std::min(static_cast<int>(std::ceil(end)), in_size);  // exclusive
    auto& tap = taps[static_cast<std::size_t>(i)];
    tap.first = first;
    for (int j = first; j < last; ++j) {
      const double overlap = std::min(end, static_cast<double>(j + 1)) - std::max(start, static_cast<double>(j));
      tap.weights.push_back(std::max(overlap, 0.0) / scale);
    }
  }
  return taps;
}

// ---------------------------------------------------------------------------------------------
// PIL's Resample.c for 8-bit images, reproduced: double weights from the Keys cubic (a = -0.5) with
// the support widened by the downscale factor, normalised to sum 1, then 22-bit fixed point.

constexpr int pil_precision_bits = 32 - 8 - 2;

double pil_bicubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

struct fixed_taps {
  int first = 0;
  std::vector<int> weights;
};

std::vector<fixed_taps> pil_bicubic_taps(int in_size, int out_size) {
  constexpr double support_base = 2.0;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = support_base * filter_scale;
  const double ss = 1.0 / filter_scale;
  std::vector<fixed_taps> taps(static_cast<std::size_t>(out_size));
  std::vector<double> k;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    // (int) truncates toward zero, as in PIL; negative starts are clamped right after.
    int xmin = static_cast<int>(center - support + 0.5);
    xmin = std::max(xmin, 0);
    int xmax = static_cast<int>(center + support + 0.5);
    xmax = std::min(xmax, in_size) - xmin;
    k.assign(static_cast<std::size_t>(std::max(xmax, 0)), 0.0);
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = pil_bicubic((x + xmin - center + 0.5) * ss);
      k[static_cast<std::size_t>(x)] = w;
      ww += w;
    }
    auto& tap = taps[static_cast<std::size_t>(xx)];
    tap.first = xmin;
    tap.weights.resize(k.size());
    for (std::size_t x = 0; x < k.size(); ++x) {
      const double w = ww != 0.0 ? k[x] / ww : k[x];
      const double fixed = w * (1 << pil_precision_bits);
      tap.weights[x] = static_cast<int>(w < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
  }
  return taps;
}

inline std::uint8_t pil_clip8(int v) noexcept {
  if (v >= (255 << pil_precision_bits)) return 255;
  if (v <= 0) return 0;
  return static_cast<std::uint8_t>(v >> pil_precision_bits);
}

}  // namespace

namespace {

// divisor: the source values are divided by it before interpolating (nsfwjs order); 1 = untouched.
std::vector<float> bilinear_core(const image_rgb8& img, int out_width, int out_height, bool align_corners, float divisor) {
  check_input(img);
  check_output_size(out_width, out_height);
  const auto xs = bilinear_taps(img.width, out_width, align_corners);
  const auto ys = bilinear_taps(img.height, out_height, align_corners);
  const std::size_t row_len = static_cast<std::size_t>(out_width) * 3;

  // Horizontal pass, only for the input rows the vertical pass reads.
  std::vector<int> row_slot(static_cast<std::size_t>(img.height), -1);
  int slots = 0;
  for (const auto& y : ys) {
    for (int r : {y.lower, y.upper}) {
      if (row_slot[static_cast<std::size_t>(r)] < 0) row_slot[static_cast<std::size_t>(r)] = slots++;
    }
  }
  std::vector<float> rows(static_cast<std::size_t>(slots) * row_len);
  for (int r = 0; r < img.height; ++r) {
    const int slot = row_slot[static_cast<std::size_t>(r)];
    if (slot < 0) continue;
    float* dst = rows.data() + static_cast<std::size_t>(slot) * row_len;
    const std::uint8_t* src = img.at(0, r);
    for (const auto& x : xs) {
      const std::uint8_t* a = src + static_cast<std::size_t>(x.lower) * 3;
      const std::uint8_t* b = src + static_cast<std::size_t>(x.upper) * 3;
      for (int c = 0; c < 3; ++c) {
        float va = a[c];
        float vb = b[c];
        if (divisor != 1.0f) {
          va /= divisor;
          vb /= divisor;
        }
        *dst++ = va + (vb - va) * x.t;
      }
    }
  }

  std::vector<float> out(static_cast<std::size_t>(out_height) * row_len);
  for (int i = 0; i < out_height; ++i) {
    const auto& y = ys[static_cast<std::size_t>(i)];
    const float* top = rows.data() + static_cast<std::size_t>(row_slot[static_cast<std::size_t>(y.lower)]) * row_len;
    const float* bottom = rows.data() + static_cast<std::size_t>(row_slot[static_cast<std::size_t>(y.upper)]) * row_len;
    float* dst = out.data() + static_cast<std::size_t>(i) * row_len;
    for (std::size_t k = 0; k < row_len; ++k) dst[k] = top[k] + (bottom[k] - top[k]) * y.t;
  }
  return out;
}

// Area resize of the image centred in a side x side square of `fill`, without building the square:
// a very elongated image (100000 x 1 passes the pixel limit) would need side^2 pixels. Pixels outside
// the image contribute fill times their total weight, computed from the covered lengths, so the cost
// is that of resizing the image itself. Equal to resize_area(pad_to_square(img, fill), ...) up to
// the order of the floating-point sums.
std::vector<float> resize_area_padded(const image_rgb8& img, std::uint8_t fill, int out_width, int out_height) {
  const int side = std::max(img.width, img.height);
  if (img.width == side && img.height == side) return resize_area(img, out_width, out_height);
  const int left = (side - img.width) / 2;
  const int top = (side - img.height) / 2;
  // Per output index along one axis: the taps that fall on the image, and the weight of that part.
  struct axis_taps {
    std::vector<weighted_taps> taps;
    std::vector<double> inside;
  };
  auto clipped = [side](int offset, int length, int out_size) {
    axis_taps a;
    a.taps.resize(static_cast<std::size_t>(out_size));
    a.inside.resize(static_cast<std::size_t>(out_size));
    const double scale = static_cast<double>(side) / static_cast<double>(out_size);
    for (int i = 0; i < out_size; ++i) {
      const double start = static_cast<double>(i) * side / out_size;
      const double end = static_cast<double>(i + 1) * side / out_size;
      const int first = std::max(static_cast<int>(std::floor(start)), offset);
      const int last = std::min(static_cast<int>(std::ceil(end)), offset + length);
      auto& tap = a.taps[static_cast<std::size_t>(i)];
      tap.first = first - offset;
      double sum = 0;
      for (int j = first; j < last; ++j) {
        const double overlap = std::min(end, static_cast<double>(j + 1)) - std::max(start, static_cast<double>(j));
        tap.weights.push_back(std::max(overlap, 0.0) / scale);
        sum += tap.weights.back();
      }
      a.inside[static_cast<std::size_t>(i)] = sum;
    }
    return a;
  };
  const auto xs = clipped(left, img.width, out_width);
  const auto ys = clipped(top, img.height, out_height);
  const std::size_t row_len = static_cast<std::size_t>(out_width) * 3;

  const std::vector<double> rows = resample_rows(img, xs.taps);

  std::vector<float> out(static_cast<std::size_t>(out_height) * row_len);
  std::vector<double> acc(row_len);
  for (int i = 0; i < out_height; ++i) {
    const auto& y = ys.taps[static_cast<std::size_t>(i)];
    std::fill(acc.begin(), acc.end(), 0.0);
    for (std::size_t j = 0; j < y.weights.size(); ++j) {
      const double w = y.weights[j];
      const double* src = rows.data() + static_cast<std::size_t>(y.first + static_cast<int>(j)) * row_len;
      for (std::size_t k = 0; k < row_len; ++k) acc[k] += w * src[k];
    }
    const double wy = ys.inside[static_cast<std::size_t>(i)];
    float* dst = out.data() + static_cast<std::size_t>(i) * row_len;
    for (std::size_t k = 0; k < row_len; ++k) {
      // The output's weights sum to 1; what does not fall on the image falls on the padding.
      const double outside = 1.0 - wy * xs.inside[k / 3];
      dst[k] = static_cast<float>(acc[k] + outside * fill);
    }
  }
  return out;
}

}  // namespace

std::vector<float> resize_bilinear(const image_rgb8& img, int out_width, int out_height, bool align_corners) {
  return bilinear_core(img, out_width, out_height, align_corners, 1.0f);
}

std::vector<float> resize_area(const image_rgb8& img, int out_width, int out_height) {
  check_input(img);
  check_output_size(out_width, out_height);
  const auto xs = area_taps(img.width, out_width);
  const auto ys = area_taps(img.height, out_height);
  const std::size_t row_len = static_cast<std::size_t>(out_width) * 3;

  const std::vector<double> rows = resample_rows(img, xs);

  std::vector<float> out(static_cast<std::size_t>(out_height) * row_len);
  std::vector<double> acc(row_len);
  for (int i = 0; i < out_height; ++i) {
    const auto& y = ys[static_cast<std::size_t>(i)];
    std::fill(acc.begin(), acc.end(), 0.0);
    for (std::size_t j = 0; j < y.weights.size(); ++j) {
      const double w = y.weights[j];
      const double* src = rows.data() + static_cast<std::size_t>(y.first + static_cast<int>(j)) * row_len;
      for (std::size_t k = 0; k < row_len; ++k) acc[k] += w * src[k];
    }
    float* dst = out.data() + static_cast<std::size_t>(i) * row_len;
    for (std::size_t k = 0; k < row_len; ++k) dst[k] = static_cast<float>(acc[k]);
  }
  return out;
}

image_rgb8 resize_bicubic_pil(const image_rgb8& img, int out_width, int out_height) {
  check_input(img);
  check_output_size(out_width, out_height);
  const auto xs = pil_bicubic_taps(img.width, out_width);
  const auto ys = pil_bicubic_taps(img.height, out_height);

  // Horizontal pass into an 8-bit intermediate, as PIL does.
  image_rgb8 mid;
  mid.width = out_width;
  mid.height = img.height;
  mid.pixels.resize(static_cast<std::size_t>(out_width) * static_cast<std::size_t>(img.height) * 3);
  constexpr int half = 1 << (pil_precision_bits - 1);
  for (int r = 0; r < img.height; ++r) {
    const std::uint8_t* src = img.at(0, r);
    std::uint8_t* dst = mid.at(0, r);
    for (const auto& x : xs) {
      int acc[3] = {half, half, half};
      const std::uint8_t* p = src + static_cast<std::size_t>(x.first) * 3;
      for (int w : x.weights) {
        acc[0] += p[0] * w;
        acc[1] += p[1] * w;
        acc[2] += p[2] * w;
        p += 3;
      }
      *dst++ = pil_clip8(acc[0]);
      *dst++ = pil_clip8(acc[1]);
      *dst++ = pil_clip8(acc[2]);
    }
  }

  image_rgb8 out;
  out.width = out_width;
  out.height = out_height;
  out.pixels.resize(static_cast<std::size_t>(out_width) * static_cast<std::size_t>(out_height) * 3);
  const std::size_t row_len = static_cast<std::size_t>(out_width) * 3;
  std::vector<int> acc(row_len);
  for (int i = 0; i < out_height; ++i) {
    const auto& y = ys[static_cast<std::size_t>(i)];
    std::fill(acc.begin(), acc.end(), half);
    for (std::size_t j = 0; j < y.weights.size(); ++j) {
      const int w = y.weights[j];
      const std::uint8_t* src = mid.at(0, y.first + static_cast<int>(j));
      for (std::size_t k = 0; k < row_len; ++k) acc[k] += src[k] * w;
    }
    std::uint8_t* dst = out.at(0, i);
    for (std::size_t k = 0; k < row_len; ++k) dst[k] = pil_clip8(acc[k]);
  }
  return out;
}

image_rgb8 pad_to_square(const image_rgb8& img, std::uint8_t fill) {
  check_input(img);
  const int side = std::max(img.width, img.height);
  if (img.width == side && img.height == side) return img;
  image_rgb8 out = make_image(side, side, fill, fill, fill);
  const int left = (side - img.width) / 2;
  const int top = (side - img.height) / 2;
  for (int y = 0; y < img.height; ++y) {
    std::memcpy(out.at(left, top + y), img.at(0, y), static_cast<std::size_t>(img.width) * 3);
  }
  return out;
}

image_rgb8 center_crop_square(const image_rgb8& img) {
  check_input(img);
  const int side = std::min(img.width, img.height);
  if (img.width == side && img.height == side) return img;
  return crop(img, (img.width - side) / 2, (img.height - side) / 2, side, side);
}

float_image preprocess(const image_rgb8& img, const preprocess_spec& spec) {
  const input_turn turn;  // shares the CPU with forward passes (core/cpu_turns.h)
  timed_span span("preprocess");
  check_input(img);
  check_output_size(spec.width, spec.height);
  if (!(spec.scale > 0) || !std::isfinite(spec.scale)) fail(errc::bad_parameter, "preprocess scale {} must be > 0", spec.scale);
  for (float s : spec.std) {
    if (s == 0 || !std::isfinite(s)) fail(errc::bad_parameter, "preprocess std {} must be finite and non-zero", s);
  }

  // Every branch yields HWC RGB floats of spec.height x spec.width, before / scale unless noted.
  std::vector<float> hwc;
  bool scaled = false;
  switch (spec.mode) {
    case resize_mode::stretch_bilinear_tf:
      hwc = resize_bilinear(img, spec.width, spec.height, false);
      break;
    case resize_mode::stretch_bilinear_align_corners:
      // nsfwjs divides before resizing; interpolation is linear, but keeping the reference's order
      // keeps the float rounding the same too.
      hwc = bilinear_core(img, spec.width, spec.height, true, spec.scale);
      scaled = true;
      break;
    case resize_mode::clip_center_crop_bicubic: {
      const image_rgb8 resized = resize_bicubic_pil(center_crop_square(img), spec.width, spec.height);
      hwc.assign(resized.pixels.begin(), resized.pixels.end());
      break;
    }
    case resize_mode::pad_square_area:
      hwc = resize_area_padded(img, spec.pad_fill, spec.width, spec.height);
      break;
    case resize_mode::pad_square_bicubic: {
      const image_rgb8 resized = resize_bicubic_pil(pad_to_square(img, spec.pad_fill), spec.width, spec.height);
      hwc.assign(resized.pixels.begin(), resized.pixels.end());
      break;
    }
  }

  float_image out;
  out.height = spec.height;
  out.width = spec.width;
  out.nchw = spec.nchw;
  out.data.resize(hwc.size());
  const std::size_t plane = static_cast<std::size_t>(spec.width) * static_cast<std::size_t>(spec.height);
  for (std::size_t p = 0; p < plane; ++p) {
    for (std::size_t c = 0; c < 3; ++c) {
      float v = hwc[p * 3 + c];
      if (!scaled) v = v / spec.scale;
      v = (v - spec.mean[c]) / spec.std[c];
      const std::size_t oc = spec.bgr ? 2 - c : c;
      out.data[spec.nchw ? oc * plane + p : p * 3 + oc] = v;
    }
  }
  return out;
}

resize_mode parse_resize_mode(std::string_view name) {
  if (name == "stretch_bilinear_tf") return resize_mode::stretch_bilinear_tf;
  if (name == "stretch_bilinear_align_corners") return resize_mode::stretch_bilinear_align_corners;
  if (name == "clip_center_crop_bicubic") return resize_mode::clip_center_crop_bicubic;
  if (name == "pad_square_area" || name == "pad_square") return resize_mode::pad_square_area;
  if (name == "pad_square_bicubic") return resize_mode::pad_square_bicubic;
  fail(errc::bad_parameter,
       "unknown resize \"{}\" (expected stretch_bilinear_tf, stretch_bilinear_align_corners, clip_center_crop_bicubic, "
       "pad_square_bicubic or pad_square_area)",
       name);
}

std::string_view to_string(resize_mode mode) noexcept {
  switch (mode) {
    case resize_mode::stretch_bilinear_tf:
      return "stretch_bilinear_tf";
    case resize_mode::stretch_bilinear_align_corners:
      return "stretch_bilinear_align_corners";
    case resize_mode::clip_center_crop_bicubic:
      return "clip_center_crop_bicubic";
    case resize_mode::pad_square_area:
      return "pad_square_area";
    case resize_mode::pad_square_bicubic:
      return "pad_square_bicubic";
  }
  return "?";
}

preprocess_spec clip_preprocess_spec(int size) {
  preprocess_spec spec;
  spec.mode = resize_mode::clip_center_crop_bicubic;
  spec.width = size;
  spec.height = size;
  spec.nchw = true;
  spec.scale = 255.0f;
  spec.mean = {0.48145466f, 0.4578275f, 0.40821073f};
  spec.std = {0.26862954f, 0.26130258f, 0.27577711f};
  return spec;
}

namespace {

float json_number(const nlohmann::json& v, std::string_view key) {
  if (!v.is_number()) fail(errc::bad_parameter, "preprocess \"{}\" must be a number, got {}", key, v.dump());
  const double d = v.get<double>();
  if (!std::isfinite(d)) fail(errc::bad_parameter, "preprocess \"{}\" must be finite", key);
  return static_cast<float>(d);
}

std::array<float, 3> json_triple(const nlohmann::json& v, std::string_view key) {
  if (v.is_number()) {
    const float x = json_number(v, key);
    return {x, x, x};
  }
  if (!v.is_array() || v.size() != 3) fail(errc::bad_parameter, "preprocess \"{}\" must be 3 numbers, got {}", key, v.dump());
  return {json_number(v[0], key), json_number(v[1], key), json_number(v[2], key)};
}

int json_side(const nlohmann::json& v) {
  if (!v.is_number_integer() || v.get<long long>() <= 0 || v.get<long long>() > max_output_side) {
    fail(errc::bad_parameter, "preprocess \"size\" entries must be integers in 1..{}, got {}", max_output_side, v.dump());
  }
  return static_cast<int>(v.get<long long>());
}

std::string json_string(const nlohmann::json& v, std::string_view key) {
  if (!v.is_string()) fail(errc::bad_parameter, "preprocess \"{}\" must be a string, got {}", key, v.dump());
  return v.get<std::string>();
}

}  // namespace

preprocess_spec parse_preprocess_spec(const nlohmann::json& input) {
  if (!input.is_object()) fail(errc::bad_parameter, "model \"input\" must be an object, got {}", input.dump());
  preprocess_spec spec;
  if (auto it = input.find("resize"); it != input.end()) spec.mode = parse_resize_mode(json_string(*it, "resize"));

  const auto size = input.find("size");
  if (size == input.end()) fail(errc::bad_parameter, "model \"input\" has no \"size\"");
  if (size->is_array()) {
    if (size->size() != 2) fail(errc::bad_parameter, "preprocess \"size\" must be [height, width], got {}", size->dump());
    spec.height = json_side((*size)[0]);
    spec.width = json_side((*size)[1]);
  } else {
    spec.height = spec.width = json_side(*size);
  }

  // CLIP's constants are the defaults of its mode; explicit keys below override them.
  if (spec.mode == resize_mode::clip_center_crop_bicubic) {
    const preprocess_spec clip = clip_preprocess_spec();
    spec.mean = clip.mean;
    spec.std = clip.std;
    spec.scale = clip.scale;
    spec.nchw = clip.nchw;
  }
  if (auto it = input.find("layout"); it != input.end()) {
    const std::string layout = json_string(*it, "layout");
    if (layout == "NCHW" || layout == "NHWC") {
      spec.nchw = layout == "NCHW";
    } else {
      fail(errc::bad_parameter, "preprocess \"layout\" must be NHWC or NCHW, got \"{}\"", layout);
    }
  }
  if (auto it = input.find("channels"); it != input.end()) {
    const std::string channels = json_string(*it, "channels");
    if (channels == "BGR") {
      spec.bgr = true;
    } else if (channels != "RGB") {
      fail(errc::bad_parameter, "preprocess \"channels\" must be RGB or BGR, got \"{}\"", channels);
    }
  }
  if (auto it = input.find("scale"); it != input.end()) {
    spec.scale = json_number(*it, "scale");
    if (!(spec.scale > 0)) fail(errc::bad_parameter, "preprocess \"scale\" must be > 0, got {}", spec.scale);
  }
  if (auto it = input.find("mean"); it != input.end()) spec.mean = json_triple(*it, "mean");
  if (auto it = input.find("std"); it != input.end()) {
    spec.std = json_triple(*it, "std");
    for (float s : spec.std) {
      if (s == 0) fail(errc::bad_parameter, "preprocess \"std\" entries must be non-zero");
    }
  }
  // "pad" is the documented name; "pad_fill" (the field's name here) is accepted too.
  if (input.contains("pad") && input.contains("pad_fill")) {
    fail(errc::bad_parameter, "preprocess \"pad\" and \"pad_fill\" are the same setting; give one");
  }
  for (const char* key : {"pad", "pad_fill"}) {
    auto it = input.find(key);
    if (it == input.end()) continue;
    if (!it->is_number_integer() || it->get<long long>() < 0 || it->get<long long>() > 255) {
      fail(errc::bad_parameter, "preprocess \"{}\" must be an integer 0..255, got {}", key, it->dump());
    }
    spec.pad_fill = static_cast<std::uint8_t>(it->get<long long>());
  }
  // Decoding always composites alpha on white (image/decode.h); manifests may say so explicitly.
  if (auto it = input.find("alpha"); it != input.end() && json_string(*it, "alpha") != "composite_white") {
    fail(errc::bad_parameter, "preprocess \"alpha\" must be \"composite_white\" (the only behaviour), got {}", it->dump());
  }
  static const char* const known[] = {"size", "resize", "layout", "channels", "scale", "mean", "std", "pad", "pad_fill",
                                      "alpha"};
  for (const auto& [key, _] : input.items()) {
    if (std::find(std::begin(known), std::end(known), key) == std::end(known)) {
      fail(errc::bad_parameter,
           "unknown preprocess key \"input.{}\" (size, resize, layout, channels, scale, mean, std, pad, alpha)", key);
    }
  }
  return spec;
}

}  // namespace acg2vec::image
