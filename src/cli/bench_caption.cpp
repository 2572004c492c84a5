// `acg2vec bench caption --pack DIR --dir IMAGES`: the captioning path against its references,
// in one run on the same folder and the same pack, so that the ratios mean something on a busy
// machine:
//   1. model-only: the pack's forward at its max_batch on the compute thread (what the batcher
//      calls), on a preprocessed image of the folder repeated;
//   2. `acg2vec tag IMAGES --captions` as a user runs it (a child process; its own timing, which
//      leaves out loading the pack and starts with the first decode);
//   3. ONNX Runtime in node running the pack's ONNX file image by image, as the popular WD14
//      tagger scripts run it (bench/ort_caption_peer.js: decode, pad, resize, BGR float, one
//      session.run per image, caption files written).
// The captions of 2 and 3 are compared (mean Jaccard of the tag sets) as a check that both ran
// the same graph; their preprocessing differs in the resize filter, so a few tags near a
// threshold may differ.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/bench_common.h"
#include "core/error.h"
#include "image/decode.h"
#include "models/captioning.h"
#include "models/graph_model.h"
#include "models/manifest.h"
#include "models/registry.h"
#include "runtime/blas.h"
#include "runtime/compute.h"

namespace acg2vec::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;
using namespace bench;

struct caption_bench_options {
  std::string pack;
  std::string dir;
  std::size_t max_files = 100;
  double seconds = 5.0;
  int rounds = 1;
  bool skip_ort = false;
};

std::vector<fs::path> image_files(const fs::path& dir, std::size_t max_files) {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink)) {
    if (!e.is_regular_file()) continue;
    auto ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    // The node peer decodes JPEG and PNG only (pure-JS decoders), so both sides get the same files.
    if (ext == ".jpg" || ext == ".jpeg" || ext == ".png") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.size() > max_files) files.resize(max_files);
  return files;
}

/// The labels as WD's selected_tags.csv (tag_id,name,category,count), whatever the pack's format.
void write_wd_labels(const models::model_manifest& m, const fs::path& file) {
  std::ofstream out(file);
  out << "tag_id,name,category,count\n";
  for (std::size_t i = 0; i < m.labels.size(); ++i) {
    std::string name = m.labels[i].name;
    std::string quoted = "\"";
    for (char c : name) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    quoted += '"';
    out << i << ',' << quoted << ',' << static_cast<int>(m.labels[i].category) << ",0\n";
  }
  if (!out) fail(errc::internal, "cannot write {}", file.string());
}

std::set<std::string> caption_tags(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream s;
  s << in.rdbuf();
  std::set<std::string> tags;
  for (auto& t : models::split_tags(s.str(), ", ")) tags.insert(t);
  return tags;
}

struct caption_run {
  std::size_t images = 0;
  double seconds = 0;
  double rate = 0;
  std::string note;
};

/// `acg2vec tag IMAGES --captions` in a child: its own "captioned N images ... in S s" line.
caption_run run_tag_captions(const fs::path& models_dir, const std::string& name, const fs::path& images,
                             const fs::path& out) {
  const std::string exe = fs::read_symlink("/proc/self/exe").string();
  fs::remove_all(out);
  auto r = run_command(fmt::format("{} --log-level error --models-dir {} tag {} --captions --model {} --output-dir {} "
                                   "--on-existing overwrite 2>/dev/null",
                                   shell_quote(exe), shell_quote(models_dir.string()), shell_quote(images.string()),
                                   shell_quote(name), shell_quote(out.string())));
  caption_run c;
  auto pos = r.out.find("captioned ");
  auto in = r.out.find(" in ", pos == std::string::npos ? 0 : pos);
  if (r.status != 0 || pos == std::string::npos || in == std::string::npos ||
      std::sscanf(r.out.c_str() + pos, "captioned %zu images", &c.images) != 1) {
    c.note = fmt::format("tag --captions failed (exit {}): {}", r.status, r.out);
    return c;
  }
  c.seconds = std::strtod(r.out.c_str() + in + 4, nullptr);
  // The printed seconds have one decimal: the rate uses the child's own images/s figure.
  auto comma = r.out.find("s, ", in);
  c.rate = comma == std::string::npos ? static_cast<double>(c.images) / c.seconds
                                      : std::strtod(r.out.c_str() + comma + 3, nullptr);
  return c;
}

void run_bench_caption(const caption_bench_options& o) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const auto m = models::load_manifest(o.pack);
  if (m.task != models::model_task::tagger) fail(errc::bad_parameter, "bench caption: '{}' is a {} pack, not a tagger", m.name, to_string(m.task));
  if (!m.base.empty()) fail(errc::bad_parameter, "pack '{}' reuses '{}': bench the base pack", m.name, m.base);
  const auto files = image_files(o.dir, o.max_files);
  if (files.empty()) fail(errc::bad_parameter, "bench caption: no .jpg, .jpeg or .png files under {}", o.dir);
  const std::int64_t max_batch = std::max(1, m.max_batch);
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());

  scratch_dir tmp("caption");
  const auto models_dir = tmp.path() / "models";
  const auto images = tmp.path() / "images";
  fs::create_directories(models_dir);
  fs::create_directories(images);
  fs::create_directory_symlink(fs::canonical(o.pack), models_dir / m.name);
  for (std::size_t i = 0; i < files.size(); ++i) {
    fs::create_symlink(fs::absolute(files[i]),
                       images / fmt::format("{:05}_{}", i, files[i].filename().string()));
  }

  auto cpu = runtime::detect_cpu_features();
  fmt::print("bench caption: pack {} (max_batch {}), {} images from {}, load average {}\n", m.name, max_batch,
             files.size(), o.dir, load_average());
  fmt::print("CPU: {} ({}), {} cores\n{}\n", cpu.model.empty() ? cpu.vendor : cpu.model,
             cpu.avx512 ? "avx512" : cpu.avx2 ? "avx2" : "avx or less", cores, runtime::describe_blas());

  // The peer's tree is looked up first: a missing one fails before anything is measured.
  const auto root = o.skip_ort ? fs::path() : source_root();

  // 1. Model-only at max_batch, on the compute thread, with the forward the batcher calls.
  double model_rate = 0, model_p50 = 0;
  {
    std::unique_ptr<models::graph_model> model;
    runtime::on_compute_thread([&] { model = std::make_unique<models::graph_model>(m, models::load_graph(m.format, m.file)); });
    if (!model->takes_images()) fail(errc::bad_parameter, "pack '{}' does not take images", m.name);
    at::Tensor one = model->image_tensor(image::decode_image_file(files.front()));
    std::vector<at::Tensor> rows(static_cast<std::size_t>(max_batch), one);
    at::Tensor full = at::cat(rows, 0);
    runtime::on_compute_thread([&] {
      for (int i = 0; i < 2; ++i) (void)model->run_batch(full);
      std::vector<double> ms;
      auto start = clock_type::now();
      while (ms.size() < 3 || seconds_since(start) < o.seconds) {
        auto t0 = clock_type::now();
        (void)model->run_batch(full);
        ms.push_back(seconds_since(t0) * 1e3);
      }
      model_rate = static_cast<double>(ms.size() * static_cast<std::size_t>(max_batch)) / seconds_since(start);
      model_p50 = percentile(ms, 0.5);
    });
    runtime::on_compute_thread([&] { model.reset(); });
  }

  // The ONNX Runtime peer needs the ONNX file and WD's interface (NHWC, 0..255, BGR or RGB).
  const auto wd_input = [&] {
    const auto& in = m.input;
    auto layout = in.value("layout", std::string("NHWC"));
    auto scale = in.value("scale", 1.0);
    return m.format == models::model_format::onnx && (layout == "NHWC" || layout == "nhwc") && scale == 1.0 &&
           !in.contains("mean") && !in.contains("std");
  }();
  std::string ort_note;
  if (o.skip_ort) {
    ort_note = "ONNX Runtime row left out (--skip-ort)";
  } else if (!wd_input) {
    ort_note = "ONNX Runtime row left out: the peer prepares WD's input (ONNX, NHWC, 0..255), this pack wants another";
  }
  const bool with_ort = ort_note.empty();
  const auto labels_csv = tmp.path() / "selected_tags.csv";
  write_wd_labels(m, labels_csv);
  const auto thresholds = models::resolve_thresholds({}, m);
  const std::string channels = m.input.value("channels", std::string("RGB")) == "BGR" ? "BGR" : "RGB";

  struct round_result {
    caption_run ours;
    json ort;
    double jaccard = -1;
  };
  std::vector<round_result> rounds;
  for (int r = 0; r < o.rounds; ++r) {
    round_result rr;
    const auto ours_out = tmp.path() / "captions-acg2vec";
    rr.ours = run_tag_captions(models_dir, m.name, images, ours_out);
    if (with_ort) {
      const auto ort_out = tmp.path() / "captions-ort";
      fs::remove_all(ort_out);
      auto cmd = fmt::format(
          "NODE_PATH={} node {} --onnx {} --labels {} --dir {} --size {} --out {} --threads {} --general {} "
          "--character {} --channels {}",
          shell_quote((root / "tools/node_modules").string()), shell_quote((root / "bench/ort_caption_peer.js").string()),
          shell_quote(fs::absolute(m.file).string()), shell_quote(labels_csv.string()), shell_quote(images.string()),
          m.input.at("size").at(0).get<int>(), shell_quote(ort_out.string()), cores, thresholds.general,
          thresholds.character, channels);
      auto res = run_command(cmd);
      try {
        if (res.status != 0) fail(errc::internal, "exit {}", res.status);
        rr.ort = json::parse(res.out.substr(res.out.find('{')));
      } catch (const std::exception& e) {
        ort_note = fmt::format("ONNX Runtime peer failed: {}", e.what());
      }
      // Both sides caption every file: compare their tag sets.
      if (rr.ours.images > 0 && rr.ort.is_object()) {
        double sum = 0;
        std::size_t n = 0;
        for (const auto& e : fs::directory_iterator(images)) {
          auto stem = e.path().stem().string() + ".txt";
          auto a = caption_tags(ours_out / stem), b = caption_tags(ort_out / stem);
          std::size_t common = 0;
          for (const auto& t : a) common += b.count(t);
          const std::size_t uni = a.size() + b.size() - common;
          sum += uni == 0 ? 1.0 : static_cast<double>(common) / static_cast<double>(uni);
          ++n;
        }
        rr.jaccard = n ? sum / static_cast<double>(n) : -1;
      }
    }
    rounds.push_back(std::move(rr));
  }

  fmt::print("\n{:<44} {:>6} {:>9}   {}\n", "WHAT", "IMAGES", "IMAGES/S", "AGAINST (target)");
  fmt::print("{:<44} {:>6} {:>9.2f}   p50 {:.1f} ms per pass\n", fmt::format("model-only batch {} (acg2vec)", max_batch),
             "-", model_rate, model_p50);
  for (std::size_t r = 0; r < rounds.size(); ++r) {
    const auto& rr = rounds[r];
    const std::string tag = rounds.size() > 1 ? fmt::format(" [round {}]", r + 1) : std::string();
    if (rr.ours.images == 0) {
      fmt::print("{}\n", rr.ours.note);
    } else {
      fmt::print("{:<44} {:>6} {:>9.2f}   {:.2f}x of model-only batch {} (>= 0.90)\n", "tag --captions" + tag,
                 rr.ours.images, rr.ours.rate, rr.ours.rate / std::max(model_rate, 1e-9), max_batch);
    }
    if (rr.ort.is_object()) {
      const double ort_rate = rr.ort.value("images_per_s", 0.0);
      fmt::print("{:<44} {:>6} {:>9.2f}   tag --captions = {:.2f}x of it\n", "ONNX Runtime image by image (node)" + tag,
                 rr.ort.value("images", 0), ort_rate, rr.ours.rate / std::max(ort_rate, 1e-9));
      fmt::print("{:<44} {:>6} {:>9.2f}   per image: decode + preprocess {:.1f} ms, run {:.1f} ms, caption {:.1f} ms\n",
                 "  of which session.run only, batch 1" + tag, rr.ort.value("images", 0),
                 rr.ort.value("run_images_per_s", 0.0), rr.ort.value("decode_preprocess_ms", 0.0),
                 rr.ort.value("run_ms", 0.0), rr.ort.value("caption_ms", 0.0));
      if (rr.jaccard >= 0) fmt::print("caption agreement, mean Jaccard of the tag sets: {:.3f}\n", rr.jaccard);
    }
  }
  if (!ort_note.empty()) fmt::print("{}\n", ort_note);
  fmt::print("load average at the end: {}\n", load_average());
}

}  // namespace

void add_bench_caption(CLI::App& bench) {
  auto o = std::make_shared<caption_bench_options>();
  auto* cmd = bench.add_subcommand(
      "caption", "tag --captions of a folder vs the pack's model-only rate and ONNX Runtime image by image, in one run");
  cmd->add_option("--pack", o->pack, "tagger pack directory (an ONNX WD-style pack gets the ONNX Runtime row)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--dir", o->dir, "folder of .jpg/.jpeg/.png images (searched recursively)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--max-files", o->max_files, "images used at most (sorted by path)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--seconds", o->seconds, "duration of the model-only measurement")
      ->check(CLI::Range(0.2, 120.0))
      ->capture_default_str();
  cmd->add_option("--rounds", o->rounds, "captioning runs, alternating acg2vec and ONNX Runtime")
      ->check(CLI::Range(1, 10))
      ->capture_default_str();
  cmd->add_flag("--skip-ort", o->skip_ort, "leave out the ONNX Runtime peer");
  cmd->callback([o] { run_bench_caption(*o); });
}

}  // namespace acg2vec::cli
