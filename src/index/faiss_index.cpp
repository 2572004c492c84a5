#include "index/faiss_index.h"

#include "core/error.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexRefine.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/utils/distances.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>

namespace acg2vec::index {
namespace {

constexpr char file_magic[8] = {'A', '2', 'V', 'I', 'D', 'X', '0', '1'};
constexpr std::uint32_t file_format = 1;

faiss::MetricType faiss_metric(metric m) {
  return m == metric::inner_product ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2;
}

std::uint64_t fnv1a(const std::uint8_t* data, std::size_t n) {
  std::uint64_t h = 1469598103934665603ULL;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= data[i];
    h *= 1099511628211ULL;
  }
  return h;
}

// Little helpers for the file format; host byte order (the file is a cache, rebuilt if unreadable).
template <class T>
void put(std::vector<std::uint8_t>& out, T value) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

class reader {
 public:
  reader(const std::uint8_t* data, std::size_t size, const std::filesystem::path& file)
      : data_(data), size_(size), file_(file) {}
  template <class T>
  T get() {
    T value;
    std::memcpy(&value, take(sizeof(T)), sizeof(T));
    return value;
  }
  const std::uint8_t* take(std::size_t n) {
    if (n > size_ - pos_) fail(errc::internal, "index file {} is truncated", file_.string());
    const auto* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  [[nodiscard]] std::size_t left() const { return size_ - pos_; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  const std::filesystem::path& file_;
};

void write_all(int fd, const std::uint8_t* data, std::size_t n, const std::filesystem::path& file) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      fail(e == ENOSPC ? errc::unavailable : errc::internal, "cannot write index file {}: {}",
           file.string(), e == ENOSPC ? "disk full" : std::strerror(e));
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
}

// Largest divisor of dim that is at most `limit`: PQ needs sub-vectors of equal length.
std::size_t pq_subquantizers(int dim) {
  const auto d = static_cast<std::size_t>(dim);
  const std::size_t limit = std::max<std::size_t>(1, std::min<std::size_t>(64, d / 4));
  for (std::size_t m = limit; m > 1; --m) {
    if (d % m == 0) return m;
  }
  return 1;
}

/// The settings that only affect searching, applied to a built or loaded FAISS index.
void apply_search_options(faiss::Index& index, const faiss_options& o) {
  if (auto* h = dynamic_cast<faiss::IndexHNSW*>(&index)) h->hnsw.efSearch = o.hnsw_ef_search;
  if (auto* refine = dynamic_cast<faiss::IndexRefine*>(&index)) {
    refine->k_factor = o.ivf_refine_factor;
    if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(refine->base_index); ivf != nullptr && o.ivf_nprobe > 0) {
      ivf->nprobe = static_cast<std::size_t>(o.ivf_nprobe);
    }
  }
}

}  // namespace

void faiss_index::set_search_options(int hnsw_ef_search, int ivf_nprobe, float ivf_refine_factor) {
  options_.hnsw_ef_search = hnsw_ef_search;
  options_.ivf_nprobe = ivf_nprobe;
  options_.ivf_refine_factor = ivf_refine_factor;
  if (index_) apply_search_options(*index_, options_);
}

faiss_index::faiss_index(int dim, metric m, faiss_options options)
    : dim_(dim), metric_(m), options_(std::move(options)) {
  if (dim <= 0) fail(errc::bad_parameter, "vector dimension must be positive, not {}", dim);
  // Debian builds FAISS for baseline x86-64, so its own distance loops are scalar, while OpenBLAS
  // picks AVX2/AVX-512 kernels at run time. FAISS switches to BLAS only from 20 queries at once;
  // from the first query on, a flat scan and IVF's coarse quantizer run several times faster.
  // A process-wide FAISS setting, written once before the first index can be searched.
  static std::once_flag blas_from_one_query;
  std::call_once(blas_from_one_query, [] { faiss::distance_compute_blas_threshold = 1; });
  options_.ivf_min_train = std::max<std::size_t>(options_.ivf_min_train, 4096);
  build(wanted_kind(0), {}, {});
}

faiss_index::~faiss_index() = default;

index_kind faiss_index::wanted_kind(std::size_t live) const {
  switch (options_.kind) {
    case index_kind::flat:
      return index_kind::flat;
    case index_kind::hnsw:
      return index_kind::hnsw;
    case index_kind::automatic:
      // Never go back to flat on deletes, to avoid rebuilding back and forth at the threshold.
      return kind_ == index_kind::hnsw || live >= options_.auto_hnsw_threshold ? index_kind::hnsw
                                                                               : index_kind::flat;
    case index_kind::ivf_pq:
      // Untrained IVF-PQ cannot hold vectors: stay exact until there is enough to train on.
      return kind_ == index_kind::ivf_pq || live >= options_.ivf_min_train ? index_kind::ivf_pq
                                                                           : index_kind::flat;
  }
  return index_kind::flat;
}

void faiss_index::build(index_kind kind, std::vector<std::string> ids, std::vector<float> data) {
  const std::size_t n = ids.size();
  const auto d = static_cast<std::size_t>(dim_);
  const auto mt = faiss_metric(metric_);
  std::unique_ptr<faiss::Index> fresh;
  try {
    switch (kind) {
      case index_kind::automatic:
      case index_kind::flat:
        fresh = std::make_unique<faiss::IndexFlat>(dim_, mt);
        break;
      case index_kind::hnsw: {
        auto h = std::make_unique<faiss::IndexHNSWFlat>(dim_, options_.hnsw_m, mt);
        h->hnsw.efConstruction = options_.hnsw_ef_construction;
        h->hnsw.efSearch = options_.hnsw_ef_search;
        fresh = std::move(h);
        break;
      }
      case index_kind::ivf_pq: {
        const auto nlist = options_.ivf_nlist > 0 ? options_.ivf_nlist
                                                  : static_cast<std::size_t>(std::clamp(
                                                        std::sqrt(static_cast<double>(std::max<std::size_t>(n, 1))),
                                                        16.0, 65536.0));
        auto quantizer = std::make_unique<faiss::IndexFlat>(dim_, mt);
        // 8-bit codes need ~10k training points for their 256 centroids; smaller sets get
        // fewer bits rather than undertrained centroids (the exact re-ranking hides the loss).
        const std::size_t nbits = n >= 256 * 39 ? 8 : n >= 64 * 39 ? 6 : 4;
        const std::size_t m = options_.ivf_pq_m > 0 ? options_.ivf_pq_m : pq_subquantizers(dim_);
        if (d % m != 0) fail(errc::bad_parameter, "IVF-PQ: {} sub-quantizers do not divide dimension {}", m, d);
        auto ivf = std::make_unique<faiss::IndexIVFPQ>(quantizer.get(), d, nlist, m, nbits, mt);
        quantizer.release();
        ivf->own_fields = true;
        ivf->nprobe = options_.ivf_nprobe > 0 ? static_cast<std::size_t>(options_.ivf_nprobe)
                                              : std::max<std::size_t>(16, nlist / 8);
        auto refine = std::make_unique<faiss::IndexRefineFlat>(ivf.get());
        ivf.release();
        refine->own_fields = true;
        refine->k_factor = options_.ivf_refine_factor;
        // Training on every vector of a large space costs time and memory for little gain; an
        // even sample of 64 points per list (at least 16k, for the PQ codebooks) is plenty.
        const std::size_t sample = std::min(n, std::max<std::size_t>(64 * nlist, 16384));
        std::vector<float> training(sample * d);
        for (std::size_t i = 0; i < sample; ++i) {
          const std::size_t row = i * n / sample;
          std::memcpy(training.data() + i * d, data.data() + row * d, d * sizeof(float));
        }
        refine->train(static_cast<faiss::Index::idx_t>(sample), training.data());
        trained_on_ = n;
        fresh = std::move(refine);
        break;
      }
    }
    if (n > 0) fresh->add(static_cast<faiss::Index::idx_t>(n), data.data());
  } catch (const faiss::FaissException& e) {
    fail(errc::internal, "building a {} index of {} vectors failed: {}", to_string(kind), n, e.what());
  }
  index_ = std::move(fresh);
  kind_ = kind == index_kind::automatic ? index_kind::flat : kind;
  pos_of_.clear();
  for (std::size_t i = 0; i < n; ++i) pos_of_.emplace(ids[i], static_cast<std::int64_t>(i));
  id_at_ = std::move(ids);
}

const float* faiss_index::stored_vectors() const {
  // Every kind keeps an exact copy of the vectors in a flat array, in position order.
  const faiss::Index* flat = nullptr;
  switch (kind_) {
    case index_kind::automatic:
    case index_kind::flat:
      flat = index_.get();
      break;
    case index_kind::hnsw:
      flat = dynamic_cast<const faiss::IndexHNSW&>(*index_).storage;
      break;
    case index_kind::ivf_pq:
      flat = dynamic_cast<const faiss::IndexRefine&>(*index_).refine_index;
      break;
  }
  return dynamic_cast<const faiss::IndexFlat&>(*flat).get_xb();
}

void faiss_index::compact(index_kind kind) {
  const auto d = static_cast<std::size_t>(dim_);
  // IVF-PQ keeps its trained quantizers when only dead positions go; retraining is for growth.
  const bool keep_training = kind == index_kind::ivf_pq && kind_ == index_kind::ivf_pq &&
                             pos_of_.size() < 4 * trained_on_;
  const float* all = stored_vectors();
  std::vector<std::string> ids;
  std::vector<float> data;
  ids.reserve(pos_of_.size());
  data.reserve(pos_of_.size() * d);
  for (std::size_t p = 0; p < id_at_.size(); ++p) {
    if (id_at_[p].empty()) continue;
    ids.push_back(id_at_[p]);
    data.insert(data.end(), all + p * d, all + (p + 1) * d);
  }
  if (keep_training) {
    try {
      index_->reset();
      if (!ids.empty()) index_->add(static_cast<faiss::Index::idx_t>(ids.size()), data.data());
    } catch (const faiss::FaissException& e) {
      fail(errc::internal, "compacting the vector index failed: {}", e.what());
    }
    pos_of_.clear();
    for (std::size_t i = 0; i < ids.size(); ++i) pos_of_.emplace(ids[i], static_cast<std::int64_t>(i));
    id_at_ = std::move(ids);
    return;
  }
  build(kind, std::move(ids), std::move(data));
}

void faiss_index::after_change() {
  const std::size_t live = pos_of_.size();
  const std::size_t dead = id_at_.size() - live;
  const index_kind want = wanted_kind(live);
  if (want != kind_) {
    spdlog::info("vector index{}{}: switching from {} to {} at {} vectors", options_.name.empty() ? "" : " ",
                 options_.name, to_string(kind_), to_string(want), live);
    compact(want);
  } else if (kind_ == index_kind::ivf_pq && live >= 4 * trained_on_) {
    spdlog::info("vector index{}{}: retraining IVF-PQ at {} vectors", options_.name.empty() ? "" : " ",
                 options_.name, live);
    compact(kind_);
  } else if (dead >= 32 && static_cast<double>(dead) > options_.max_dead_fraction * static_cast<double>(id_at_.size())) {
    compact(kind_);
  }
}

void faiss_index::assign(std::vector<std::string> ids, std::vector<float> data) {
  const auto d = static_cast<std::size_t>(dim_);
  if (data.size() != ids.size() * d)
    fail(errc::bad_parameter, "{} ids but {} floats for dimension {}", ids.size(), data.size(), dim_);
  std::unordered_map<std::string_view, int> seen;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i].empty()) fail(errc::bad_parameter, "empty id in an index rebuild");
    if (!seen.emplace(ids[i], 0).second) fail(errc::bad_parameter, "id '{}' appears twice", ids[i]);
    std::span<float> row(data.data() + i * d, d);
    check_vector(row, dim_, fmt::format("vector of '{}'", ids[i]));
    if (metric_ == metric::inner_product) normalize(row);
  }
  kind_ = index_kind::flat;  // so wanted_kind decides from the size alone
  const index_kind kind = wanted_kind(ids.size());
  build(kind, std::move(ids), std::move(data));
}

void faiss_index::add(std::string_view id, std::span<const float> v) {
  if (id.empty()) fail(errc::bad_parameter, "vector index ids must not be empty");
  check_vector(v, dim_, "vector");
  std::vector<float> row(v.begin(), v.end());
  if (metric_ == metric::inner_product) normalize(row);
  try {
    index_->add(1, row.data());
  } catch (const faiss::FaissException& e) {
    fail(errc::internal, "adding '{}' to the vector index failed: {}", id, e.what());
  }
  // Only once FAISS holds the new vector is the old one (if any) retired.
  const auto position = static_cast<std::int64_t>(id_at_.size());
  id_at_.emplace_back(id);
  if (auto it = pos_of_.find(id); it != pos_of_.end()) {
    id_at_[static_cast<std::size_t>(it->second)].clear();
    it->second = position;
  } else {
    pos_of_.emplace(std::string(id), position);
  }
  after_change();
}

bool faiss_index::remove(std::string_view id) {
  const auto it = pos_of_.find(id);
  if (it == pos_of_.end()) return false;
  id_at_[static_cast<std::size_t>(it->second)].clear();
  pos_of_.erase(it);
  after_change();
  return true;
}

bool faiss_index::contains(std::string_view id) const { return pos_of_.find(id) != pos_of_.end(); }

std::vector<hit> faiss_index::exact_search(const float* q, std::size_t k, const id_filter* filter) const {
  const auto d = static_cast<std::size_t>(dim_);
  const float* all = stored_vectors();
  const bool ip = metric_ == metric::inner_product;
  std::vector<std::pair<float, std::size_t>> scored;
  for (std::size_t p = 0; p < id_at_.size(); ++p) {
    if (id_at_[p].empty() || (filter != nullptr && !(*filter)(id_at_[p]))) continue;
    const float* x = all + p * d;
    scored.emplace_back(ip ? faiss::fvec_inner_product(q, x, d) : faiss::fvec_L2sqr(q, x, d), p);
  }
  return top_hits(scored, k, metric_, id_at_);
}

std::vector<hit> faiss_index::search(std::span<const float> query, std::size_t k,
                                     const id_filter* filter) const {
  check_vector(query, dim_, "query vector");
  std::vector<float> q(query.begin(), query.end());
  if (metric_ == metric::inner_product) normalize(q);
  const std::size_t live = pos_of_.size();
  k = std::min(k, live);
  if (k == 0) return {};
  // A filter on a flat index: one exact pass that applies it is cheaper than over-fetching.
  if (kind_ == index_kind::flat && filter != nullptr) return exact_search(q.data(), k, filter);

  const std::size_t total = id_at_.size();
  // Over-fetch in proportion to the dead positions (and, with a filter, for the rejected ids);
  // widen until k survivors are found. Past a point an exact scan is cheaper and cannot miss.
  std::size_t fetch = std::min(total, (k * total + live - 1) / live + 8);
  if (filter != nullptr) fetch = std::min(total, fetch * 4);
  const std::size_t exact_above = std::max<std::size_t>(4096, total / 8);
  std::vector<faiss::Index::idx_t> labels;
  std::vector<float> raw;
  for (;;) {
    labels.assign(fetch, -1);
    raw.assign(fetch, 0.0f);
    try {
      index_->search(1, q.data(), static_cast<faiss::Index::idx_t>(fetch), raw.data(), labels.data());
    } catch (const faiss::FaissException& e) {
      fail(errc::internal, "vector search failed: {}", e.what());
    }
    std::vector<hit> hits;
    for (std::size_t i = 0; i < fetch && hits.size() < k; ++i) {
      if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= total) continue;
      const std::string& id = id_at_[static_cast<std::size_t>(labels[i])];
      if (id.empty() || (filter != nullptr && !(*filter)(id))) continue;
      hit h;
      h.id = id;
      fill_score(h, metric_, raw[i]);
      hits.push_back(std::move(h));
    }
    if (hits.size() >= k) return hits;
    if (fetch >= total) return kind_ == index_kind::flat ? hits : exact_search(q.data(), k, filter);
    if (kind_ != index_kind::flat && fetch * 4 > exact_above) return exact_search(q.data(), k, filter);
    fetch = std::min(total, fetch * 4);
  }
}

void faiss_index::save(const std::filesystem::path& file, std::uint64_t generation) const {
  std::vector<std::uint8_t> payload;
  {
    faiss::VectorIOWriter writer;
    try {
      faiss::write_index(index_.get(), &writer);
    } catch (const faiss::FaissException& e) {
      fail(errc::internal, "serialising the vector index failed: {}", e.what());
    }
    put<std::uint64_t>(payload, writer.data.size());
    payload.insert(payload.end(), writer.data.begin(), writer.data.end());
  }
  for (const auto& id : id_at_) {
    put<std::uint32_t>(payload, static_cast<std::uint32_t>(id.size()));
    payload.insert(payload.end(), id.begin(), id.end());
  }
  std::vector<std::uint8_t> header(std::begin(file_magic), std::end(file_magic));
  put<std::uint32_t>(header, file_format);
  put<std::int32_t>(header, dim_);
  put<std::uint32_t>(header, static_cast<std::uint32_t>(metric_));
  put<std::uint32_t>(header, static_cast<std::uint32_t>(kind_));
  put<std::uint64_t>(header, trained_on_);
  put<std::uint64_t>(header, generation);
  put<std::uint64_t>(header, id_at_.size());
  put<std::uint64_t>(header, payload.size());
  put<std::uint64_t>(header, fnv1a(payload.data(), payload.size()));

  // Write beside the target and rename: a crash leaves the old file or the new one, never half.
  const std::filesystem::path tmp = file.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(errc::unavailable, "cannot create index file {}: {}", tmp.string(), std::strerror(errno));
  try {
    write_all(fd, header.data(), header.size(), tmp);
    write_all(fd, payload.data(), payload.size(), tmp);
    if (::fsync(fd) != 0) fail(errc::unavailable, "cannot sync index file {}: {}", tmp.string(), std::strerror(errno));
  } catch (...) {
    ::close(fd);
    std::filesystem::remove(tmp);
    throw;
  }
  ::close(fd);
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) fail(errc::unavailable, "cannot move index file into place at {}: {}", file.string(), ec.message());
}

std::unique_ptr<faiss_index> faiss_index::load(const std::filesystem::path& file, faiss_options options,
                                               std::uint64_t* generation) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(errc::not_found, "index file {} cannot be opened", file.string());
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  reader r(bytes.data(), bytes.size(), file);
  if (std::memcmp(r.take(sizeof(file_magic)), file_magic, sizeof(file_magic)) != 0)
    fail(errc::internal, "{} is not an acg2vec index file", file.string());
  const auto format = r.get<std::uint32_t>();
  if (format != file_format) fail(errc::internal, "index file {} has format {}, expected {}", file.string(), format, file_format);
  const auto dim = r.get<std::int32_t>();
  const auto metric_value = r.get<std::uint32_t>();
  const auto kind_value = r.get<std::uint32_t>();
  const auto trained_on = r.get<std::uint64_t>();
  const auto stamped = r.get<std::uint64_t>();
  const auto positions = r.get<std::uint64_t>();
  const auto payload_size = r.get<std::uint64_t>();
  const auto checksum = r.get<std::uint64_t>();
  if (payload_size != r.left()) fail(errc::internal, "index file {} is truncated", file.string());
  const std::uint8_t* payload = r.take(payload_size);
  if (fnv1a(payload, payload_size) != checksum) fail(errc::internal, "index file {} fails its checksum", file.string());
  if (dim <= 0 || metric_value > 1 || kind_value > static_cast<std::uint32_t>(index_kind::ivf_pq) ||
      kind_value == static_cast<std::uint32_t>(index_kind::automatic))
    fail(errc::internal, "index file {} has an invalid header", file.string());

  auto result = std::make_unique<faiss_index>(dim, static_cast<metric>(metric_value), std::move(options));
  reader p(payload, payload_size, file);
  const auto blob_size = p.get<std::uint64_t>();
  if (blob_size > p.left()) fail(errc::internal, "index file {} is truncated", file.string());
  faiss::VectorIOReader blob;
  const std::uint8_t* blob_data = p.take(blob_size);
  blob.data.assign(blob_data, blob_data + blob_size);
  std::unique_ptr<faiss::Index> loaded;
  try {
    loaded.reset(faiss::read_index(&blob));
  } catch (const faiss::FaissException& e) {
    fail(errc::internal, "index file {} cannot be read by FAISS: {}", file.string(), e.what());
  }
  const auto kind = static_cast<index_kind>(kind_value);
  const bool shape_ok =
      loaded->d == dim && static_cast<std::uint64_t>(loaded->ntotal) == positions &&
      loaded->metric_type == faiss_metric(result->metric_) &&
      ((kind == index_kind::flat && dynamic_cast<faiss::IndexFlat*>(loaded.get()) != nullptr) ||
       (kind == index_kind::hnsw && dynamic_cast<faiss::IndexHNSWFlat*>(loaded.get()) != nullptr) ||
       (kind == index_kind::ivf_pq && dynamic_cast<faiss::IndexRefine*>(loaded.get()) != nullptr));
  if (!shape_ok) fail(errc::internal, "index file {} does not match its header", file.string());
  // Search-time settings follow the current options rather than the saved ones.
  apply_search_options(*loaded, result->options_);

  std::vector<std::string> ids;
  ids.reserve(positions);
  for (std::uint64_t i = 0; i < positions; ++i) {
    const auto length = p.get<std::uint32_t>();
    const auto* text = p.take(length);
    ids.emplace_back(reinterpret_cast<const char*>(text), length);
  }
  if (p.left() != 0) fail(errc::internal, "index file {} has trailing bytes", file.string());
  result->pos_of_.clear();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i].empty()) continue;
    if (!result->pos_of_.emplace(ids[i], static_cast<std::int64_t>(i)).second)
      fail(errc::internal, "index file {} lists id '{}' twice", file.string(), ids[i]);
  }
  result->id_at_ = std::move(ids);
  result->index_ = std::move(loaded);
  result->kind_ = kind;
  result->trained_on_ = trained_on;
  if (generation != nullptr) *generation = stamped;
  return result;
}

}  // namespace acg2vec::index
