#include "models/upscaler.h"

#include <c10/core/InferenceMode.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "models/registry.h"
#include "runtime/ncnn_loader.h"

namespace acg2vec::models {
namespace {

using json = nlohmann::json;

// Mirror index without repeating the edge (PyTorch 'reflect', ncnn border type 2), extended
// periodically so that images smaller than the padding still have a defined neighbourhood.
std::int64_t reflect(std::int64_t i, std::int64_t n) {
  if (n == 1) return 0;
  const std::int64_t period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

at::Tensor reflect_index(std::int64_t from, std::int64_t count, std::int64_t n) {
  at::Tensor idx = at::empty({count}, at::kLong);
  auto* p = idx.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < count; ++i) p[i] = reflect(from + i, n);
  return idx;
}

at::Tensor clamp_index(std::int64_t from, std::int64_t count, std::int64_t n) {
  at::Tensor idx = at::empty({count}, at::kLong);
  auto* p = idx.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < count; ++i) p[i] = std::clamp<std::int64_t>(from + i, 0, n - 1);
  return idx;
}

std::int64_t round_up(std::int64_t v, std::int64_t m) { return (v + m - 1) / m * m; }

int int_field(const json& j, const char* key, int fallback, int lo, int hi, const std::string& pack) {
  if (!j.contains(key)) return fallback;
  if (!j[key].is_number_integer()) fail(errc::bad_parameter, "pack '{}': upscale.{} must be an integer", pack, key);
  const auto v = j[key].get<std::int64_t>();
  if (v < lo || v > hi) fail(errc::bad_parameter, "pack '{}': upscale.{} must be in {}..{}, got {}", pack, key, lo, hi, v);
  return static_cast<int>(v);
}

double num_field(const json& j, const char* key, double fallback, const std::string& pack) {
  if (!j.contains(key)) return fallback;
  if (!j[key].is_number()) fail(errc::bad_parameter, "pack '{}': upscale.{} must be a number", pack, key);
  const double v = j[key].get<double>();
  if (!std::isfinite(v)) fail(errc::bad_parameter, "pack '{}': upscale.{} must be finite", pack, key);
  return v;
}

// The graph with the given GlobalAveragePool nodes replaced by graph inputs (their outputs).
runtime::graph without_pools(const runtime::graph& g, const std::vector<std::string>& pooled,
                             const std::vector<std::int64_t>& channels) {
  runtime::graph out = g;
  out.nodes.clear();
  for (const auto& n : g.nodes) {
    if (n.op_type == "GlobalAveragePool" && std::find(pooled.begin(), pooled.end(), n.outputs.at(0)) != pooled.end())
      continue;
    out.nodes.push_back(n);
  }
  for (std::size_t i = 0; i < pooled.size(); ++i) {
    runtime::value_info v;
    v.name = pooled[i];
    v.shape = {1, channels[i], 1, 1};
    out.inputs.push_back(v);
  }
  return out;
}

}  // namespace

upscale_spec upscale_spec::from_manifest(const model_manifest& m) {
  const json j = m.raw.value("upscale", json::object());
  if (!j.is_object()) fail(errc::bad_parameter, "pack '{}': 'upscale' must be an object", m.name);
  upscale_spec s;
  s.scale = int_field(j, "scale", 2, 1, 8, m.name);
  s.pre_padding = int_field(j, "pre_padding", 0, 0, 256, m.name);
  s.multiple = int_field(j, "multiple", 1, 1, 64, m.name);
  s.tile = int_field(j, "tile", 256, 0, 4096, m.name);
  s.overlap = int_field(j, "overlap", 0, 0, 256, m.name);
  s.in_scale = num_field(j, "in_scale", 1.0 / 255.0, m.name);
  s.in_offset = num_field(j, "in_offset", 0.0, m.name);
  s.out_scale = num_field(j, "out_scale", 255.0, m.name);
  s.out_offset = num_field(j, "out_offset", 0.0, m.name);
  s.max_input_pixels = static_cast<std::uint64_t>(num_field(j, "max_input_pixels", 16'777'216.0, m.name));
  s.max_output_pixels = static_cast<std::uint64_t>(num_field(j, "max_output_pixels", 67'108'864.0, m.name));
  if (s.tile != 0 && (s.tile < 16 || s.tile % s.multiple != 0))
    fail(errc::bad_parameter, "pack '{}': upscale.tile must be 0 or a multiple of upscale.multiple >= 16", m.name);
  if (s.max_input_pixels == 0 || s.max_output_pixels == 0)
    fail(errc::bad_parameter, "pack '{}': upscale pixel limits must be positive", m.name);
  return s;
}

upscaler::upscaler(model_manifest manifest, const runtime::graph& graph)
    : manifest_(std::move(manifest)), spec_(upscale_spec::from_manifest(manifest_)) {
  if (graph.inputs.size() != 1 || graph.outputs.size() != 1)
    fail(errc::bad_parameter, "pack '{}': an upscaler needs one image input and one output, the graph has {} and {}",
         manifest_.name, graph.inputs.size(), graph.outputs.size());
  whole_ = std::make_unique<runtime::executor>(graph);
  for (const auto& n : graph.nodes)
    if (n.op_type == "GlobalAveragePool" && !n.inputs.empty() && !n.outputs.empty())
      gaps_.push_back(gap_info{n.inputs[0], n.outputs[0]});
  if (gaps_.empty()) return;

  // Probe the geometry of every pooled feature map: its size is rate * core + extra for a core
  // of `core` pixels fed with the pack's padding. Two zero images of different sizes tell both.
  std::vector<std::string> probe_outputs;
  for (const auto& gp : gaps_) probe_outputs.push_back(gp.feature);
  runtime::executor probe(graph, probe_outputs);
  const std::int64_t c1 = 8 * spec_.multiple + 16, c2 = c1 + 8 * spec_.multiple;
  auto run_probe = [&](std::int64_t core) {
    const std::int64_t side = round_up(core, spec_.multiple) + 2 * (spec_.pre_padding + spec_.overlap);
    c10::InferenceMode guard;
    return probe.run({at::zeros({1, 3, side, side})});
  };
  const auto f1 = run_probe(round_up(c1, spec_.multiple));
  const auto f2 = run_probe(round_up(c2, spec_.multiple));
  const auto r1 = round_up(c1, spec_.multiple), r2 = round_up(c2, spec_.multiple);
  for (std::size_t i = 0; i < gaps_.size(); ++i) {
    if (f1[i].dim() != 4 || f2[i].dim() != 4)
      fail(errc::bad_parameter, "pack '{}': pooled value '{}' is not a 4-D feature map", manifest_.name, gaps_[i].feature);
    gaps_[i].channels = f1[i].size(1);
    const double rate = static_cast<double>(f2[i].size(3) - f1[i].size(3)) / static_cast<double>(r2 - r1);
    const double extra = static_cast<double>(f1[i].size(3)) - rate * static_cast<double>(r1);
    if (!(rate > 0) || extra < 0 || extra != std::floor(extra) ||
        f2[i].size(2) - f1[i].size(2) != f2[i].size(3) - f1[i].size(3))
      fail(errc::bad_parameter,
           "pack '{}': the feature map pooled at '{}' does not cover the tile cores ({} features per pixel, {} extra); "
           "is pre_padding right?", manifest_.name, gaps_[i].feature, rate, extra);
    gaps_[i].rate = rate;
    gaps_[i].extra = static_cast<std::int64_t>(extra);
  }
  std::vector<std::string> pooled;
  std::vector<std::int64_t> channels;
  for (std::size_t k = 0; k < gaps_.size(); ++k) {
    partial_.push_back(std::make_unique<runtime::executor>(without_pools(graph, pooled, channels),
                                                           std::vector<std::string>{gaps_[k].feature}));
    pooled.push_back(gaps_[k].pooled);
    channels.push_back(gaps_[k].channels);
  }
  final_ = std::make_unique<runtime::executor>(without_pools(graph, pooled, channels));
}

std::vector<upscaler::tile_geom> upscaler::plan(std::int64_t height, std::int64_t width, std::int64_t tile) const {
  std::vector<tile_geom> out;
  const std::int64_t m = spec_.multiple;
  if (tile <= 0 || (tile >= height && tile >= width)) {
    out.push_back({0, 0, height, width, round_up(height, m), round_up(width, m), true, true, 0});
    return out;
  }
  tile = round_up(tile, m);
  for (const auto& g : gaps_) {
    const double f = g.rate * static_cast<double>(tile);
    if (f != std::floor(f)) tile = round_up(tile, static_cast<std::int64_t>(std::ceil(1.0 / g.rate)) * m);
  }
  for (std::int64_t y = 0; y < height; y += tile) {
    for (std::int64_t x = 0; x < width; x += tile) {
      const std::int64_t h = std::min(tile, height - y), w = std::min(tile, width - x);
      out.push_back({y, x, h, w, round_up(h, m), round_up(w, m), y + tile >= height, x + tile >= width, tile});
    }
  }
  return out;
}

at::Tensor upscaler::tile_input(const at::Tensor& rgb, const tile_geom& t) const {
  const std::int64_t pad = spec_.pre_padding + spec_.overlap;
  const at::Tensor rows = reflect_index(t.y0 - pad, t.hc + 2 * pad, rgb.size(0));
  const at::Tensor cols = reflect_index(t.x0 - pad, t.wc + 2 * pad, rgb.size(1));
  at::Tensor px = rgb.index_select(0, rows).index_select(1, cols);  // [h, w, 3] uint8
  at::Tensor x = px.permute({2, 0, 1}).unsqueeze(0).to(at::kFloat).contiguous();
  if (spec_.in_scale != 1.0) x.mul_(spec_.in_scale);
  if (spec_.in_offset != 0.0) x.add_(spec_.in_offset);
  return x;
}

void upscaler::run_tiles(const at::Tensor& rgb, std::int64_t tile,
                         const std::function<void(const tile_geom&, const at::Tensor&)>& sink,
                         const progress_fn& progress) const {
  const auto tiles = plan(rgb.size(0), rgb.size(1), tile);
  const bool synced = tiles.size() > 1 && !gaps_.empty();
  const std::size_t total = tiles.size() * (synced ? gaps_.size() + 1 : 1);
  std::size_t done = 0;
  auto tick = [&] {
    ++done;
    if (progress) progress(done, total);
  };
  c10::InferenceMode guard;
  std::vector<at::Tensor> means;
  if (synced) {
    for (std::size_t k = 0; k < gaps_.size(); ++k) {
      const gap_info& g = gaps_[k];
      at::Tensor sum = at::zeros({g.channels}, at::kDouble);
      std::int64_t count = 0;
      for (const auto& t : tiles) {
        std::vector<at::Tensor> in{tile_input(rgb, t)};
        in.insert(in.end(), means.begin(), means.end());
        const at::Tensor f = partial_[k]->run(in).at(0);
        // This tile's share of the whole-image feature map: the features of its own core
        // (up to the next tile's core), plus everything to the end on the last row/column.
        const auto own = [&](bool last, std::int64_t size) {
          return last ? size : static_cast<std::int64_t>(g.rate * static_cast<double>(t.step));
        };
        const std::int64_t oh = own(t.last_row, f.size(2)), ow = own(t.last_col, f.size(3));
        if (oh > f.size(2) || ow > f.size(3))
          fail(errc::internal, "upscaler: tile feature map {}x{} is smaller than its core share {}x{}", f.size(2),
               f.size(3), oh, ow);
        using namespace at::indexing;
        sum += f.index({0, Slice(), Slice(0, oh), Slice(0, ow)}).to(at::kDouble).sum({1, 2});
        count += oh * ow;
        tick();
      }
      means.push_back((sum / static_cast<double>(count)).to(at::kFloat).reshape({1, g.channels, 1, 1}));
    }
  }
  for (const auto& t : tiles) {
    at::Tensor y;
    if (synced) {
      std::vector<at::Tensor> in{tile_input(rgb, t)};
      in.insert(in.end(), means.begin(), means.end());
      y = final_->run(in).at(0);
    } else {
      y = whole_->run({tile_input(rgb, t)}).at(0);
    }
    const std::int64_t s = spec_.scale, o = spec_.overlap;
    if (y.dim() != 4 || y.size(1) < 3 || y.size(2) != s * (t.hc + 2 * o) || y.size(3) != s * (t.wc + 2 * o))
      fail(errc::bad_parameter,
           "pack '{}': the network returned [{}] for a {}x{} core; expected [1, 3, {}, {}] (check scale, pre_padding, "
           "overlap)", manifest_.name, fmt::join(y.sizes(), ", "), t.hc, t.wc, s * (t.hc + 2 * o), s * (t.wc + 2 * o));
    using namespace at::indexing;
    sink(t, y.index({Slice(), Slice(0, 3), Slice(s * o, s * o + s * t.h), Slice(s * o, s * o + s * t.w)}));
    tick();
  }
}

at::Tensor upscaler::upscale_float(const at::Tensor& rgb, int tile) const {
  if (rgb.dim() != 3 || rgb.size(2) != 3 || rgb.scalar_type() != at::kByte)
    fail(errc::bad_parameter, "upscale_float expects [H, W, 3] uint8");
  const std::int64_t s = spec_.scale;
  at::Tensor out = at::empty({1, 3, s * rgb.size(0), s * rgb.size(1)});
  run_tiles(rgb, tile < 0 ? spec_.tile : tile,
            [&](const tile_geom& t, const at::Tensor& y) {
              using namespace at::indexing;
              out.index_put_({Slice(), Slice(), Slice(s * t.y0, s * (t.y0 + t.h)), Slice(s * t.x0, s * (t.x0 + t.w))},
                             y * spec_.out_scale + spec_.out_offset);
            },
            {});
  return out;
}

at::Tensor upscaler::run_network(const at::Tensor& input) const {
  c10::InferenceMode guard;
  return whole_->run({input}).at(0);
}

image::image_rgba8 upscaler::upscale(const image::image_rgba8& img, int tile, const progress_fn& progress) const {
  const std::int64_t s = spec_.scale;
  const auto w = static_cast<std::int64_t>(img.width), h = static_cast<std::int64_t>(img.height);
  if (w <= 0 || h <= 0 || img.pixels.size() != static_cast<std::size_t>(w * h * 4))
    fail(errc::bad_parameter, "upscale: invalid image of {}x{}", w, h);
  if (static_cast<std::uint64_t>(w) * static_cast<std::uint64_t>(h) > spec_.max_input_pixels)
    fail(errc::too_large, "image of {}x{} pixels is over the upscaler's input limit of {} pixels", w, h,
         spec_.max_input_pixels);
  const std::uint64_t out_pixels = static_cast<std::uint64_t>(w * s) * static_cast<std::uint64_t>(h * s);
  if (out_pixels > spec_.max_output_pixels)
    fail(errc::too_large, "upscaling {}x{} by {} gives {} pixels, over the output limit of {}", w, h, s, out_pixels,
         spec_.max_output_pixels);
  image::image_rgba8 out;
  out.width = static_cast<int>(w * s);
  out.height = static_cast<int>(h * s);
  out.has_alpha = img.has_alpha;
  out.pixels.assign(static_cast<std::size_t>(out_pixels) * 4, 255);
  // The input stays uint8; tiles are gathered from it as they are needed.
  const at::Tensor rgba = at::from_blob(const_cast<std::uint8_t*>(img.pixels.data()), {h, w, 4}, at::kByte);
  using namespace at::indexing;
  const at::Tensor rgb = rgba.index({Slice(), Slice(), Slice(0, 3)});
  const at::Tensor alpha = rgba.index({Slice(), Slice(), 3});
  const std::int64_t ow = w * s;
  auto store = [&](std::int64_t y0, std::int64_t x0, const at::Tensor& hw_c, int channel0) {
    // hw_c: [rows, cols, c] uint8, written at output (y0, x0) into channels channel0...
    const at::Tensor c = hw_c.contiguous();
    const std::int64_t rows = c.size(0), cols = c.size(1), ch = c.size(2);
    const std::uint8_t* src = c.data_ptr<std::uint8_t>();
    for (std::int64_t r = 0; r < rows; ++r) {
      std::uint8_t* dst = out.pixels.data() + ((y0 + r) * ow + x0) * 4 + channel0;
      for (std::int64_t x = 0; x < cols; ++x, dst += 4, src += ch) std::copy(src, src + ch, dst);
    }
  };
  auto to_u8 = [](at::Tensor v) { return (v + 0.5).floor_().clamp_(0, 255).to(at::kByte); };
  run_tiles(rgb, tile < 0 ? spec_.tile : tile,
            [&](const tile_geom& t, const at::Tensor& y) {
              at::Tensor px = to_u8(y[0] * spec_.out_scale + spec_.out_offset).permute({1, 2, 0});
              store(s * t.y0, s * t.x0, px, 0);
              if (!img.has_alpha) return;
              // Bicubic alpha with 2 pixels of edge-clamped context: PyTorch clamps taps at the
              // border too, so tiles give exactly the whole-image result.
              constexpr std::int64_t ctx = 2;
              const at::Tensor rows = clamp_index(t.y0 - ctx, t.h + 2 * ctx, h);
              const at::Tensor cols = clamp_index(t.x0 - ctx, t.w + 2 * ctx, w);
              at::Tensor a = alpha.index_select(0, rows).index_select(1, cols).to(at::kFloat).unsqueeze(0).unsqueeze(0);
              a = at::upsample_bicubic2d(a, {s * (t.h + 2 * ctx), s * (t.w + 2 * ctx)}, false);
              a = a.index({0, 0, Slice(s * ctx, s * (ctx + t.h)), Slice(s * ctx, s * (ctx + t.w))});
              store(s * t.y0, s * t.x0, to_u8(a).unsqueeze(2), 3);
            },
            progress);
  return out;
}

nlohmann::json upscaler::describe() const {
  return {{"scale", spec_.scale},
          {"pre_padding", spec_.pre_padding},
          {"multiple", spec_.multiple},
          {"tile", spec_.tile},
          {"overlap", spec_.overlap},
          {"se_blocks", gaps_.size()},
          {"max_input_pixels", spec_.max_input_pixels},
          {"max_output_pixels", spec_.max_output_pixels}};
}

std::unique_ptr<upscaler> load_upscaler(const std::filesystem::path& models_dir, std::string_view name) {
  std::error_code ec;
  if (!std::filesystem::is_directory(models_dir, ec))
    fail(errc::not_found, "models directory {} does not exist (run scripts/install-packs.sh)", models_dir.string());
  std::vector<std::filesystem::path> dirs;
  for (const auto& e : std::filesystem::directory_iterator(models_dir, ec))
    if (e.is_directory() && std::filesystem::exists(e.path() / "manifest.json")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  std::vector<std::string> upscalers;
  for (const auto& d : dirs) {
    model_manifest m;
    try {
      m = load_manifest(d);
    } catch (const std::exception&) {
      continue;  // a broken pack elsewhere does not stop this one
    }
    const bool named = !name.empty() && (m.name == name || std::find(m.aliases.begin(), m.aliases.end(), name) !=
                                                                   m.aliases.end());
    if (m.task == model_task::upscaler) upscalers.push_back(m.name);
    if (named && m.task != model_task::upscaler)
      fail(errc::bad_parameter, "model '{}' is a {}, not an upscaler", m.name, to_string(m.task));
    if (named || (name.empty() && m.task == model_task::upscaler)) {
      const runtime::graph g =
          m.format == model_format::ncnn ? runtime::load_ncnn(m.file, m.weights) : load_graph(m.format, m.file);
      return std::make_unique<upscaler>(m, g);
    }
  }
  if (name.empty())
    fail(errc::not_found, "no upscaler pack in {} (run scripts/install-packs.sh)", models_dir.string());
  fail(errc::not_found, "no model '{}' in {}", name, models_dir.string());
}

}  // namespace acg2vec::models