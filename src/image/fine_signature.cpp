#include "image/fine_signature.h"

#include "core/cpu_turns.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>

#include "core/error.h"
#include "image/preprocess.h"
#include "image/signature.h"

namespace acg2vec::image {
namespace {

constexpr int g = fine_side;

// Per-axis alignment: cell i of the reference (centre u = (i + 0.5) / g) samples the source at
// normalised coordinate offset + scale * u.
struct axis_map {
  double scale = 1.0;
  double offset = 0.0;
};

double sample_1d(std::span<const double> p, double x) {
  const double pos = x * g - 0.5;
  const int x0 = static_cast<int>(std::floor(pos));
  const double f = pos - x0;
  const auto at = [&](int i) { return p[static_cast<std::size_t>(std::clamp(i, 0, g - 1))]; };
  return at(x0) * (1 - f) + at(x0 + 1) * f;
}

// The best scale/offset for one axis from the 1-D profiles (mean over the other axis).
axis_map fit_axis(std::span<const double> source, std::span<const double> reference) {
  axis_map best;
  double best_err = std::numeric_limits<double>::infinity();
  for (int si = 0; si <= 30; ++si) {
    const double s = 0.85 + 0.01 * si;
    for (int ti = 0; ti <= 60; ++ti) {
      const double t = -0.15 + 0.005 * ti;
      double err = 0;
      int n = 0;
      for (int i = 0; i < g; ++i) {
        const double m = t + s * (i + 0.5) / g;
        if (m < 0 || m > 1) continue;
        err += std::abs(reference[static_cast<std::size_t>(i)] - sample_1d(source, m));
        ++n;
      }
      // A fit that leaves a fifth of the reference uncovered is a crop larger than this stage handles.
      if (n < g * 4 / 5) continue;
      err /= n;
      if (err < best_err) {
        best_err = err;
        best = {s, t};
      }
    }
  }
  return best;
}

struct params {
  std::array<double, 4> p{1, 0, 1, 0};  // scale x, offset x, scale y, offset y
};

// Resamples src (bilinear) into the reference frame; returns the mean absolute difference against
// ref over the valid cells, or +inf when under 60 % of the cells map inside the source.
double warp(const std::vector<float>& src, const params& q, const std::vector<float>* ref, std::vector<float>* out,
            std::vector<std::uint8_t>* valid) {
  std::array<int, g> x0{};
  std::array<double, g> fx{};
  std::array<bool, g> vx{};
  std::array<int, g> y0{};
  std::array<double, g> fy{};
  std::array<bool, g> vy{};
  for (int i = 0; i < g; ++i) {
    const double u = (i + 0.5) / g;
    const double mx = q.p[1] + q.p[0] * u;
    const double my = q.p[3] + q.p[2] * u;
    vx[static_cast<std::size_t>(i)] = mx >= 0 && mx <= 1;
    vy[static_cast<std::size_t>(i)] = my >= 0 && my <= 1;
    const double px = mx * g - 0.5;
    const double py = my * g - 0.5;
    x0[static_cast<std::size_t>(i)] = static_cast<int>(std::floor(px));
    fx[static_cast<std::size_t>(i)] = px - std::floor(px);
    y0[static_cast<std::size_t>(i)] = static_cast<int>(std::floor(py));
    fy[static_cast<std::size_t>(i)] = py - std::floor(py);
  }
  const auto at = [&](int y, int x) {
    return static_cast<double>(src[static_cast<std::size_t>(std::clamp(y, 0, g - 1) * g + std::clamp(x, 0, g - 1))]);
  };
  double err = 0;
  int n = 0;
  for (int y = 0; y < g; ++y) {
    const auto yi = static_cast<std::size_t>(y);
    for (int x = 0; x < g; ++x) {
      const auto xi = static_cast<std::size_t>(x);
      const bool ok = vx[xi] && vy[yi];
      const double top = at(y0[yi], x0[xi]) * (1 - fx[xi]) + at(y0[yi], x0[xi] + 1) * fx[xi];
      const double bottom = at(y0[yi] + 1, x0[xi]) * (1 - fx[xi]) + at(y0[yi] + 1, x0[xi] + 1) * fx[xi];
      const double v = top * (1 - fy[yi]) + bottom * fy[yi];
      const auto cell = yi * g + xi;
      if (out != nullptr) (*out)[cell] = static_cast<float>(v);
      if (valid != nullptr) (*valid)[cell] = ok ? 1 : 0;
      if (ok && ref != nullptr) {
        err += std::abs(v - (*ref)[cell]);
        ++n;
      }
    }
  }
  if (n * 10 < g * g * 6) return std::numeric_limits<double>::infinity();
  return ref != nullptr ? err / n : 0.0;
}

std::vector<float> flip(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (int y = 0; y < g; ++y) {
    for (int x = 0; x < g; ++x) out[static_cast<std::size_t>(y * g + x)] = v[static_cast<std::size_t>(y * g + (g - 1 - x))];
  }
  return out;
}

// Aligns src to ref without mirroring: profiles first, then coordinate descent on the 2-D error.
std::pair<params, double> align_plain(const std::vector<float>& src, const std::vector<float>& ref) {
  std::array<double, g> src_cols{}, ref_cols{}, src_rows{}, ref_rows{};
  for (int y = 0; y < g; ++y) {
    for (int x = 0; x < g; ++x) {
      const auto c = static_cast<std::size_t>(y * g + x);
      src_cols[static_cast<std::size_t>(x)] += src[c] / g;
      ref_cols[static_cast<std::size_t>(x)] += ref[c] / g;
      src_rows[static_cast<std::size_t>(y)] += src[c] / g;
      ref_rows[static_cast<std::size_t>(y)] += ref[c] / g;
    }
  }
  const axis_map ax = fit_axis(src_cols, ref_cols);
  const axis_map ay = fit_axis(src_rows, ref_rows);
  params q;
  q.p = {ax.scale, ax.offset, ay.scale, ay.offset};
  double err = warp(src, q, &ref, nullptr, nullptr);
  constexpr std::array<double, 4> base{0.01, 0.005, 0.01, 0.005};
  for (double step_scale : {1.0, 0.5, 0.25, 0.125}) {
    for (int round = 0; round < 30; ++round) {
      bool improved = false;
      for (std::size_t k = 0; k < 4; ++k) {
        for (int dir : {-1, 1}) {
          params t = q;
          t.p[k] += dir * base[k] * step_scale;
          const double e = warp(src, t, &ref, nullptr, nullptr);
          if (e < err) {
            err = e;
            q = t;
            improved = true;
          }
        }
      }
      // Moving one edge alone (the low one: scale up, offset down by as much) or both edges apart around
      // the centre: scale and offset are strongly correlated, so single-parameter steps stall.
      {
        for (std::size_t axis : {std::size_t{0}, std::size_t{2}}) {
          const double s = base[axis] * step_scale;
          for (int dir : {-1, 1}) {
            for (double shift : {-1.0, -0.5}) {
              params t = q;
              t.p[axis] += dir * s;
              t.p[axis + 1] += dir * s * shift;
              const double e = warp(src, t, &ref, nullptr, nullptr);
              if (e < err) {
                err = e;
                q = t;
                improved = true;
              }
            }
          }
        }
      }
      if (!improved) break;
    }
  }
  return {q, err};
}

// A [1 2 1]/4 smoothing along both axes over the valid cells (an invalid neighbour counts as the
// centre): the bilinear resampling blurs a warped grid while the query's grid is sharp, so both are
// brought to the same softness before cells are compared.
void smooth(fine_alignment& a) {
  std::vector<float> tmp(a.warped.size());
  for (int pass = 0; pass < 2; ++pass) {
    for (int y = 0; y < g; ++y) {
      for (int x = 0; x < g; ++x) {
        const auto c = static_cast<std::size_t>(y * g + x);
        const auto at = [&](int yy, int xx) {
          if (yy < 0 || yy >= g || xx < 0 || xx >= g) return a.warped[c];
          const auto o = static_cast<std::size_t>(yy * g + xx);
          return a.valid[o] != 0 ? a.warped[o] : a.warped[c];
        };
        tmp[c] = pass == 0 ? 0.25f * at(y, x - 1) + 0.5f * a.warped[c] + 0.25f * at(y, x + 1)
                           : 0.25f * at(y - 1, x) + 0.5f * a.warped[c] + 0.25f * at(y + 1, x);
      }
    }
    a.warped.swap(tmp);
  }
}

}  // namespace

bool lossless_format(std::string_view format) noexcept {
  return format == "png" || format == "gif" || format == "bmp" || format == "tiff";
}

std::vector<float> fine_signature(const image_rgb8& img, bool lossless, std::size_t file_bytes) {
  const input_turn turn;  // shares the CPU with forward passes (core/cpu_turns.h)
  if (img.empty()) fail(errc::bad_parameter, "cannot compute the fine signature of an empty image");
  const std::vector<float> small = resize_area(trim_flat_borders(img), g, g);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(fine_cells) + 2, 0);
  for (std::size_t i = 0; i < static_cast<std::size_t>(fine_cells); ++i) {
    const double luma = 0.299 * small[i * 3] + 0.587 * small[i * 3 + 1] + 0.114 * small[i * 3 + 2];
    bytes[i] = static_cast<std::uint8_t>(std::clamp(std::lround(luma), 0L, 255L));
  }
  std::vector<float> out;
  out.reserve(fine_dim);
  out.push_back(fine_tag);
  out.push_back(fine_version);
  out.push_back(lossless ? 1.0f : 0.0f);
  out.push_back(static_cast<float>(file_bytes));
  for (std::size_t i = 0; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t packed = bytes[i] | (std::uint32_t{bytes[i + 1]} << 8) | (std::uint32_t{bytes[i + 2]} << 16);
    out.push_back(static_cast<float>(packed));
  }
  return out;
}

bool is_fine_signature(std::span<const float> v) noexcept {
  return v.size() == static_cast<std::size_t>(fine_dim) && v[0] == fine_tag && v[1] == fine_version;
}

fine_grid unpack_fine(std::span<const float> v) {
  if (!is_fine_signature(v)) fail(errc::bad_parameter, "not a fine signature ({} values)", v.size());
  fine_grid grid;
  grid.lossless = v[2] != 0.0f;
  grid.file_bytes = v[3];
  grid.luma.resize(static_cast<std::size_t>(fine_cells));
  std::size_t cell = 0;
  for (std::size_t i = fine_header; i < v.size(); ++i) {
    const float f = v[i];
    if (!(f >= 0.0f && f < 16777216.0f)) fail(errc::bad_parameter, "fine signature value {} out of range", f);
    const auto packed = static_cast<std::uint32_t>(f);
    for (int b = 0; b < 3 && cell < grid.luma.size(); ++b, ++cell) {
      grid.luma[cell] = static_cast<float>((packed >> (8 * b)) & 0xffu) / 255.0f;
    }
  }
  return grid;
}

fine_alignment align_fine(const fine_grid& source, const fine_grid& reference) {
  if (source.luma.size() != static_cast<std::size_t>(fine_cells) ||
      reference.luma.size() != static_cast<std::size_t>(fine_cells)) {
    fail(errc::bad_parameter, "fine grids must hold {} cells", fine_cells);
  }
  auto plain = align_plain(source.luma, reference.luma);
  const auto flipped = flip(source.luma);
  auto mirrored = align_plain(flipped, reference.luma);
  const bool use_mirror = mirrored.second < plain.second;
  fine_alignment out;
  out.warped.resize(static_cast<std::size_t>(fine_cells));
  out.valid.resize(static_cast<std::size_t>(fine_cells));
  out.mirrored = use_mirror;
  const auto& chosen = use_mirror ? mirrored : plain;
  warp(use_mirror ? flipped : source.luma, chosen.first, nullptr, &out.warped, &out.valid);
  out.error = std::isfinite(chosen.second) ? static_cast<float>(chosen.second) : 1.0f;
  return out;
}

namespace {

// Mean over the cells valid in both (and set in mask, when given) of each cell of a against the closest
// of b's neighbours within `reach` cells (0: the same cell); -1 when no cell counts.
float mean_difference(const fine_alignment& a, const fine_alignment& b, std::span<const std::uint8_t> mask, int reach) {
  double sum = 0;
  std::size_t n = 0;
  for (int y = 0; y < g; ++y) {
    for (int x = 0; x < g; ++x) {
      const auto c = static_cast<std::size_t>(y * g + x);
      if (a.valid[c] == 0 || b.valid[c] == 0 || (!mask.empty() && mask[c] == 0)) continue;
      float best = 2.0f;
      for (int dy = -reach; dy <= reach; ++dy) {
        for (int dx = -reach; dx <= reach; ++dx) {
          const int yy = y + dy;
          const int xx = x + dx;
          if (yy < 0 || yy >= g || xx < 0 || xx >= g) continue;
          const auto o = static_cast<std::size_t>(yy * g + xx);
          if (b.valid[o] == 0) continue;
          best = std::min(best, std::abs(a.warped[c] - b.warped[o]));
        }
      }
      sum += best;
      ++n;
    }
  }
  return n == 0 ? -1.0f : static_cast<float>(sum / static_cast<double>(n));
}

}  // namespace

float tolerant_difference(const fine_alignment& a, const fine_alignment& b, std::span<const std::uint8_t> mask) {
  return mean_difference(a, b, mask, 1);
}

namespace {

// Which of two aligned candidates a and b the query q is a copy of, measured where they differ: the
// least-squares position t of q on the line from b (t = 0) to a (t = 1) over the cells valid in all
// three where |a - b| > fine_region_threshold,
//   t = sum (q - b)(a - b) / sum (a - b)^2.
// Resampling, re-encoding and a crop's misalignment add noise that is mostly unrelated to the pattern
// a - b, so it averages out of t, while a mean absolute difference adds it up. nullopt: a and b do not
// differ anywhere (same drawing), no evidence either way.
std::optional<double> position_between(const fine_alignment& q, const fine_alignment& a, const fine_alignment& b) {
  double num = 0;
  double den = 0;
  int cells = 0;
  for (std::size_t c = 0; c < a.warped.size(); ++c) {
    if (q.valid[c] == 0 || a.valid[c] == 0 || b.valid[c] == 0) continue;
    const double d = static_cast<double>(a.warped[c]) - b.warped[c];
    if (std::abs(d) <= fine_region_threshold) continue;
    num += (static_cast<double>(q.warped[c]) - b.warped[c]) * d;
    den += d * d;
    ++cells;
  }
  // A handful of cells is noise (a crop edge, one misaligned line), not a change between drawings.
  if (cells < 4 || den <= 0) return std::nullopt;
  return num / den;
}

}  // namespace

std::vector<float> rank_fine_candidates(const fine_grid& query, std::span<const fine_grid> candidates) {
  fine_alignment q;
  q.warped = query.luma;
  q.valid.assign(static_cast<std::size_t>(fine_cells), 1);
  q.error = 0;
  std::vector<fine_alignment> aligned;
  aligned.reserve(candidates.size());
  for (const auto& c : candidates) aligned.push_back(align_fine(c, query));
  smooth(q);
  for (auto& a : aligned) smooth(a);
  // Each candidate of the same drawing meets every other one: its distance is its worst showing,
  // max over the others b of (1 - t) where t places the query between it (1) and b (0); plus the
  // mean difference over the whole grid, which orders candidates the pairs cannot tell apart
  // (copies of one drawing) and is small beside a lost pairing (about 1).
  std::vector<float> out(candidates.size(), std::numeric_limits<float>::infinity());
  std::vector<double> worst(candidates.size(), 0.0);
  for (std::size_t i = 0; i < aligned.size(); ++i) {
    if (aligned[i].error > fine_different_above) continue;
    for (std::size_t j = i + 1; j < aligned.size(); ++j) {
      if (aligned[j].error > fine_different_above) continue;
      const auto t = position_between(q, aligned[i], aligned[j]);
      if (!t) continue;
      worst[i] = std::max(worst[i], 1.0 - *t);
      worst[j] = std::max(worst[j], *t);
    }
  }
  for (std::size_t i = 0; i < aligned.size(); ++i) {
    if (aligned[i].error > fine_different_above) continue;
    const float d = mean_difference(q, aligned[i], {}, 0);
    if (d >= 0) out[i] = static_cast<float>(worst[i]) + d;
  }
  return out;
}

}  // namespace acg2vec::image
