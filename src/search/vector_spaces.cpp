#include "search/vector_spaces.h"

#include "core/error.h"
#include "core/files.h"
#include "core/json_guard.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <mutex>

namespace acg2vec::search {

// The index module's types are used throughout; this file is their main client.
using namespace acg2vec::index;

vector_spaces::vector_spaces(std::filesystem::path data_dir, const store::item_store& store,
                             const std::vector<space_config>& spaces)
    : dir_(std::move(data_dir) / "index"), store_(store) {
  for (const auto& config : spaces) define(config);
}

vector_spaces::vector_spaces(std::filesystem::path data_dir, const store::item_store& store, index_address address,
                             const std::vector<space_config>& spaces)
    : dir_(std::move(data_dir) / "index"), store_(store), remote_(std::move(address.remote)) {
  if (!remote_) choose_faiss_options(std::move(address.faiss));
  for (const auto& config : spaces) define(config);
}

void vector_spaces::choose_faiss_options(std::optional<faiss_options> named) {
  namespace fs = std::filesystem;
  const auto file = dir_ / "faiss.json";
  std::optional<faiss_options> saved;
  std::error_code ec;
  if (fs::exists(file, ec)) {
    try {
      saved = faiss_options_from_json(parse_json_guarded(read_file(file, "FAISS parameters"), file.string()));
    } catch (const error& e) {
      spdlog::warn("{}: {}; using the defaults", file.string(), e.what());
    }
  }
  if (!named) {
    faiss_ = saved;
    if (saved) spdlog::info("vector spaces: FAISS {} (saved in {})", describe(*saved), file.string());
    return;
  }
  faiss_ = named;
  if (saved && faiss_options_to_json(*saved) == faiss_options_to_json(*named)) return;
  // Saved indexes were built for other parameters: they go before the new parameters are recorded,
  // so a crash in between can never pair an old index file with the new parameters.
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (entry.path().extension() == ".faiss") fs::remove(entry.path(), ec);
  }
  write_file_atomic(file, faiss_options_to_json(*named).dump(2) + "\n");
  spdlog::info("vector spaces: FAISS {} (new parameters, saved in {}; indexes are rebuilt)", describe(*named),
               file.string());
}

faiss_options vector_spaces::options_for(const space_config& config) const {
  auto options = faiss_ ? *faiss_ : config.options;
  options.name = config.name;
  return options;
}

void vector_spaces::refill_remote(const space_config& config, vector_index& index) const {
  const auto started = std::chrono::steady_clock::now();
  std::size_t n = 0;
  // Rows go out in batches (one request per batch on a remote index). A batch holding an unusable
  // stored vector is retried row by row so that only that vector is skipped, as for FAISS.
  constexpr std::size_t batch_rows = 500;
  std::vector<std::string> ids;
  std::vector<float> data;
  const auto flush = [&] {
    if (ids.empty()) return;
    try {
      index.add_many(ids, data);
      n += ids.size();
    } catch (const error& e) {
      if (e.code() != errc::bad_parameter) throw;
      const auto d = static_cast<std::size_t>(index.dim());
      for (std::size_t i = 0; i < ids.size(); ++i) {
        try {
          index.add(ids[i], std::span<const float>(data).subspan(i * d, d));
          ++n;
        } catch (const error& row_error) {
          if (row_error.code() != errc::bad_parameter) throw;
        }
      }
    }
    ids.clear();
    data.clear();
  };
  store_.for_each_vector(config.name, [&](const std::string& id, std::span<const float> v) {
    if (v.size() != static_cast<std::size_t>(index.dim())) return;  // wrong shape: skipped
    ids.push_back(id);
    data.insert(data.end(), v.begin(), v.end());
    if (ids.size() == batch_rows) flush();
  });
  flush();
  spdlog::info("vector space {}: refilled the remote index with {} vectors from the store in {:.2f} s",
               config.name, n, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

std::filesystem::path vector_spaces::file_of(std::string_view space) const {
  store::validate_space_name(space);
  return dir_ / (std::string(space) + ".faiss");
}

std::unique_ptr<faiss_index> vector_spaces::rebuild_from_store(const space_config& config,
                                                               std::uint64_t* generation) const {
  const auto started = std::chrono::steady_clock::now();
  // Read before the scan: if a write lands during it, the stamp is older than the data and the
  // next start rebuilds again, which is safe; the other way round would not be.
  *generation = store_.generation();
  const auto d = static_cast<std::size_t>(config.dim);
  std::vector<std::string> ids;
  std::vector<float> data;
  std::size_t skipped = 0;
  store_.for_each_vector(config.name, [&](const std::string& id, std::span<const float> v) {
    bool usable = v.size() == d;
    double norm = 0.0;
    for (std::size_t i = 0; usable && i < v.size(); ++i) {
      usable = std::isfinite(v[i]);
      norm += static_cast<double>(v[i]) * v[i];
    }
    if (usable && config.space_metric == metric::inner_product && !(norm > 0.0)) usable = false;
    if (!usable) {
      ++skipped;
      return;
    }
    ids.push_back(id);
    data.insert(data.end(), v.begin(), v.end());
  });
  if (skipped > 0)
    spdlog::warn("vector space {}: skipped {} stored vectors that are not {}-d, finite and non-zero",
                 config.name, skipped, config.dim);
  auto index = std::make_unique<faiss_index>(config.dim, config.space_metric, options_for(config));
  const std::size_t n = ids.size();
  index->assign(std::move(ids), std::move(data));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("vector space {}: rebuilt a {} index of {} vectors from the store in {:.2f} s", config.name,
               to_string(index->current_kind()), n, seconds);
  return index;
}

void vector_spaces::define(const space_config& config) {
  store::validate_space_name(config.name);
  if (config.dim <= 0)
    fail(errc::bad_parameter, "vector space {}: dimension must be positive, not {}", config.name, config.dim);
  {
    std::shared_lock lock(spaces_mutex_);
    if (auto it = spaces_.find(config.name); it != spaces_.end()) {
      const auto& existing = it->second->config;
      if (existing.dim != config.dim || existing.space_metric != config.space_metric)
        fail(errc::conflict, "vector space {} is already defined as {}-d {}", config.name, existing.dim,
             to_string(existing.space_metric));
      return;
    }
  }

  if (remote_) {
    auto index = remote_(config);
    const auto counts = store_.vector_counts();
    const auto stored = counts.count(config.name) != 0 ? counts.at(config.name).count : 0;
    if (index->size() != stored) {
      spdlog::info("vector space {}: remote index holds {} vectors, the store {}; refilling", config.name,
                   index->size(), stored);
      refill_remote(config, *index);
    }
    auto s = std::make_unique<slot>();
    s->config = config;
    s->index = std::move(index);
    std::unique_lock lock(spaces_mutex_);
    spaces_.try_emplace(config.name, std::move(s));
    return;
  }

  const auto options = options_for(config);
  const auto file = file_of(config.name);
  const std::uint64_t current = store_.generation();
  std::unique_ptr<faiss_index> index;
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) {
    try {
      std::uint64_t stamped = 0;
      auto loaded = faiss_index::load(file, options, &stamped);
      if (loaded->dim() != config.dim || loaded->space_metric() != config.space_metric) {
        spdlog::info("vector space {}: saved index is {}-d {}, configured {}-d {}; rebuilding", config.name,
                     loaded->dim(), to_string(loaded->space_metric()), config.dim,
                     to_string(config.space_metric));
      } else if (stamped != current) {
        spdlog::info("vector space {}: saved index is stale (generation {}, store {}); rebuilding",
                     config.name, stamped, current);
      } else {
        spdlog::info("vector space {}: loaded {} index of {} vectors", config.name,
                     to_string(loaded->current_kind()), loaded->size());
        index = std::move(loaded);
      }
    } catch (const error& e) {
      spdlog::warn("vector space {}: saved index is unusable ({}); rebuilding", config.name, e.what());
    } catch (const std::exception& e) {
      spdlog::warn("vector space {}: saved index is unusable ({}); rebuilding", config.name, e.what());
    }
  } else {
    spdlog::info("vector space {}: no saved index at {}; building it from the store", config.name,
                 file.string());
  }
  if (!index) {
    std::uint64_t generation = 0;
    index = rebuild_from_store(config, &generation);
    try {
      std::filesystem::create_directories(dir_);
      index->save(file, generation);
    } catch (const std::exception& e) {
      // The index works from memory; only the next start pays for the failed save.
      spdlog::warn("vector space {}: cannot save the rebuilt index: {}", config.name, e.what());
    }
  }

  auto s = std::make_unique<slot>();
  s->config = config;
  s->faiss = index.get();
  s->index = std::move(index);
  std::unique_lock lock(spaces_mutex_);
  spaces_.try_emplace(config.name, std::move(s));
}

vector_spaces::slot& vector_spaces::find(std::string_view space) const {
  std::shared_lock lock(spaces_mutex_);
  const auto it = spaces_.find(space);
  if (it == spaces_.end()) fail(errc::not_found, "unknown vector space '{}'", space);
  // Slots are never erased, so the reference stays valid after the lock is released.
  return *it->second;
}

bool vector_spaces::has(std::string_view space) const {
  std::shared_lock lock(spaces_mutex_);
  return spaces_.find(space) != spaces_.end();
}

std::vector<space_info> vector_spaces::info() const {
  std::shared_lock lock(spaces_mutex_);
  std::vector<space_info> out;
  for (const auto& [name, s] : spaces_) {
    std::shared_lock slot_lock(s->mutex);
    const auto size = s->index->size();
    out.push_back({name, s->config.dim, s->config.space_metric,
                   s->faiss != nullptr ? s->faiss->current_kind() : index_kind::automatic, size,
                   s->faiss != nullptr ? s->faiss->positions() : size});
  }
  return out;
}

void vector_spaces::add(std::string_view space, std::string_view id, std::span<const float> v) {
  auto& s = find(space);
  std::unique_lock lock(s.mutex);
  s.index->add(id, v);
}

bool vector_spaces::remove(std::string_view space, std::string_view id) {
  auto& s = find(space);
  std::unique_lock lock(s.mutex);
  return s.index->remove(id);
}

void vector_spaces::remove_everywhere(std::string_view id) {
  std::shared_lock lock(spaces_mutex_);
  for (auto& [name, s] : spaces_) {
    std::unique_lock slot_lock(s->mutex);
    s->index->remove(id);
  }
}

void vector_spaces::apply(const store::item& it) {
  std::shared_lock lock(spaces_mutex_);
  for (auto& [name, s] : spaces_) {
    std::unique_lock slot_lock(s->mutex);
    if (auto v = it.vectors.find(name); v != it.vectors.end())
      s->index->add(it.id, v->second);
    else
      s->index->remove(it.id);
  }
}

std::vector<hit> vector_spaces::search(std::string_view space, std::span<const float> query, std::size_t k,
                                       const id_filter* filter) const {
  const auto& s = find(space);
  std::shared_lock lock(s.mutex);
  return s.index->search(query, k, filter);
}

bool vector_spaces::contains(std::string_view space, std::string_view id) const {
  const auto& s = find(space);
  std::shared_lock lock(s.mutex);
  return s.index->contains(id);
}

std::size_t vector_spaces::size(std::string_view space) const {
  const auto& s = find(space);
  std::shared_lock lock(s.mutex);
  return s.index->size();
}

void vector_spaces::rebuild(std::string_view space) {
  auto& s = find(space);
  std::uint64_t generation = 0;
  // Held throughout: an add or remove that arrives during the scan must land on the new index.
  std::unique_lock lock(s.mutex);
  if (s.faiss == nullptr) {
    refill_remote(s.config, *s.index);
    return;
  }
  auto index = rebuild_from_store(s.config, &generation);
  s.faiss = index.get();
  s.index = std::move(index);
}

void vector_spaces::save_all(std::uint64_t generation) const {
  std::filesystem::create_directories(dir_);
  std::shared_lock lock(spaces_mutex_);
  for (const auto& [name, s] : spaces_) {
    std::shared_lock slot_lock(s->mutex);
    if (s->faiss != nullptr) s->faiss->save(file_of(name), generation);
  }
}

}  // namespace acg2vec::search