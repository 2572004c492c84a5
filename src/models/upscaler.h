#pragma once
// The `upscaler` pack task: an image-to-image super-resolution network (e.g. Real-CUGAN) run
// tile by tile, so that memory depends on the tile size, not on the image size.
//
// Geometry (manifest "upscale" object, docs/model-packs.md):
// - scale s: output pixels per input pixel;
// - pre_padding p: pixels the network consumes at each side (valid convolutions). The image is
//   reflect-padded by p (ncnn/realcugan: copy_make_border type 2, PyTorch 'reflect'), so an
//   input of W + 2p gives an output of s*W;
// - multiple m: W (after padding right/bottom with extra reflected pixels) must be a multiple
//   of m (Real-CUGAN 2x: 2, for its stride-2 stages);
// - tile T: the image is cut into T x T cores, each run with p (+ overlap) pixels of real or
//   reflected context; 0 runs the whole image at once;
// - overlap o: extra context per side for networks with zero-padded ("same") convolutions,
//   cropped from the output; 0 for valid-convolution networks like Real-CUGAN.
//
// Squeeze-and-excitation blocks (GlobalAveragePool of a feature map) see the whole image, not
// one tile. With more than one tile the upscaler makes one pass per SE block: pass k runs every
// tile up to the k-th pooled feature map, with the means of the earlier blocks fixed, and sums
// each tile's share of that map - the features of its own core, so that the tiles partition the
// whole-image map exactly; the mean is then the whole image's. The last pass runs every tile to
// the output with all means fixed. Tiled output therefore equals whole-image output up to
// float rounding (realcugan-ncnn-vulkan and the upstream PyTorch tiler instead average per-tile
// means, which only approximates it).
//
// The graph is cut into segments at the SE blocks (segment k ends at the k-th pooled map and
// hands over every value still needed later: the map, skip connections, ...). A tile whose
// hand-over from pass k-1 is kept resumes there in pass k; one whose hand-over did not fit the
// memory budget recomputes its prefix from the input. So each pass costs one segment per tile
// while the kept hand-overs fit, and memory stays bounded beyond that.
//
// Memory budget (upscale.memory_budget_mb, `acg2vec upscale --memory-budget`): the bytes of
// network activations one upscale may hold. With the pack's default tile, an image whose
// estimated whole-image peak (a liveness count over the graph's value sizes, see
// estimate_peak_bytes) fits runs in one piece (fastest, no SE passes); otherwise it is tiled,
// and the tiles' kept hand-overs use what the budget leaves after one tile's own peak. The
// decoded input, the output image and the weights are not counted.
//
// Pre/post-processing: network input = pixel * in_scale + in_offset (RGB, Real-CUGAN: /255),
// pixel = clamp(round(output * out_scale + out_offset)) (Real-CUGAN: *255). Alpha is upscaled
// separately with bicubic interpolation (A = -0.75, half-pixel centres, as realcugan-ncnn-vulkan's
// Interp), per tile with 2 pixels of context, which is exact.

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string_view>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "image/decode.h"
#include "models/manifest.h"
#include "runtime/executor.h"
#include "runtime/graph.h"

namespace acg2vec::models {

struct upscale_spec {
  int scale = 2;
  int pre_padding = 0;
  int multiple = 1;
  int tile = 256;
  int overlap = 0;
  double in_scale = 1.0 / 255.0, in_offset = 0.0;
  double out_scale = 255.0, out_offset = 0.0;
  std::uint64_t max_input_pixels = 16'777'216;   ///< 4096 x 4096
  std::uint64_t max_output_pixels = 67'108'864;  ///< 8192 x 8192
  std::uint64_t memory_budget = 1536ull << 20;    ///< activation bytes (manifest: memory_budget_mb)

  /// @brief Reads manifest["upscale"]; throws bad_parameter naming the pack and field.
  static upscale_spec from_manifest(const model_manifest& m);
};

class upscaler {
 public:
  /// Called after each tile of the final pass with (tiles done, tiles in all).
  using progress_fn = std::function<void(std::size_t, std::size_t)>;

  upscaler(model_manifest manifest, const runtime::graph& graph);

  [[nodiscard]] const model_manifest& manifest() const noexcept { return manifest_; }
  [[nodiscard]] const upscale_spec& spec() const noexcept { return spec_; }
  /// @brief Number of squeeze-and-excitation (global average pool) blocks found in the graph.
  [[nodiscard]] std::size_t se_blocks() const noexcept { return gaps_.size(); }

  /// What one upscale did (for tests and benchmarks).
  struct run_stats {
    std::size_t tiles = 0;           ///< 1 = whole image
    std::int64_t tile = 0;           ///< tile size used (0 = whole image)
    std::size_t segment_runs = 0;    ///< network segments run, all passes and tiles together
    std::size_t resumed = 0;         ///< tile passes that resumed from a kept hand-over
    std::uint64_t kept_peak_bytes = 0;  ///< most bytes of kept hand-overs at one time
  };

  /// @brief Upscales an image; tile < 0 picks by the memory budget (whole image when its
  /// estimated peak fits, else the pack's tile size), 0 the whole image. Refuses (too_large)
  /// outputs over max_output_pixels.
  image::image_rgba8 upscale(const image::image_rgba8& img, int tile = -1, const progress_fn& progress = {},
                             run_stats* stats = nullptr) const;

  /// @brief The RGB result before rounding, [1, 3, s*H, s*W] in pixel units (0..255 nominal),
  /// for parity tests. rgb is [H, W, 3] uint8; tile as for upscale().
  at::Tensor upscale_float(const at::Tensor& rgb, int tile, run_stats* stats = nullptr) const;

  /// @brief Replaces the pack's memory budget (bytes of activations; see the header comment).
  void set_memory_budget(std::uint64_t bytes) noexcept { spec_.memory_budget = bytes; }
  /// @brief Estimated peak activation bytes of one network run on a core of height x width
  /// input pixels (pre-padding added here): the most bytes of values alive at once, in the
  /// graph's order, plus the input.
  [[nodiscard]] std::uint64_t estimate_peak_bytes(std::int64_t height, std::int64_t width) const;
  /// @brief The tile size upscale() uses for an image of height x width when asked for `tile`.
  [[nodiscard]] std::int64_t tile_for(std::int64_t height, std::int64_t width, int tile) const;

  /// @brief The network's raw output for a prepared input [1, 3, H, W] (no tiling).
  at::Tensor run_network(const at::Tensor& input) const;

  [[nodiscard]] nlohmann::json describe() const;

 private:
  struct gap_info {
    std::string feature;    // value pooled
    std::string pooled;     // the pool's output (graph input in the segment executors)
    std::int64_t channels = 0;
    // the pooled map has rate * core + extra features per side for a core of `core` pixels
    double rate = 1.0;
    std::int64_t extra = 0;
  };
  struct tile_geom {
    std::int64_t y0, x0;       // core origin in image pixels
    std::int64_t h, w;         // real pixels of the core (clipped to the image)
    std::int64_t hc, wc;       // core size fed (h, w rounded up to the multiple)
    bool last_row, last_col;
    std::int64_t step;         // the tile size in effect (cores start at multiples of it)
  };
  // Segment k (k < number of SE blocks) runs the nodes between SE block k-1 and SE block k and
  // yields gap k's feature map; the last one runs to the output. Values travel between segments
  // by name in a per-tile state.
  struct segment {
    std::unique_ptr<runtime::executor> exec;
    std::vector<std::string> inputs;    // taken from the state (or the means)
    std::vector<std::string> outputs;   // added to the state
    std::vector<std::string> keep;      // state names still needed after this segment's pass
  };
  // Size of one value for an input side of n pixels: channels * (rate * n + extra) per axis.
  struct value_size {
    std::int64_t first = 0, last = 0;   // positions (graph order) of its producer and last reader
    double elems = 0;                   // fixed part (non-image values), or channels
    double rate_h = 0, extra_h = 0, rate_w = 0, extra_w = 0;
    bool spatial = false;
  };

  std::vector<tile_geom> plan(std::int64_t height, std::int64_t width, std::int64_t tile) const;
  at::Tensor tile_input(const at::Tensor& rgb, const tile_geom& t) const;
  void run_tiles(const at::Tensor& rgb, int tile, const std::function<void(const tile_geom&, const at::Tensor&)>& sink,
                 const progress_fn& progress, run_stats* stats) const;
  void build_segments(const runtime::graph& graph);
  void build_size_model(const runtime::graph& graph);

  model_manifest manifest_;
  upscale_spec spec_;
  std::unique_ptr<runtime::executor> whole_;  // the plain graph
  std::vector<segment> segments_;             // SE blocks + 1 when there are SE blocks
  std::vector<gap_info> gaps_;
  std::vector<value_size> sizes_;             // every value, for estimate_peak_bytes
  std::int64_t steps_ = 0;                    // node positions
  std::string input_name_, output_name_;
};

/// @brief Loads one upscaler pack from a models directory without loading the others: the pack
/// named `name` (or aliased so), or the first upscaler pack in name order when name is empty.
/// Unknown name → not_found; a pack that is not an upscaler → bad_parameter.
std::unique_ptr<upscaler> load_upscaler(const std::filesystem::path& models_dir, std::string_view name);

}  // namespace acg2vec::models