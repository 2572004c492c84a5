#include "models/upscaler.h"

#include <c10/core/InferenceMode.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

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

// Node indices in an order where every node follows the producers of its inputs, keeping the
// stored order wherever it already is one (ncnn and ONNX files are stored so).
std::vector<std::size_t> topological(const runtime::graph& g, const std::string& pack) {
  std::set<std::string> have;
  for (const auto& v : g.inputs) have.insert(v.name);
  for (const auto& [name, t] : g.initializers) have.insert(name);
  std::vector<bool> placed(g.nodes.size(), false);
  std::vector<std::size_t> order;
  for (bool progress = true; progress && order.size() < g.nodes.size();) {
    progress = false;
    for (std::size_t i = 0; i < g.nodes.size(); ++i) {
      if (placed[i]) continue;
      const auto& n = g.nodes[i];
      if (!std::all_of(n.inputs.begin(), n.inputs.end(), [&](const std::string& v) { return v.empty() || have.count(v); }))
        continue;
      placed[i] = progress = true;
      order.push_back(i);
      have.insert(n.outputs.begin(), n.outputs.end());
    }
  }
  if (order.size() != g.nodes.size())
    fail(errc::bad_parameter, "pack '{}': the graph has a cycle or reads a value nothing produces", pack);
  return order;
}

std::uint64_t state_bytes(const std::map<std::string, at::Tensor>& state) {
  std::set<const void*> seen;  // values may share storage (views)
  std::uint64_t bytes = 0;
  for (const auto& [name, t] : state)
    if (t.defined() && seen.insert(t.storage().data()).second) bytes += t.storage().nbytes();
  return bytes;
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
  s.memory_budget = static_cast<std::uint64_t>(int_field(j, "memory_budget_mb", 1536, 0, 1 << 20, m.name)) << 20;
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
  input_name_ = graph.inputs[0].name;
  output_name_ = graph.outputs[0].name;
  whole_ = std::make_unique<runtime::executor>(graph);
  build_size_model(graph);
  if (!gaps_.empty()) build_segments(graph);
}

// Runs the graph on two zero images with every value as an output: each value's size is then
// channels * (rate * side + extra) per axis, which gives the pooled maps' geometry (how tiles
// share them) and the liveness estimate of the peak memory for any input size.
void upscaler::build_size_model(const runtime::graph& graph) {
  const auto order = topological(graph, manifest_.name);
  steps_ = static_cast<std::int64_t>(order.size());
  std::map<std::string, value_size> by_name;
  std::vector<std::string> names;
  for (std::size_t pos = 0; pos < order.size(); ++pos) {
    const auto& n = graph.nodes[order[pos]];
    for (const auto& v : n.inputs) {
      auto it = by_name.find(v);
      if (it != by_name.end()) it->second.last = static_cast<std::int64_t>(pos);
    }
    for (const auto& v : n.outputs) {
      if (v.empty()) continue;
      value_size vs;
      vs.first = vs.last = static_cast<std::int64_t>(pos);
      by_name[v] = vs;
      names.push_back(v);
    }
    if (n.op_type == "GlobalAveragePool" && !n.inputs.empty() && !n.outputs.empty())
      gaps_.push_back(gap_info{n.inputs[0], n.outputs[0]});
  }
  value_size in;
  in.first = -1;
  in.spatial = true;
  in.elems = 3 * 4;
  in.rate_h = in.rate_w = 1;
  for (const auto& n : graph.nodes)
    for (const auto& v : n.inputs)
      if (v == input_name_) in.last = steps_;  // conservatively alive throughout (the caller holds it)
  sizes_.push_back(in);
  for (auto& [name, vs] : by_name)
    if (name == output_name_) vs.last = steps_;

  runtime::executor probe(graph, names);
  const std::int64_t pad = spec_.pre_padding + spec_.overlap;
  const std::int64_t r1 = round_up(8 * spec_.multiple + 16, spec_.multiple),
                     r2 = round_up(16 * spec_.multiple + 16, spec_.multiple);
  const std::int64_t s1 = r1 + 2 * pad, s2 = r2 + 2 * pad;
  std::vector<at::Tensor> f1, f2;
  {
    c10::InferenceMode guard;
    f1 = probe.run({at::zeros({1, 3, s1, s1})});
    f2 = probe.run({at::zeros({1, 3, s2, s2})});
  }
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < names.size(); ++i) {
    index[names[i]] = i;
    value_size vs = by_name.at(names[i]);
    const at::Tensor &a = f1[i], &b = f2[i];
    if (a.dim() == 4 && b.dim() == 4 && (a.size(2) != b.size(2) || a.size(3) != b.size(3))) {
      vs.spatial = true;
      vs.elems = static_cast<double>(a.size(0) * a.size(1) * static_cast<std::int64_t>(a.element_size()));
      vs.rate_h = static_cast<double>(b.size(2) - a.size(2)) / static_cast<double>(s2 - s1);
      vs.extra_h = static_cast<double>(a.size(2)) - vs.rate_h * static_cast<double>(s1);
      vs.rate_w = static_cast<double>(b.size(3) - a.size(3)) / static_cast<double>(s2 - s1);
      vs.extra_w = static_cast<double>(a.size(3)) - vs.rate_w * static_cast<double>(s1);
    } else {
      vs.elems = static_cast<double>(std::max(a.nbytes(), b.nbytes()));
    }
    sizes_.push_back(vs);
  }

  for (auto& g : gaps_) {
    const at::Tensor &a = f1[index.at(g.feature)], &b = f2[index.at(g.feature)];
    if (a.dim() != 4 || b.dim() != 4)
      fail(errc::bad_parameter, "pack '{}': pooled value '{}' is not a 4-D feature map", manifest_.name, g.feature);
    g.channels = a.size(1);
    // per core pixel, so relative to the core sizes r1, r2
    const double rate = static_cast<double>(b.size(3) - a.size(3)) / static_cast<double>(r2 - r1);
    const double extra = static_cast<double>(a.size(3)) - rate * static_cast<double>(r1);
    if (!(rate > 0) || extra < 0 || extra != std::floor(extra) || b.size(2) - a.size(2) != b.size(3) - a.size(3))
      fail(errc::bad_parameter,
           "pack '{}': the feature map pooled at '{}' does not cover the tile cores ({} features per pixel, {} extra); "
           "is pre_padding right?", manifest_.name, g.feature, rate, extra);
    g.rate = rate;
    g.extra = static_cast<std::int64_t>(extra);
  }
}

// Cuts the graph at its SE blocks (see the header): segment k runs the nodes after block k-1 up
// to block k's pool, and hands over the values read after that pool.
void upscaler::build_segments(const runtime::graph& graph) {
  const auto order = topological(graph, manifest_.name);
  std::set<std::string> pooled;
  for (const auto& g : gaps_) pooled.insert(g.pooled);
  std::map<std::string, std::int64_t> first, last;
  first[input_name_] = -1;
  std::vector<std::int64_t> cut;
  for (std::size_t pos = 0; pos < order.size(); ++pos) {
    const auto& n = graph.nodes[order[pos]];
    const auto p = static_cast<std::int64_t>(pos);
    for (const auto& v : n.inputs)
      if (!v.empty()) last[v] = p;
    for (const auto& v : n.outputs) first[v] = p;
    if (n.op_type == "GlobalAveragePool" && !n.outputs.empty() && pooled.count(n.outputs[0])) cut.push_back(p);
  }
  last[output_name_] = steps_;
  cut.push_back(steps_);
  for (std::size_t k = 0; k < cut.size(); ++k) {
    const std::int64_t lo = k == 0 ? -1 : cut[k - 1], hi = cut[k];
    runtime::graph part;
    part.name = graph.name;
    part.opset = graph.opset;
    part.initializers = graph.initializers;
    std::set<std::string> produced, taken;
    segment seg;
    for (std::int64_t p = lo + 1; p < hi; ++p) {
      const auto& n = graph.nodes[order[static_cast<std::size_t>(p)]];
      for (const auto& v : n.inputs) {
        if (v.empty() || produced.count(v) || graph.initializers.count(v) || !taken.insert(v).second) continue;
        seg.inputs.push_back(v);
        runtime::value_info vi;
        if (v == input_name_) {
          vi = graph.inputs[0];
        } else {
          vi.name = v;
          vi.rank_known = false;
        }
        part.inputs.push_back(vi);
      }
      produced.insert(n.outputs.begin(), n.outputs.end());
      part.nodes.push_back(n);
    }
    for (const auto& v : produced)
      if (last.count(v) && last.at(v) >= hi) seg.outputs.push_back(v);
    if (k + 1 == cut.size() && !produced.count(output_name_))
      fail(errc::bad_parameter, "pack '{}': the output is not computed after the last SE block", manifest_.name);
    for (const auto& v : seg.outputs) {
      runtime::value_info vi;
      vi.name = v;
      vi.rank_known = false;
      part.outputs.push_back(vi);
    }
    for (const auto& [v, p] : last)
      if (first.count(v) && first.at(v) < hi && p > hi && !pooled.count(v)) seg.keep.push_back(v);
    if (!part.nodes.empty() && !seg.outputs.empty())
      seg.exec = std::make_unique<runtime::executor>(std::move(part), seg.outputs);
    segments_.push_back(std::move(seg));
  }
}

std::uint64_t upscaler::estimate_peak_bytes(std::int64_t height, std::int64_t width) const {
  const std::int64_t pad = spec_.pre_padding + spec_.overlap;
  const double sh = static_cast<double>(round_up(height, spec_.multiple) + 2 * pad);
  const double sw = static_cast<double>(round_up(width, spec_.multiple) + 2 * pad);
  std::vector<double> bytes(sizes_.size());
  for (std::size_t i = 0; i < sizes_.size(); ++i) {
    const value_size& v = sizes_[i];
    bytes[i] = v.spatial ? v.elems * std::max(0.0, v.rate_h * sh + v.extra_h) * std::max(0.0, v.rate_w * sw + v.extra_w)
                         : v.elems;
  }
  double peak = 0;
  for (std::int64_t p = 0; p < std::max<std::int64_t>(steps_, 1); ++p) {
    double live = 0;
    for (std::size_t i = 0; i < sizes_.size(); ++i)
      if (sizes_[i].first <= p && sizes_[i].last >= p) live += bytes[i];
    peak = std::max(peak, live);
  }
  return static_cast<std::uint64_t>(peak);
}

std::int64_t upscaler::tile_for(std::int64_t height, std::int64_t width, int tile) const {
  if (tile >= 0) return tile;
  if (spec_.tile == 0) return 0;
  if (spec_.tile >= height && spec_.tile >= width) return 0;  // one tile anyway
  return estimate_peak_bytes(height, width) <= spec_.memory_budget ? 0 : spec_.tile;
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

void upscaler::run_tiles(const at::Tensor& rgb, int tile_arg,
                         const std::function<void(const tile_geom&, const at::Tensor&)>& sink,
                         const progress_fn& progress, run_stats* stats) const {
  const auto tiles = plan(rgb.size(0), rgb.size(1), tile_for(rgb.size(0), rgb.size(1), tile_arg));
  const bool synced = tiles.size() > 1 && !gaps_.empty();
  const std::size_t total = tiles.size() * (synced ? gaps_.size() + 1 : 1);
  std::size_t done = 0;
  auto tick = [&] {
    ++done;
    if (progress) progress(done, total);
  };
  run_stats st;
  st.tiles = tiles.size();
  st.tile = tiles.size() > 1 ? tiles[0].step : 0;
  auto emit = [&](const tile_geom& t, const at::Tensor& y) {
    const std::int64_t s = spec_.scale, o = spec_.overlap;
    if (y.dim() != 4 || y.size(1) < 3 || y.size(2) != s * (t.hc + 2 * o) || y.size(3) != s * (t.wc + 2 * o))
      fail(errc::bad_parameter,
           "pack '{}': the network returned [{}] for a {}x{} core; expected [1, 3, {}, {}] (check scale, pre_padding, "
           "overlap)", manifest_.name, fmt::join(y.sizes(), ", "), t.hc, t.wc, s * (t.hc + 2 * o), s * (t.wc + 2 * o));
    using namespace at::indexing;
    sink(t, y.index({Slice(), Slice(0, 3), Slice(s * o, s * o + s * t.h), Slice(s * o, s * o + s * t.w)}));
    tick();
  };
  c10::InferenceMode guard;
  if (!synced) {
    for (const auto& t : tiles) {
      emit(t, whole_->run({tile_input(rgb, t)}).at(0));
      ++st.segment_runs;
    }
    if (stats) *stats = st;
    return;
  }

  using state_map = std::map<std::string, at::Tensor>;
  state_map means;
  // Runs segment s on a tile's state, then drops what no later segment reads.
  auto run_segment = [&](std::size_t s, state_map& state) {
    const segment& seg = segments_[s];
    if (seg.exec) {
      std::vector<at::Tensor> in;
      in.reserve(seg.inputs.size());
      for (const auto& v : seg.inputs) {
        auto it = state.find(v);
        in.push_back(it != state.end() ? it->second : means.at(v));
      }
      auto out = seg.exec->run(in);
      for (std::size_t i = 0; i < out.size(); ++i) state[seg.outputs[i]] = std::move(out[i]);
      ++st.segment_runs;
    }
  };
  auto prune = [](state_map& state, const std::vector<std::string>& keep) {
    state_map kept;
    for (const auto& v : keep) {
      auto it = state.find(v);
      if (it != state.end()) kept.emplace(v, std::move(it->second));
    }
    state = std::move(kept);
  };

  const std::size_t last_pass = gaps_.size();
  // Hand-overs kept between passes: the cache may use what the budget leaves after one tile's own
  // working set; a tile whose hand-over does not fit starts again from its input next pass.
  const std::uint64_t per_tile = estimate_peak_bytes(tiles[0].hc, tiles[0].wc);
  const std::uint64_t cache_budget = spec_.memory_budget > per_tile ? spec_.memory_budget - per_tile : 0;
  std::vector<state_map> kept(tiles.size());
  std::vector<std::uint64_t> kept_bytes(tiles.size(), 0);
  std::uint64_t kept_total = 0;
  for (std::size_t k = 0; k <= last_pass; ++k) {
    at::Tensor sum;
    std::int64_t count = 0;
    for (std::size_t i = 0; i < tiles.size(); ++i) {
      const tile_geom& t = tiles[i];
      state_map state;
      std::size_t from = 0;
      if (!kept[i].empty()) {
        state = std::move(kept[i]);
        kept[i].clear();
        kept_total -= kept_bytes[i];
        kept_bytes[i] = 0;
        from = k;
        ++st.resumed;
      } else {
        state[input_name_] = tile_input(rgb, t);
      }
      for (std::size_t s = from; s <= k; ++s) {
        run_segment(s, state);
        if (s < k) prune(state, segments_[s].keep);
      }
      if (k == last_pass) {
        emit(t, state.at(output_name_));
        continue;
      }
      const gap_info& g = gaps_[k];
      const at::Tensor& f = state.at(g.feature);
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
      const at::Tensor part = f.index({0, Slice(), Slice(0, oh), Slice(0, ow)}).to(at::kDouble).sum({1, 2});
      sum = sum.defined() ? sum + part : part;
      count += oh * ow;
      prune(state, segments_[k].keep);
      const std::uint64_t bytes = state_bytes(state);
      if (kept_total + bytes <= cache_budget) {
        kept[i] = std::move(state);
        kept_bytes[i] = bytes;
        kept_total += bytes;
        st.kept_peak_bytes = std::max(st.kept_peak_bytes, kept_total);
      }
      tick();
    }
    if (k < last_pass)
      means[gaps_[k].pooled] = (sum / static_cast<double>(count)).to(at::kFloat).reshape({1, gaps_[k].channels, 1, 1});
  }
  if (stats) *stats = st;
}

at::Tensor upscaler::upscale_float(const at::Tensor& rgb, int tile, run_stats* stats) const {
  if (rgb.dim() != 3 || rgb.size(2) != 3 || rgb.scalar_type() != at::kByte)
    fail(errc::bad_parameter, "upscale_float expects [H, W, 3] uint8");
  const std::int64_t s = spec_.scale;
  at::Tensor out = at::empty({1, 3, s * rgb.size(0), s * rgb.size(1)});
  run_tiles(rgb, tile,
            [&](const tile_geom& t, const at::Tensor& y) {
              using namespace at::indexing;
              out.index_put_({Slice(), Slice(), Slice(s * t.y0, s * (t.y0 + t.h)), Slice(s * t.x0, s * (t.x0 + t.w))},
                             y * spec_.out_scale + spec_.out_offset);
            },
            {}, stats);
  return out;
}

at::Tensor upscaler::run_network(const at::Tensor& input) const {
  c10::InferenceMode guard;
  return whole_->run({input}).at(0);
}

image::image_rgba8 upscaler::upscale(const image::image_rgba8& img, int tile, const progress_fn& progress,
                                     run_stats* stats) const {
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
  run_tiles(rgb, tile,
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
            progress, stats);
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
          {"max_output_pixels", spec_.max_output_pixels},
          {"memory_budget_mb", spec_.memory_budget >> 20}};
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