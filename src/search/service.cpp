#include "search/service.h"

#include "core/cpu_turns.h"

#include <spdlog/spdlog.h>
#include <vips/vips8>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "core/hash.h"
#include "core/clock.h"
#include "core/error.h"
#include "image/fine_signature.h"
#include "image/signature.h"
#include "search/dedup.h"
#include "models/postprocess.h"

namespace acg2vec::search {

namespace {

using json = nlohmann::json;

// Tags below this score are not kept with an item; searches ask for higher minimums anyway.
constexpr float stored_tag_minimum = 0.1f;
constexpr std::size_t max_k = 1000;
constexpr std::size_t max_offset = 100000;
constexpr int thumbnail_side = 256;

std::vector<float> floats_of(const at::Tensor& t) {
  auto c = t.detach().to(at::kFloat).contiguous().flatten();
  return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}

bool has_filter(const store::tag_query& q) {
  return !q.all_of.empty() || !q.any_of.empty() || !q.none_of.empty() || q.rating || !q.score_minimums.empty() ||
         !q.score_maximums.empty();
}

bool embeds_images(const models::model_entry& e) {
  return e.state == models::model_state::ready && e.takes_images() &&
         (e.manifest.task == models::model_task::image_embedding || e.manifest.task == models::model_task::clip_image);
}

}  // namespace

search_service::search_service(std::filesystem::path data_dir, store::item_store& store, search::vector_spaces& spaces,
                               models::model_registry& models)
    : data_dir_(std::move(data_dir)), store_(store), spaces_(spaces), models_(models) {
  std::filesystem::create_directories(data_dir_ / "thumbs");
}

std::string search_service::content_hash(std::string_view bytes) { return sha256_hex(bytes); }

void search_service::define_spaces() {
  spaces_.define({std::string(signature_space), image::signature_dim, index::metric::inner_product, {}});
  auto counts = store_.vector_counts();
  for (const auto& e : models_.entries()) {
    if (!embeds_images(*e)) continue;
    int dim = 0;
    if (auto it = counts.find(e->manifest.name); it != counts.end() && it->second.dim > 0) {
      dim = it->second.dim;
    } else {
      // Nothing stored yet: ask the model once for its embedding size.
      dim = static_cast<int>(e->run_image(image::make_image(16, 16, 128, 128, 128)).at(0).numel());
    }
    index::faiss_options opts;
    opts.name = e->manifest.name;
    spaces_.define({e->manifest.name, dim, index::metric::inner_product, opts});
  }
}

store::item search_service::analyse(const image::image_rgb8& img) const {
  store::item it;
  it.width = img.width;
  it.height = img.height;
  auto nonzero = [](const std::vector<float>& v) {
    return std::any_of(v.begin(), v.end(), [](float x) { return x != 0.0f; });
  };
  // A flat image has nothing to describe (zero signature); it is stored without that vector.
  if (auto sig = image::perceptual_signature(img); nonzero(sig)) it.vectors[std::string(signature_space)] = sig;
  // Packs with their own pass first: their passes also yield the values of the packs cut from
  // the same network, which then need no pass of their own.
  auto entries = models_.entries();
  std::stable_partition(entries.begin(), entries.end(), [](const auto& e) { return e->shared_pass_of.empty(); });
  std::map<std::string, at::Tensor, std::less<>> shared;  // pack name → its value from another pass
  // Every network's pass is queued before any is awaited: a worker waiting on one model would
  // otherwise be missing from the other models' next batch (with 8 ingest workers and two
  // networks, batches then held about half the images they could).
  std::map<const models::model_entry*, std::future<std::vector<at::Tensor>>> queued;
  for (const auto& e : entries) {
    if (e->state == models::model_state::ready && e->shared_pass_of.empty() && e->graph && e->graph->takes_images())
      queued.emplace(e.get(), e->graph->submit_image(img));
  }
  for (const auto& e : entries) {
    if (e->state != models::model_state::ready || !e->takes_images()) continue;
    const auto& m = e->manifest;
    std::vector<at::Tensor> out;
    if (auto it = shared.find(m.name); it != shared.end()) {
      out.push_back(it->second);
    } else if (auto q = queued.find(e.get()); q != queued.end()) {
      out = q->second.get();
      for (auto& r : out) r = r.squeeze(0);
      const std::size_t own = e->graph->output_names().size();
      for (std::size_t i = 0; i < e->graph->companions().size(); ++i) {
        shared[e->graph->companions()[i].pack] = out.at(own + i);
      }
      out.resize(own);
    } else {
      out = e->run_image(img);
    }
    switch (m.task) {
      case models::model_task::tagger: {
        auto& tags = it.tags[m.name];
        for (auto& t : models::label_scores(m, out.at(0))) {
          if (t.score >= stored_tag_minimum || t.category == models::tag_category::rating) tags.emplace_back(t.name, t.score);
        }
        break;
      }
      case models::model_task::image_embedding:
      case models::model_task::clip_image:
        if (auto v = floats_of(out.at(0)); nonzero(v)) it.vectors[m.name] = std::move(v);
        break;
      case models::model_task::classifier: {
        auto probs = floats_of(out.at(0));
        auto& s = it.scores[m.name];
        for (std::size_t i = 0; i < probs.size(); ++i) {
          s[i < m.labels.size() ? m.labels[i].name : std::to_string(i)] = probs[i];
        }
        break;
      }
      case models::model_task::scores: {
        auto& s = it.scores[m.name];
        for (std::size_t o = 0; o < out.size(); ++o) {
          auto v = floats_of(out[o]);
          std::string name = o < m.outputs.size() ? m.outputs[o].name : e->graph->output_names()[o];
          // The predicted bucket, as the seed's frontend shows it (argmax index).
          s[name] = static_cast<float>(std::max_element(v.begin(), v.end()) - v.begin());
        }
        break;
      }
      default: break;
    }
  }
  return it;
}

std::filesystem::path search_service::thumbnail_path(const std::string& hash) const {
  return data_dir_ / "thumbs" / (hash + ".jpg");
}

add_outcome search_service::add_image(std::string_view bytes, item_input input, write_mode mode) {
  if (!models_.loaded() || !spaces_.has(signature_space)) {
    fail(errc::unavailable, "models and indexes are still loading; try again shortly");
  }
  std::string hash = content_hash(bytes);
  add_outcome outcome;
  outcome.id = input.id.value_or(hash.substr(0, 16));
  store::validate_new_item_id(outcome.id);
  if (mode == write_mode::skip_existing) {
    if (store_.contains(outcome.id)) return outcome;
    if (auto dup = store_.find_by_hash(hash)) {
      outcome.duplicate_of = *dup;
      return outcome;
    }
  } else if (mode == write_mode::insert && store_.contains(outcome.id)) {
    fail(errc::conflict, "item {} already exists (use PUT to replace it)", outcome.id);
  }
  if (!input.metadata.is_null() && !input.metadata.is_object()) {
    fail(errc::bad_parameter, "metadata (extendInfo) must be a JSON object");
  }

  auto img = image::decode_image(bytes, decode_limits_);
  store::item it = analyse(img);
  // The fine stage's grid, with what the keep rule needs to know about the file.
  it.vectors[std::string(fine_space)] =
      image::fine_signature(img, image::lossless_format(image::sniff_image_format(bytes)), bytes.size());
  it.id = outcome.id;
  it.numeric_id = input.numeric_id;
  it.source = std::move(input.source);
  it.content_hash = hash;
  it.metadata = input.metadata.is_null() ? json::object() : std::move(input.metadata);
  it.created_at = it.updated_at = unix_time_ms();

  // The thumbnail is encoded outside the write lock (it is the slow part) into a file of this
  // call's own, and renamed into place under the lock just before the store commit: a DELETE of
  // another item with the same content, which removes unreferenced thumbnails under the same
  // lock, can then never leave a stored item without one, and concurrent writers of the same
  // content never share a temporary file.
  auto thumb = thumbnail_path(hash);
  std::string tmp;
  if (!std::filesystem::exists(thumb)) tmp = write_thumbnail_tmp(img, thumb, outcome.id);

  std::lock_guard lock(write_mutex_);
  if (tmp.empty() && !std::filesystem::exists(thumb)) tmp = write_thumbnail_tmp(img, thumb, outcome.id);
  if (!tmp.empty()) {
    std::error_code ec;
    std::filesystem::rename(tmp, thumb, ec);
    if (ec) {
      std::filesystem::remove(tmp, ec);
      fail(errc::unavailable, "cannot write the thumbnail of {} in {} (disk full?)", outcome.id,
           thumb.parent_path().string());
    }
  }
  std::optional<std::string> replaced_hash;
  if (mode == write_mode::upsert) {
    if (auto old = store_.get(it.id); old && old->content_hash != it.content_hash) replaced_hash = old->content_hash;
    store_.upsert(it);
  } else {
    store_.insert(it);
  }
  spaces_.apply(it);
  if (replaced_hash) drop_thumbnail_if_unused(*replaced_hash);
  outcome.stored = true;
  outcome.item = std::move(it);
  return outcome;
}

std::string search_service::write_thumbnail_tmp(const image::image_rgb8& img, const std::filesystem::path& thumb,
                                                const std::string& id) {
  std::string jpeg;
  try {
    const input_turn turn;  // shares the CPU with forward passes (core/cpu_turns.h)
    auto v = vips::VImage::new_from_memory(const_cast<std::uint8_t*>(img.pixels.data()), img.pixels.size(), img.width,
                                           img.height, 3, VIPS_FORMAT_UCHAR);
    const double scale = std::min(1.0, static_cast<double>(thumbnail_side) / std::max(img.width, img.height));
    if (scale < 1.0) {
      // A box shrink by whole factors that leaves at least twice the thumbnail, then Lanczos-3
      // to the exact size. vips_resize(), which means to do the same, took 11 ms for a 400x300
      // image on this project's machines against 1.6 ms this way (305 ms against 44 ms at
      // 21 MP): it was a fifth of ingest's CPU time.
      const int tw = std::max(1, static_cast<int>(std::lround(img.width * scale)));
      const int th = std::max(1, static_cast<int>(std::lround(img.height * scale)));
      const int bx = std::max(1, static_cast<int>(img.width / (2.0 * tw)));
      const int by = std::max(1, static_cast<int>(img.height / (2.0 * th)));
      if (bx > 1 || by > 1) v = v.shrink(bx, by);
      v = v.reduce(static_cast<double>(v.width()) / tw, static_cast<double>(v.height()) / th);
    }
    void* buf = nullptr;
    std::size_t len = 0;
    v.write_to_buffer(".jpg", &buf, &len, vips::VImage::option()->set("Q", 85));
    jpeg.assign(static_cast<const char*>(buf), len);
    g_free(buf);
  } catch (const std::exception& e) {
    spdlog::warn("thumbnail for {} failed: {}", id, e.what());
    return {};
  }
  // A thumbnail that cannot be written (disk full) refuses the item: a truncated file renamed
  // into place would be served as a broken image, and the store write would fail next anyway.
  const std::string tmp = fmt::format("{}.tmp.{}", thumb.string(), next_tmp_.fetch_add(1));
  bool written = false;
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(jpeg.data(), static_cast<std::streamsize>(jpeg.size()));
    out.flush();
    written = static_cast<bool>(out);
  }
  if (!written) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    fail(errc::unavailable, "cannot write the thumbnail of {} in {} (disk full?)", id, thumb.parent_path().string());
  }
  return tmp;
}

void search_service::drop_thumbnail_if_unused(const std::string& hash) {
  if (hash.empty() || store_.find_by_hash(hash)) return;
  std::error_code ec;
  std::filesystem::remove(thumbnail_path(hash), ec);
  if (ec) spdlog::warn("cannot remove thumbnail {}: {}", thumbnail_path(hash).string(), ec.message());
}

std::size_t search_service::sweep_thumbnails() {
  std::size_t removed = 0;
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir_ / "thumbs", ec)) files.push_back(entry.path());
  for (const auto& path : files) {
    std::string name = path.filename().string();
    // A temporary file of a write still running is young; one from a crashed process is old.
    bool stray_tmp = name.find(".tmp") != std::string::npos &&
                     std::filesystem::last_write_time(path, ec) < std::filesystem::file_time_type::clock::now() -
                                                                       std::chrono::minutes(10);
    bool orphan = false;
    if (!stray_tmp && name.ends_with(".jpg")) {
      std::lock_guard lock(write_mutex_);
      orphan = !store_.find_by_hash(name.substr(0, name.size() - 4));
      if (orphan && std::filesystem::remove(path, ec)) ++removed;
      continue;
    }
    if (stray_tmp) {
      std::lock_guard lock(write_mutex_);
      if (std::filesystem::remove(path, ec)) ++removed;
    }
  }
  return removed;
}

store::item search_service::update_metadata(std::string_view id, const json& metadata) {
  if (!metadata.is_object()) fail(errc::bad_parameter, "metadata (extendInfo) must be a JSON object");
  std::lock_guard lock(write_mutex_);
  auto it = store_.get(id);
  if (!it) fail(errc::not_found, "item {} not found", id);
  it->metadata = metadata;
  it->updated_at = unix_time_ms();
  store_.upsert(*it);
  return *it;
}

bool search_service::remove(std::string_view id) {
  store::validate_item_id(id);
  std::lock_guard lock(write_mutex_);
  auto old = store_.get(id);
  bool existed = store_.remove(id);
  // Removed from every index before the caller hears back: no search started later can return it.
  spaces_.remove_everywhere(id);
  // The file goes after the store commit: a crash in between leaves an orphan that the start-up
  // sweep removes, never an item without its thumbnail.
  if (old) drop_thumbnail_if_unused(old->content_hash);
  return existed;
}

std::optional<store::item> search_service::update_source(std::string_view id, std::string source) {
  store::validate_item_id(id);
  std::lock_guard lock(write_mutex_);
  auto it = store_.get(id);
  if (!it) return std::nullopt;
  if (it->source == source) return it;
  it->source = std::move(source);
  it->updated_at = unix_time_ms();
  store_.upsert(*it);
  return it;
}

void search_service::add_stats_section(std::string name, std::function<json()> f) {
  std::lock_guard lock(stats_mutex_);
  stats_sections_.emplace_back(std::move(name), std::move(f));
}

void search_service::commit_merge(std::span<const store::item> kept, std::span<const std::string> removed,
                                  const std::function<void()>& before_commit) {
  std::lock_guard lock(write_mutex_);
  std::vector<std::string> hashes;
  for (const auto& id : removed) {
    if (auto old = store_.get(id)) hashes.push_back(old->content_hash);
  }
  store_.upsert_and_remove(kept, removed, before_commit);
  // Indexes follow the committed store; a crash before they are saved leaves them stamped with an
  // older generation, so the next start rebuilds them from the store (index/vector_spaces.h).
  for (const auto& it : kept) spaces_.apply(it);
  for (const auto& id : removed) spaces_.remove_everywhere(id);
  for (const auto& h : hashes) drop_thumbnail_if_unused(h);
}

std::optional<store::item> search_service::get(std::string_view id) const {
  store::validate_item_id(id);
  return store_.get(id);
}

std::vector<store::item> search_service::list(std::size_t offset, std::size_t limit) const {
  return store_.list(offset, limit, false);
}

std::vector<float> search_service::query_vector(const search_request& req, std::string& space) const {
  if (req.text) {
    auto e = models_.resolve("", models::model_task::clip_text);
    // A CLIP text pack searches the image space of its own checkpoint unless it names another.
    if (space.empty()) space = e->manifest.raw.value("space", e->manifest.name + "-image");
    return floats_of(e->text->embed({*req.text})[0]);
  }
  if (req.item_id) {
    auto it = store_.get(*req.item_id);
    if (!it) fail(errc::not_found, "item {} not found", *req.item_id);
    if (space.empty()) {
      // "More like this" prefers a semantic space the item has, then its signature.
      for (const auto& [name, v] : it->vectors) {
        if (name != signature_space && spaces_.has(name)) {
          space = name;
          break;
        }
      }
      if (space.empty()) space = std::string(signature_space);
    }
    auto v = it->vectors.find(space);
    if (v == it->vectors.end()) fail(errc::bad_parameter, "item {} has no vector in space '{}'", *req.item_id, space);
    return v->second;
  }
  const auto& img = *req.image;
  if (space.empty()) space = std::string(signature_space);
  if (space == signature_space) return image::perceptual_signature(img);
  auto e = models_.get(space);
  if (!embeds_images(*e)) fail(errc::bad_parameter, "space '{}' is not an image embedding", space);
  return floats_of(e->run_image(img).at(0));
}

search_result search_service::search(const search_request& req) const {
  if (!spaces_.has(signature_space)) fail(errc::unavailable, "indexes are still loading; try again shortly");
  int kinds = (req.image ? 1 : 0) + (req.item_id ? 1 : 0) + (req.text ? 1 : 0);
  if (kinds > 1) fail(errc::bad_parameter, "give one of image, id or text, not several");
  if (req.k < 1 || req.k > max_k) fail(errc::bad_parameter, "k must be in [1, {}], got {}", max_k, req.k);
  if (req.offset > max_offset) fail(errc::bad_parameter, "offset must be at most {}", max_offset);
  if (!(req.cutoff >= -1.0f && req.cutoff <= 1.0f)) fail(errc::bad_parameter, "cutoff must be in [-1, 1]");
  search_result result;

  if (kinds == 0) {
    if (!has_filter(req.filter)) fail(errc::bad_parameter, "nothing to search for: give an image, id, text or tags");
    auto q = req.filter;
    q.offset = req.offset;
    q.limit = req.k;
    result.space = "tags";
    for (const auto& id : store_.search_tags(q)) {
      if (auto it = store_.get(id)) result.hits.push_back({std::move(*it), 1.0f, 0.0f});
    }
    return result;
  }

  std::string space = req.space;
  auto query = query_vector(req, space);
  if (!spaces_.has(space)) fail(errc::not_found, "unknown vector space '{}'", space);
  result.space = space;

  std::optional<std::unordered_set<std::string>> allowed;
  index::id_filter filter;
  if (has_filter(req.filter)) {
    auto q = req.filter;
    q.offset = 0;
    q.limit = 0;
    auto ids = store_.search_tags(q);
    allowed.emplace(ids.begin(), ids.end());
    filter = [&allowed](std::string_view id) { return allowed->count(std::string(id)) > 0; };
  }
  std::size_t fetch = req.k + req.offset + (req.item_id ? 1 : 0);
  auto hits = spaces_.search(space, query, fetch, allowed ? &filter : nullptr);
  if (space == signature_space && req.image) {
    // A mirrored copy matches the mirrored query: keep each id's better score.
    auto mirrored = spaces_.search(space, image::mirror_signature(query), fetch, allowed ? &filter : nullptr);
    std::map<std::string, index::hit> best;
    for (auto& h : hits) best[h.id] = h;
    for (auto& h : mirrored) {
      auto [it, inserted] = best.try_emplace(h.id, h);
      if (!inserted && h.score > it->second.score) it->second = h;
    }
    hits.clear();
    for (auto& [_, h] : best) hits.push_back(h);
    std::sort(hits.begin(), hits.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
    if (hits.size() > fetch) hits.resize(fetch);
  }
  if (req.image) hits = near_duplicates_first(*req.image, space, query, std::move(hits), fetch, allowed ? &filter : nullptr);
  std::size_t skipped = 0;
  for (const auto& h : hits) {
    if (req.item_id && h.id == *req.item_id) continue;
    if (h.score < req.cutoff) continue;
    if (skipped < req.offset) {
      ++skipped;
      continue;
    }
    if (result.hits.size() >= req.k) break;
    // An item deleted after the index answered is simply not returned.
    if (auto it = store_.get(h.id)) result.hits.push_back({std::move(*it), h.score, h.distance});
  }
  return result;
}

std::vector<index::hit> search_service::near_duplicates_first(const image::image_rgb8& img, const std::string& space,
                                                              std::span<const float> query,
                                                              std::vector<index::hit> hits, std::size_t fetch,
                                                              const index::id_filter* filter) const {
  // Candidates: the signature's nearest neighbours (mirror included) at near-duplicate similarity.
  constexpr std::size_t near_candidates = 20;
  std::vector<index::hit> candidates;
  if (space == signature_space) {
    for (const auto& h : hits) {
      if (h.score >= image::near_duplicate_similarity) candidates.push_back(h);
    }
  } else {
    const auto sig = image::perceptual_signature(img);
    std::map<std::string, index::hit> best;
    for (const auto& q : {sig, image::mirror_signature(sig)}) {
      for (auto& h : spaces_.search(signature_space, q, near_candidates, filter)) {
        if (h.score < image::near_duplicate_similarity) continue;
        auto [it, inserted] = best.try_emplace(h.id, h);
        if (!inserted && h.score > it->second.score) it->second = h;
      }
    }
    for (auto& [_, h] : best) candidates.push_back(h);
  }
  if (candidates.empty()) return hits;
  std::vector<image::fine_grid> grids;
  std::vector<store::item> items;
  for (const auto& c : candidates) {
    auto it = store_.get(c.id);
    if (!it) continue;
    auto v = it->vectors.find(std::string(fine_space));
    if (v == it->vectors.end() || !image::is_fine_signature(v->second)) continue;
    grids.push_back(image::unpack_fine(v->second));
    items.push_back(std::move(*it));
  }
  if (grids.empty()) return hits;
  const auto distances = image::rank_fine_candidates(image::unpack_fine(image::fine_signature(img, false, 0)), grids);
  std::vector<std::size_t> near;
  for (std::size_t i = 0; i < distances.size(); ++i) {
    if (std::isfinite(distances[i])) near.push_back(i);
  }
  std::stable_sort(near.begin(), near.end(), [&](auto a, auto b) { return distances[a] < distances[b]; });
  std::vector<index::hit> out;
  std::unordered_set<std::string> placed;
  for (auto i : near) {
    index::hit h;
    h.id = items[i].id;
    // The score stays the searched space's own: from the hit when the index returned it, else the
    // cosine of the stored vector (inner-product spaces hold normalised vectors).
    auto found = std::find_if(hits.begin(), hits.end(), [&](const auto& x) { return x.id == h.id; });
    if (found != hits.end()) {
      h = *found;
    } else if (auto v = items[i].vectors.find(space); v != items[i].vectors.end() && v->second.size() == query.size()) {
      double dot = 0, nq = 0, nv = 0;
      for (std::size_t c = 0; c < query.size(); ++c) {
        dot += static_cast<double>(query[c]) * v->second[c];
        nq += static_cast<double>(query[c]) * query[c];
        nv += static_cast<double>(v->second[c]) * v->second[c];
      }
      const double cosine = nq > 0 && nv > 0 ? dot / std::sqrt(nq * nv) : 0.0;
      h.score = static_cast<float>(cosine);
      h.distance = static_cast<float>(std::sqrt(std::max(0.0, 2.0 - 2.0 * cosine)));
    } else {
      continue;  // not in this space at all
    }
    placed.insert(h.id);
    out.push_back(std::move(h));
  }
  for (auto& h : hits) {
    if (!placed.count(h.id)) out.push_back(std::move(h));
  }
  return out;
}

std::vector<std::string> search_service::space_names() const {
  std::vector<std::string> names;
  for (const auto& s : spaces_.info()) names.push_back(s.name);
  return names;
}

json search_service::stats() const {
  json spaces = json::object();
  for (const auto& s : spaces_.info()) {
    spaces[s.name] = {{"dim", s.dim}, {"size", s.size}, {"metric", index::to_string(s.space_metric)},
                      {"index", index::to_string(s.kind)}};
  }
  json out{{"items", store_.count()}, {"spaces", spaces}, {"generation", store_.generation()}};
  std::lock_guard lock(stats_mutex_);
  for (const auto& [name, f] : stats_sections_) out[name] = f();
  return out;
}

std::optional<std::string> search_service::thumbnail(std::string_view id) const {
  auto it = store_.get(id);
  if (!it) return std::nullopt;
  std::ifstream in(thumbnail_path(it->content_hash), std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void search_service::save_indexes() {
  std::lock_guard lock(write_mutex_);
  spaces_.save_all(store_.generation());
}

}  // namespace acg2vec::search