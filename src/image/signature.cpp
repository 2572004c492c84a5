#include "image/signature.h"

#include "core/cpu_turns.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>

#include "core/error.h"
#include "image/preprocess.h"

namespace acg2vec::image {
namespace {

constexpr int n = signature_grid;
using plane = std::array<double, n * n>;

// Orthonormal DCT-II basis: basis[u][x] = c(u) cos(pi (2x + 1) u / 2n).
const std::array<std::array<double, n>, n>& dct_basis() {
  static const auto basis = [] {
    std::array<std::array<double, n>, n> b{};
    for (int u = 0; u < n; ++u) {
      const double cu = u == 0 ? std::sqrt(1.0 / n) : std::sqrt(2.0 / n);
      for (int x = 0; x < n; ++x) b[u][x] = cu * std::cos(std::numbers::pi * (2 * x + 1) * u / (2.0 * n));
    }
    return b;
  }();
  return basis;
}

// The low `block` x `block` frequencies of the 2-D DCT, row-major by (v vertical, u horizontal).
std::vector<double> low_dct(const plane& p, int block) {
  const auto& b = dct_basis();
  // Rows first: r[y][u] = sum_x p[y][x] b[u][x].
  std::vector<double> rows(static_cast<std::size_t>(n * block));
  for (int y = 0; y < n; ++y) {
    for (int u = 0; u < block; ++u) {
      double acc = 0;
      for (int x = 0; x < n; ++x) acc += p[static_cast<std::size_t>(y * n + x)] * b[static_cast<std::size_t>(u)][static_cast<std::size_t>(x)];
      rows[static_cast<std::size_t>(y * block + u)] = acc;
    }
  }
  std::vector<double> out(static_cast<std::size_t>(block * block));
  for (int v = 0; v < block; ++v) {
    for (int u = 0; u < block; ++u) {
      double acc = 0;
      for (int y = 0; y < n; ++y) acc += rows[static_cast<std::size_t>(y * block + u)] * b[static_cast<std::size_t>(v)][static_cast<std::size_t>(y)];
      out[static_cast<std::size_t>(v * block + u)] = acc;
    }
  }
  return out;
}

// Horizontal frequency of each signature entry, in signature order (for mirroring).
const std::vector<int>& horizontal_frequencies() {
  static const std::vector<int> freqs = [] {
    std::vector<int> f;
    for (int v = 0; v < signature_luma_block; ++v) {
      for (int u = 0; u < signature_luma_block; ++u) {
        if (u != 0 || v != 0) f.push_back(u);
      }
    }
    for (int ch = 0; ch < 2; ++ch) {
      for (int v = 0; v < signature_chroma_block; ++v) {
        for (int u = 0; u < signature_chroma_block; ++u) f.push_back(u);
      }
    }
    return f;
  }();
  return freqs;
}

// Whether every channel varies by at most border_flatness along row y (columns [x0, x1)) or column x.
bool line_flat(const image_rgb8& img, int fixed, int from, int to, bool is_row) {
  std::uint8_t lo[3] = {255, 255, 255};
  std::uint8_t hi[3] = {0, 0, 0};
  for (int i = from; i < to; ++i) {
    const std::uint8_t* p = is_row ? img.at(i, fixed) : img.at(fixed, i);
    for (int c = 0; c < 3; ++c) {
      lo[c] = std::min(lo[c], p[c]);
      hi[c] = std::max(hi[c], p[c]);
      if (hi[c] - lo[c] > signature_border_flatness) return false;
    }
  }
  return true;
}

}  // namespace

// The region left after peeling near-uniform rows and columns off the edges, repeated until stable
// (a black frame around a white margin goes in two rounds). Never below a quarter of either side.
image_rgb8 trim_flat_borders(const image_rgb8& img) {
  int x0 = 0;
  int y0 = 0;
  int x1 = img.width;
  int y1 = img.height;
  const int min_w = std::max(1, img.width / 4);
  const int min_h = std::max(1, img.height / 4);
  for (int round = 0; round < 8; ++round) {
    const int before = x0 + y0 + x1 + y1;
    while (y1 - y0 > min_h && line_flat(img, y0, x0, x1, true)) ++y0;
    while (y1 - y0 > min_h && line_flat(img, y1 - 1, x0, x1, true)) --y1;
    while (x1 - x0 > min_w && line_flat(img, x0, y0, y1, false)) ++x0;
    while (x1 - x0 > min_w && line_flat(img, x1 - 1, y0, y1, false)) --x1;
    if (x0 + y0 + x1 + y1 == before) break;
  }
  if (x0 == 0 && y0 == 0 && x1 == img.width && y1 == img.height) return img;
  return crop(img, x0, y0, x1 - x0, y1 - y0);
}


std::vector<float> perceptual_signature(const image_rgb8& img) {
  const input_turn turn;  // shares the CPU with forward passes (core/cpu_turns.h)
  if (img.empty()) fail(errc::bad_parameter, "cannot compute the signature of an empty image");
  const std::vector<float> small = resize_area(trim_flat_borders(img), n, n);
  plane luma{};
  plane cb{};
  plane cr{};
  for (std::size_t i = 0; i < static_cast<std::size_t>(n * n); ++i) {
    const double r = small[i * 3] / 255.0;
    const double g = small[i * 3 + 1] / 255.0;
    const double b = small[i * 3 + 2] / 255.0;
    luma[i] = 0.299 * r + 0.587 * g + 0.114 * b;
    cb[i] = -0.168736 * r - 0.331264 * g + 0.5 * b;
    cr[i] = 0.5 * r - 0.418688 * g - 0.081312 * b;
  }
  std::vector<double> sig;
  sig.reserve(signature_dim);
  const auto y = low_dct(luma, signature_luma_block);
  sig.insert(sig.end(), y.begin() + 1, y.end());
  for (const plane* p : {&cb, &cr}) {
    for (double c : low_dct(*p, signature_chroma_block)) sig.push_back(c * signature_chroma_weight);
  }
  double norm = 0;
  for (double v : sig) norm += v * v;
  norm = std::sqrt(norm);
  std::vector<float> out(sig.size(), 0.0f);
  // Below this the image is flat to within rounding; a zero vector matches nothing.
  if (norm > 1e-9) {
    for (std::size_t i = 0; i < sig.size(); ++i) out[i] = static_cast<float>(sig[i] / norm);
  }
  return out;
}

std::vector<float> mirror_signature(const std::vector<float>& signature) {
  if (signature.size() != static_cast<std::size_t>(signature_dim)) {
    fail(errc::bad_parameter, "signature has {} values, expected {}", signature.size(), signature_dim);
  }
  std::vector<float> out = signature;
  const auto& freqs = horizontal_frequencies();
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (freqs[i] % 2 == 1) out[i] = -out[i];
  }
  return out;
}

std::vector<float> perceptual_signature_mirrored(const image_rgb8& img) { return mirror_signature(perceptual_signature(img)); }

float signature_similarity_from_inner_product(float inner_product) noexcept {
  if (!(inner_product > 0)) return 0.0f;
  return std::min(inner_product, 1.0f);
}

float signature_similarity_from_squared_l2(float squared_distance) noexcept {
  return signature_similarity_from_inner_product(1.0f - squared_distance / 2.0f);
}

}  // namespace acg2vec::image
