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

  /// @brief Upscales an image; tile < 0 uses the pack's tile size, 0 the whole image. Refuses
  /// (too_large) outputs over max_output_pixels.
  image::image_rgba8 upscale(const image::image_rgba8& img, int tile = -1, const progress_fn& progress = {}) const;

  /// @brief The RGB result before rounding, [1, 3, s*H, s*W] in pixel units (0..255 nominal),
  /// for parity tests. rgb is [H, W, 3] uint8.
  at::Tensor upscale_float(const at::Tensor& rgb, int tile) const;

  /// @brief The network's raw output for a prepared input [1, 3, H, W] (no tiling).
  at::Tensor run_network(const at::Tensor& input) const;

  [[nodiscard]] nlohmann::json describe() const;

 private:
  struct gap_info {
    std::string feature;    // value pooled
    std::string pooled;     // the pool's output (graph input in the tiled executors)
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

  std::vector<tile_geom> plan(std::int64_t height, std::int64_t width, std::int64_t tile) const;
  at::Tensor tile_input(const at::Tensor& rgb, const tile_geom& t) const;
  void run_tiles(const at::Tensor& rgb, std::int64_t tile, const std::function<void(const tile_geom&, const at::Tensor&)>& sink,
                 const progress_fn& progress) const;

  model_manifest manifest_;
  upscale_spec spec_;
  std::unique_ptr<runtime::executor> whole_;                  // the plain graph
  std::vector<std::unique_ptr<runtime::executor>> partial_;   // pass k: image + means[0..k) -> feature k
  std::unique_ptr<runtime::executor> final_;                  // image + all means -> output
  std::vector<gap_info> gaps_;
};

/// @brief Loads one upscaler pack from a models directory without loading the others: the pack
/// named `name` (or aliased so), or the first upscaler pack in name order when name is empty.
/// Unknown name → not_found; a pack that is not an upscaler → bad_parameter.
std::unique_ptr<upscaler> load_upscaler(const std::filesystem::path& models_dir, std::string_view name);

}  // namespace acg2vec::models