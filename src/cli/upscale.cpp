// `acg2vec upscale IN... [-o OUT | --output-dir D] [--model M] [--format png|webp|jpg]`
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>

#include "cli/commands.h"
#include "core/files.h"
#include "core/error.h"
#include "core/progress.h"
#include "image/decode.h"
#include "image/encode.h"
#include "models/upscaler.h"

namespace acg2vec::cli {
namespace {

namespace fs = std::filesystem;

struct upscale_options {
  std::vector<std::string> inputs;
  std::string output;
  std::string output_dir;
  std::string model;
  std::string format;
  int tile = -1;
  int memory_budget_mb = -1;
  int quality = 92;
  bool overwrite = false;
};

bool image_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* e : {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
    if (ext == e) return true;
  return false;
}

// Files named on the command line, and the images directly inside named folders (sorted).
std::vector<fs::path> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<fs::path> files;
  for (const auto& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::vector<fs::path> found;
      for (const auto& e : fs::directory_iterator(in, ec))
        if (e.is_regular_file() && image_extension(e.path())) found.push_back(e.path());
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(in, ec)) {
      files.emplace_back(in);
    } else {
      fail(errc::not_found, "input '{}' does not exist", in);
    }
  }
  if (files.empty()) fail(errc::bad_parameter, "no image files among the inputs");
  return files;
}

void run(const upscale_options& o, const global_options& global) {
  if (!o.output.empty() && !o.output_dir.empty()) fail(errc::bad_parameter, "-o and --output-dir exclude each other");
  const auto files = expand_inputs(o.inputs);
  if (!o.output.empty() && files.size() != 1)
    fail(errc::bad_parameter, "-o names one output file but there are {} inputs; use --output-dir", files.size());
  std::string format = o.format;
  if (format.empty()) format = !o.output.empty() && fs::path(o.output).has_extension()
                                   ? fs::path(o.output).extension().string().substr(1)
                                   : "png";
  const std::string_view fmt_name = image::parse_output_format(format);
  const std::string ext = fmt_name == "jpeg" ? ".jpg" : "." + std::string(fmt_name);
  if (!o.output_dir.empty()) fs::create_directories(o.output_dir);

  // The network runs on this thread, with the threads main.cpp configured (--intra-op-threads,
  // one per core by default); libtorch's own default was 1 on a 2-core machine.
  const auto u = models::load_upscaler(global.models_dir, o.model);
  if (o.memory_budget_mb >= 0) u->set_memory_budget(static_cast<std::uint64_t>(o.memory_budget_mb) << 20);
  const int scale = u->spec().scale;
  image::decode_limits limits;
  limits.max_bytes = 256u << 20;
  limits.max_pixels = u->spec().max_input_pixels;

  const bool many = files.size() > 1;
  std::unique_ptr<progress_bar> bar;
  if (many) bar = std::make_unique<progress_bar>("upscale", files.size());
  int failed = 0;
  for (const auto& in : files) {
    fs::path out;
    if (!o.output.empty()) out = o.output;
    else if (!o.output_dir.empty()) out = fs::path(o.output_dir) / (in.stem().string() + ext);
    else out = in.parent_path() / (in.stem().string() + "_" + std::to_string(scale) + "x" + ext);
    try {
      std::error_code ec;
      if (fs::exists(out, ec) && fs::equivalent(out, in, ec)) fail(errc::bad_parameter, "output would replace the input");
      if (fs::exists(out, ec) && !o.overwrite) fail(errc::conflict, "{} exists (use --overwrite)", out.string());
      const auto img = image::decode_image_rgba(read_file(in, "image", limits.max_bytes), limits);
      const auto start = std::chrono::steady_clock::now();
      std::unique_ptr<progress_bar> tiles;
      models::upscaler::run_stats st;
      const auto result = u->upscale(
          img, o.tile,
          [&](std::size_t /*done*/, std::size_t total) {
            if (many || total < 8) return;  // a bar per tile only for one large image
            if (!tiles) tiles = std::make_unique<progress_bar>("tiles", total);
            tiles->advance();
          },
          &st);
      if (tiles) tiles->finish();
      write_file_atomic(out, image::encode_image(result, fmt_name, o.quality));
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (bar) bar->advance();
      std::string how;  // how it was cut: what --tile and --memory-budget decided
      if (st.tiles > 1)
        how = " [" + std::to_string(st.tiles) + " tiles of " + std::to_string(st.tile) + ", " +
              std::to_string(st.segment_runs) + " segment runs, " + std::to_string(st.resumed) + " resumed]";
      std::printf("%s -> %s (%dx%d -> %dx%d, %.2fs)%s\n", in.string().c_str(), out.string().c_str(), img.width,
                  img.height, result.width, result.height, s, how.c_str());
    } catch (const error& e) {
      if (bar) bar->advance();
      if (!many) throw;
      std::fprintf(stderr, "acg2vec: %s: %s\n", in.string().c_str(), e.what());
      ++failed;
    }
  }
  if (bar) bar->finish();
  if (failed) fail(errc::bad_parameter, "{} of {} images failed", failed, files.size());
}

}  // namespace

void add_upscale_command(CLI::App& app, global_options& global) {
  auto o = std::make_shared<upscale_options>();
  auto* cmd = app.add_subcommand("upscale", "upscale images with an upscaler pack (Real-CUGAN 2x by default)");
  cmd->add_option("inputs", o->inputs, "image files, or folders whose images are all upscaled")->required();
  cmd->add_option("-o,--output", o->output, "output file (one input only); its extension picks the format");
  cmd->add_option("--output-dir", o->output_dir,
                  "folder for the outputs, named like the inputs (default: beside each input as NAME_2x.EXT)");
  cmd->add_option("--model", o->model, "upscaler pack name or alias (default: the first upscaler pack by name)");
  cmd->add_option("--format", o->format, "png (default), webp or jpg; PNG and WebP keep alpha");
  cmd->add_option("--tile", o->tile,
                  "tile size in input pixels (0 = whole image; default: the whole image when it fits --memory-budget, "
                  "else the pack's tile)")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--memory-budget", o->memory_budget_mb,
                  "MB of network activations one image may use (default: the pack's upscale.memory_budget_mb, 1536): "
                  "decides whole image vs tiles, and how many tiles keep their state between SE passes")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--quality", o->quality, "JPEG / lossy WebP quality 1-100")->check(CLI::Range(1, 100))->capture_default_str();
  cmd->add_flag("--overwrite", o->overwrite, "replace existing output files");
  cmd->callback([o, &global] { run(*o, global); });
}

}  // namespace acg2vec::cli
