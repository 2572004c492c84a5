// `acg2vec tag DIR --captions`: sidecar caption files for training sets (docs/captioning.md).
#include "cli/tag_captions.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <deque>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "image/decode.h"
#include "models/captioning.h"
#include "models/postprocess.h"
#include "models/registry.h"
#include "runtime/compute.h"

namespace acg2vec::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
constexpr const char* kCaptionGroup = "Captions (with --captions)";
}  // namespace

struct caption_cli_options {
  bool captions = false;
  bool recursive = false;
  std::string extension = ".txt";
  std::string output_dir;
  std::string on_existing = "skip";
  float thresh = -1, general = -1, character = -1;
  std::string undesired;
  bool remove_underscore = false;
  bool character_first = false;
  bool rating_first = false;
  bool rating_last = false;
  std::string always_first;
  std::string replacement;
  std::string separator = ", ";
  bool frequency = false;
  bool escape = false;
  bool mcut = false;
  int max_tags = 0;
  bool with_scores = false;
  std::string ensemble = "mean";
  std::string jsonl;
  float jsonl_floor = 0.05f;
  std::string config;
  int decode_threads = 0;
  bool config_applied = false;
};

std::shared_ptr<caption_cli_options> add_caption_options(CLI::App& cmd) {
  auto o = std::make_shared<caption_cli_options>();
  const std::string g = kCaptionGroup;
  cmd.add_flag("--captions", o->captions, "write one caption file per image (paths may be directories)")->group(g);
  cmd.add_flag("--recursive", o->recursive, "also caption images in subdirectories")->group(g);
  cmd.add_option("--caption-extension", o->extension, "caption file extension")->capture_default_str()->group(g);
  cmd.add_option("--output-dir", o->output_dir,
                 "write captions here, mirroring the folders under each DIR (default: beside each image)")
      ->group(g);
  cmd.add_option("--on-existing", o->on_existing,
                 "an existing caption: skip (resumes an interrupted run), overwrite, or append (new tags "
                 "after the existing ones, without duplicates)")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--thresh", o->thresh, "threshold for every category (default: the pack's thresholds)")
      ->check(CLI::Range(0.0, 1.0))
      ->group(g);
  cmd.add_option("--general-threshold", o->general, "threshold for general tags (default: --thresh)")
      ->check(CLI::Range(0.0, 1.0))
      ->group(g);
  cmd.add_option("--character-threshold", o->character,
                 "threshold for character tags (default: --thresh); above 1 drops them")
      ->check(CLI::Range(0.0, 2.0))
      ->group(g);
  cmd.add_option("--undesired-tags", o->undesired, "tags never written, separated like the captions ('a, b')")
      ->group(g);
  cmd.add_flag("--remove-underscore", o->remove_underscore, "write 'long hair' for long_hair (kaomoji such as ^_^ kept)")
      ->group(g);
  cmd.add_flag("--character-tags-first", o->character_first, "character tags before the others")->group(g);
  cmd.add_flag("--use-rating-tags", o->rating_first, "add the most likely rating as the first tag")->group(g);
  cmd.add_flag("--use-rating-tags-as-last-tag", o->rating_last, "add the most likely rating as the last tag")->group(g);
  cmd.add_option("--always-first-tags", o->always_first,
                 "tags moved to the front, in this order, when an image has them ('1girl, 1boy')")
      ->group(g);
  cmd.add_option("--tag-replacement", o->replacement,
                 "replace tags: 'source,target;source,target' (write \\, and \\; for literal , and ;)")
      ->group(g);
  cmd.add_option("--caption-separator", o->separator, "text between tags")->capture_default_str()->group(g);
  cmd.add_flag("--frequency-tags", o->frequency, "print how many images got each tag at the end")->group(g);
  cmd.add_flag("--escape-parentheses", o->escape, "write \\( and \\) as A1111 prompts need")->group(g);
  cmd.add_flag("--mcut", o->mcut,
               "per-image MCut thresholds for general and character tags (character at least 0.15)")
      ->group(g);
  cmd.add_option("--max-tags", o->max_tags, "at most N tags besides the rating (0 = no limit)")
      ->check(CLI::NonNegativeNumber)
      ->group(g);
  cmd.add_flag("--with-scores", o->with_scores, "write '(tag:0.85)' weights")->group(g);
  cmd.add_option("--ensemble", o->ensemble,
                 "with --model a,b: mean or max of the scores of the models that know a tag, or vote "
                 "(kept when at least half of them keep it)")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--jsonl", o->jsonl, "also write one JSON line per image with every score above --jsonl-min-score")
      ->group(g);
  cmd.add_option("--jsonl-min-score", o->jsonl_floor, "score floor of --jsonl")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--config", o->config,
                 "read these options from a JSON or TOML file (keys as the flags without '--'); "
                 "the command line wins")
      ->check(CLI::ExistingFile)
      ->group(g);
  cmd.add_option("--decode-threads", o->decode_threads, "image decoding threads (default: half the cores, 1..8)")
      ->check(CLI::Range(0, 64))
      ->group(g);
  return o;
}

namespace {

// Gives an option the value a config file holds unless the command line already set it.
void apply_setting(CLI::App& cmd, const std::string& key, const std::vector<std::string>& values) {
  std::string flag = key;
  std::replace(flag.begin(), flag.end(), '_', '-');
  if (flag == "config") fail(errc::bad_parameter, "--config: a config file cannot name another");
  auto* opt = cmd.get_option_no_throw("--" + flag);
  if (!opt) fail(errc::bad_parameter, "--config: unknown setting '{}'", key);
  if (opt->count() > 0) return;
  for (const auto& v : values) opt->add_result(v);
  try {
    opt->run_callback();
  } catch (const CLI::Error& e) {
    fail(errc::bad_parameter, "--config: bad value for '{}': {}", key, e.what());
  }
}

void apply_config(CLI::App& cmd, const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(errc::not_found, "--config: cannot read {}", path);
  std::stringstream text;
  text << in.rdbuf();
  auto body = text.str();
  auto first = body.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && body[first] == '{') {
    json j;
    try {
      j = json::parse(body);
    } catch (const json::exception& e) {
      fail(errc::bad_parameter, "--config: {} is not valid JSON: {}", path, e.what());
    }
    for (const auto& [key, value] : j.items()) {
      std::vector<std::string> values;
      auto scalar = [&](const json& v) -> std::string {
        if (v.is_string()) return v.get<std::string>();
        if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
        if (v.is_number()) return v.dump();
        fail(errc::bad_parameter, "--config: '{}' must be a string, number, boolean or a list of strings", key);
      };
      if (value.is_array()) {
        // A list of tags is the same as the comma-separated text on the command line.
        std::string joined;
        for (const auto& v : value) joined += (joined.empty() ? "" : ",") + scalar(v);
        values.push_back(joined);
      } else {
        values.push_back(scalar(value));
      }
      apply_setting(cmd, key, values);
    }
    return;
  }
  std::istringstream toml(body);
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_config(toml);
  } catch (const CLI::Error& e) {
    fail(errc::bad_parameter, "--config: {} is neither JSON nor TOML: {}", path, e.what());
  }
  for (const auto& item : items) {
    if (item.name == "++" || item.name == "--") continue;  // CLI11's section markers
    if (!item.parents.empty() && !(item.parents.size() == 1 && item.parents[0] == "default")) {
      fail(errc::bad_parameter, "--config: sections are not supported ('{}')", item.fullname());
    }
    apply_setting(cmd, item.name, item.inputs);
  }
}

struct work_item {
  fs::path image;
  fs::path caption;
};

struct decoded {
  std::vector<at::Tensor> inputs;  // one per model
  std::string error;
};

std::vector<std::string> split_models(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) {
    auto b = part.find_first_not_of(' ');
    auto e = part.find_last_not_of(' ');
    if (b != std::string::npos) out.push_back(part.substr(b, e - b + 1));
  }
  if (out.empty()) out.emplace_back();
  return out;
}

std::string read_file_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

bool captions_requested(CLI::App& cmd, caption_cli_options& o) {
  if (!o.config.empty() && !o.config_applied) {
    o.config_applied = true;
    apply_config(cmd, o.config);
  }
  if (!o.captions) {
    for (const auto* opt : cmd.get_options([](const CLI::Option* x) { return x->get_group() == kCaptionGroup; })) {
      if (opt->count() > 0) fail(errc::bad_parameter, "{} needs --captions", opt->get_name());
    }
  }
  return o.captions;
}

void run_caption_job(const global_options& global, CLI::App& cmd, caption_cli_options& o,
                     const std::vector<std::string>& paths, const std::string& model_names,
                     float legacy_threshold) {
  captions_requested(cmd, o);
  models::caption_options copts;
  if (o.thresh >= 0) {
    copts.thresholds.thresh = o.thresh;
  } else if (legacy_threshold >= 0) {
    copts.thresholds.thresh = legacy_threshold;
  }
  if (o.general >= 0) copts.thresholds.general = o.general;
  if (o.character >= 0) copts.thresholds.character = o.character;
  copts.mcut = o.mcut;
  copts.undesired = models::split_tags(o.undesired, o.separator);
  copts.remove_underscore = o.remove_underscore;
  copts.character_tags_first = o.character_first;
  copts.rating_first = o.rating_first;
  copts.rating_last = o.rating_last;
  copts.always_first = models::split_tags(o.always_first, o.separator);
  copts.replacements = models::parse_tag_replacement(o.replacement);
  copts.separator = o.separator;
  copts.escape_parentheses = o.escape;
  copts.max_tags = o.max_tags;
  copts.with_scores = o.with_scores;
  copts.ensemble = models::parse_ensemble_mode(o.ensemble);
  auto policy = models::parse_existing_policy(o.on_existing);
  if (o.extension.empty() || o.extension.find('/') != std::string::npos) {
    fail(errc::bad_parameter, "--caption-extension must be a non-empty file name suffix such as .txt");
  }
  if (o.separator.empty()) fail(errc::bad_parameter, "--caption-separator must not be empty");

  // Packs.
  // Model passes: how full they were and how long the models ran, against the job's time.
  struct pass_stats {
    std::mutex mutex;
    std::size_t passes = 0, rows = 0;
    double seconds = 0;
  };
  auto passes = std::make_shared<pass_stats>();
  models::model_registry reg(global.models_dir, [passes](const std::string&, std::size_t rows, double seconds) {
    std::lock_guard lock(passes->mutex);
    ++passes->passes;
    passes->rows += rows;
    passes->seconds += seconds;
  });
  reg.load_all();
  std::vector<std::shared_ptr<const models::model_entry>> models;
  for (const auto& name : split_models(model_names)) {
    auto e = reg.resolve(name, models::model_task::tagger);
    if (!e->graph || !e->graph->takes_images()) fail(errc::bad_parameter, "model '{}' does not take images", e->manifest.name);
    models.push_back(e);
  }
  std::vector<models::category_thresholds> model_thresholds;
  for (const auto& m : models) model_thresholds.push_back(models::resolve_thresholds(copts.thresholds, m->manifest));

  // Images and their caption files.
  fs::path out_dir = o.output_dir;
  std::vector<work_item> items;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (auto& img : models::find_images(p, o.recursive)) {
        auto cap = models::caption_path(img, p, out_dir, o.extension);
        items.push_back({std::move(img), std::move(cap)});
      }
    } else if (fs::is_regular_file(p, ec)) {
      fs::path img(p);
      items.push_back({img, models::caption_path(img, img.parent_path(), out_dir, o.extension)});
    } else {
      fail(errc::not_found, "{} is neither a file nor a directory", p);
    }
  }
  std::size_t skipped = 0;
  std::vector<work_item> todo;
  for (auto& it : items) {
    std::error_code ec;
    if (policy == models::existing_policy::skip && fs::exists(it.caption, ec)) {
      // A leftover of a run killed mid-write next to a finished caption is removed.
      fs::remove(models::temporary_path(it.caption), ec);
      ++skipped;
      continue;
    }
    todo.push_back(std::move(it));
  }

  std::ofstream jsonl;
  if (!o.jsonl.empty()) {
    // A resumed or appending run completes the file; an overwriting run starts it again.
    auto mode = policy == models::existing_policy::overwrite ? std::ios::trunc : std::ios::app;
    jsonl.open(o.jsonl, std::ios::out | mode);
    if (!jsonl) fail(errc::not_found, "cannot write {}", o.jsonl);
  }

  // Decoding runs ahead of the model on a pool, a bounded window of images at a time.
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::size_t threads = o.decode_threads > 0 ? static_cast<std::size_t>(o.decode_threads)
                                             : std::clamp<std::size_t>(cores / 2, 1, 8);
  thread_pool pool(threads, input_thread_nice());
  const std::size_t chunk = static_cast<std::size_t>(std::max(1, models.front()->manifest.max_batch));
  const std::size_t window = chunk * 3 + threads;
  std::deque<std::future<decoded>> pending;
  std::size_t next = 0;
  auto refill = [&] {
    while (next < todo.size() && pending.size() < window) {
      auto path = todo[next++].image;
      pending.push_back(pool.submit([path, &models] {
        decoded d;
        try {
          auto img = image::decode_image_file(path);
          for (const auto& m : models) d.inputs.push_back(m->graph->image_tensor(img));
        } catch (const std::exception& e) {
          d.error = e.what();
        }
        return d;
      }));
    }
  };

  std::size_t written = 0, appended = 0, failed = 0;
  std::map<std::string, std::size_t> frequency;
  json models_used = json::array();
  for (const auto& m : models) models_used.push_back(m->manifest.name);
  auto start = std::chrono::steady_clock::now();
  progress_bar bar("caption", todo.size());

  // One batch between its forward and its caption files. Batches are pipelined: batch k+1 is
  // queued for the compute thread before batch k's captions are chosen and written (fsync per
  // file), so the model never waits for the file system or the caption rules, and the compute
  // thread finds the next batch waiting as soon as a forward ends.
  struct in_flight {
    std::size_t base = 0, end = 0;
    std::vector<std::size_t> ok;
    std::future<std::vector<at::Tensor>> scores;  // [rows, labels] per model
  };
  auto launch = [&](std::size_t base, std::size_t end, std::vector<std::size_t> ok,
                    std::vector<std::vector<at::Tensor>> per_model) {
    in_flight f{base, end, std::move(ok), {}};
    if (f.ok.empty()) return f;
    f.scores = std::async(std::launch::async, [&models, inputs = std::move(per_model)] {
      // Merging the rows stays serial here; the forward itself runs on the compute thread.
      runtime::single_openmp_thread();
      std::vector<at::Tensor> scores;
      for (std::size_t m = 0; m < models.size(); ++m) {
        scores.push_back(models[m]->graph->run_batch(at::cat(inputs[m], 0)).at(0));
      }
      return scores;
    });
    return f;
  };
  auto finish = [&](in_flight& f) {
    if (f.ok.empty()) {
      bar.advance(f.end - f.base);
      return;
    }
    auto scores = f.scores.get();
    for (std::size_t j = 0; j < f.ok.size(); ++j) {
      const auto& item = todo[f.ok[j]];
      std::vector<models::model_scores> ms;
      for (std::size_t m = 0; m < models.size(); ++m) {
        ms.push_back({models::label_scores(models[m]->manifest, scores[m][static_cast<std::int64_t>(j)]), model_thresholds[m]});
      }
      auto combined = models::combine(ms, copts.ensemble, copts.mcut);
      auto cap = models::build_caption(combined, model_thresholds.front(), copts);
      std::string text = cap.text;
      std::error_code ec;
      bool exists = fs::exists(item.caption, ec);
      try {
        if (policy == models::existing_policy::append && exists) {
          std::vector<std::string> new_tags;
          for (const auto& t : cap.tags) new_tags.push_back(t.text);
          auto old = read_file_text(item.caption);
          text = models::merge_caption(old, new_tags, o.separator);
          ++appended;
        } else {
          ++written;
        }
        models::write_atomic(item.caption, text + "\n");
      } catch (const std::exception& e) {
        std::fprintf(stderr, "acg2vec: %s: %s\n", item.caption.c_str(), e.what());
        ++failed;
        continue;
      }
      if (o.frequency) {
        for (const auto& t : cap.tags) ++frequency[t.text];
      }
      if (jsonl.is_open()) {
        json tags = json::object(), ratings = json::object();
        for (const auto& t : combined) {
          if (t.category == models::tag_category::rating) {
            ratings[t.name] = t.score;
          } else if (t.score >= o.jsonl_floor) {
            tags[t.name] = t.score;
          }
        }
        json line{{"image", item.image.string()}, {"caption_file", item.caption.string()}, {"caption", text},
                  {"models", models_used}, {"rating", ratings}, {"tags", tags}};
        jsonl << line.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
        jsonl.flush();
      }
    }
    bar.advance(f.end - f.base);
  };

  refill();
  std::optional<in_flight> previous;
  for (std::size_t base = 0; base < todo.size(); base += chunk) {
    std::size_t end = std::min(todo.size(), base + chunk);
    std::vector<std::size_t> ok;
    std::vector<std::vector<at::Tensor>> per_model(models.size());
    for (std::size_t i = base; i < end; ++i) {
      auto d = pending.front().get();
      pending.pop_front();
      if (!d.error.empty()) {
        std::fprintf(stderr, "acg2vec: %s: %s\n", todo[i].image.c_str(), d.error.c_str());
        ++failed;
        continue;
      }
      ok.push_back(i);
      for (std::size_t m = 0; m < models.size(); ++m) per_model[m].push_back(std::move(d.inputs[m]));
    }
    refill();
    auto current = launch(base, end, std::move(ok), std::move(per_model));
    if (previous) finish(*previous);
    previous = std::move(current);
  }
  if (previous) finish(*previous);
  bar.finish();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::size_t processed = todo.size();
  // One summary line; the model passes say how full they were and how long the models ran.
  std::string passes_text;
  {
    std::lock_guard lock(passes->mutex);
    if (passes->passes > 0) {
      passes_text = fmt::format("; model passes: {}, {:.1f} images per pass, models busy {:.1f}s", passes->passes,
                                static_cast<double>(passes->rows) / static_cast<double>(passes->passes),
                                passes->seconds);
    }
  }
  fmt::print("captioned {} images ({} written, {} appended, {} skipped, {} failed) in {:.1f}s, {:.1f} images/s{}\n",
             written + appended, written, appended, skipped, failed, seconds,
             seconds > 0 ? static_cast<double>(processed) / seconds : 0.0, passes_text);
  if (o.frequency) {
    std::vector<std::pair<std::string, std::size_t>> freq(frequency.begin(), frequency.end());
    std::stable_sort(freq.begin(), freq.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    fmt::print("tag frequencies:\n");
    for (const auto& [tag, n] : freq) fmt::print("{}\t{}\n", tag, n);
  }
  std::fflush(stdout);
  if (failed > 0) fail(errc::unsupported_media, "{} of {} images failed", failed, items.size());
}

}  // namespace acg2vec::cli
