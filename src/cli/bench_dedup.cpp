// `acg2vec bench dedup`: how duplicate grouping scales. Synthetic perceptual signatures (random unit
// vectors, a tenth of them with a planted noisy copy at cosine ~0.93) are grouped twice: by the ANN
// self-join that `acg2vec dedup` uses (FAISS, by default flat below 50k vectors and HNSW above, as the
// service builds it; --index picks another kind the service can be configured with), and by scanning
// every pair. Each row is printed as soon as it is measured.
//
// Where a size is too large to measure whole on the machine at hand, two samples stand in, and the row
// says so: --join-sample queries only the first m vectors (on the index over all n) and scales the join
// time by n/m; past --brute-max the pair scan is not run, and its time comes from scanning
// --recall-sample rows against all n vectors (r*n products; the full scan is n(n-1)/2 of the same
// products, so its time is the sample's times n/(2r)). The same sampled rows give the join's recall:
// the share of the pairs the exact scan finds for those rows that the join found too.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <random>
#include <set>
#include <thread>

#include "cli/bench_common.h"
#include "cli/commands.h"
#include "core/error.h"
#include "image/signature.h"
#include "index/faiss_index.h"
#include "search/dedup.h"

namespace acg2vec::cli {

using namespace bench;

namespace {

// Exact pairs (i, j), i < rows, j any other row, with inner product >= threshold; a < b in each pair.
std::vector<search::candidate_pair> exact_rows(std::span<const float> data, int dim, std::size_t rows, float threshold,
                                               std::size_t threads) {
  const auto d = static_cast<std::size_t>(dim);
  const std::size_t n = data.size() / d;
  std::vector<std::vector<search::candidate_pair>> found(threads);
  std::vector<std::thread> pool;
  for (std::size_t w = 0; w < threads; ++w) {
    pool.emplace_back([&, w] {
      for (std::size_t i = w; i < rows; i += threads) {
        const float* a = data.data() + i * d;
        for (std::size_t j = 0; j < n; ++j) {
          if (j == i) continue;
          const float* b = data.data() + j * d;
          float s = 0;
          for (std::size_t c = 0; c < d; ++c) s += a[c] * b[c];
          if (s >= threshold) found[w].push_back({std::min(i, j), std::max(i, j), s});
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  std::vector<search::candidate_pair> out;
  for (auto& f : found) out.insert(out.end(), f.begin(), f.end());
  return out;
}

double recall_of(std::span<const search::candidate_pair> exact, std::span<const search::candidate_pair> joined) {
  std::set<std::pair<std::size_t, std::size_t>> have;
  for (const auto& p : joined) have.insert({p.a, p.b});
  std::set<std::pair<std::size_t, std::size_t>> want;
  for (const auto& p : exact) want.insert({p.a, p.b});
  std::size_t hit = 0;
  for (const auto& p : want) hit += have.count(p);
  return want.empty() ? 1.0 : static_cast<double>(hit) / static_cast<double>(want.size());
}

}  // namespace

void add_bench_dedup(CLI::App& bench_cmd) {
  auto* cmd = bench_cmd.add_subcommand("dedup", "duplicate grouping time: ANN self-join vs brute-force pair scan");
  struct opts_t {
    std::vector<std::size_t> sizes{10000, 100000, 1000000};
    std::size_t brute_max = 100000;
    std::size_t join_sample = 0;
    std::size_t recall_sample = 2000;
    std::string index_kind = "automatic";
    std::size_t neighbours = 16;
    std::size_t threads = 0;
    unsigned seed = 7;
  };
  auto o = std::make_shared<opts_t>();
  cmd->add_option("--n", o->sizes, "collection sizes to measure (repeatable)")->capture_default_str();
  cmd->add_option("--brute-max", o->brute_max,
                  "largest size the full brute-force scan is run on (larger: timed on --recall-sample rows and "
                  "scaled to all pairs)")
      ->capture_default_str();
  cmd->add_option("--neighbours", o->neighbours, "neighbours per query in the self-join")->capture_default_str();
  cmd->add_option("--join-sample", o->join_sample,
                  "query only the first N vectors in the self-join (on the index over all n) and scale its time "
                  "to all n (0 = query all)")
      ->capture_default_str();
  cmd->add_option("--recall-sample", o->recall_sample,
                  "rows scanned exactly against all n where the full scan is not run (or the join is sampled): "
                  "they give the recall and the scan's time estimate")
      ->capture_default_str();
  cmd->add_option("--index", o->index_kind,
                  "index kind of the join: automatic (as the service: flat below 50k, HNSW above), flat, hnsw, "
                  "ivf_pq")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "random seed of the synthetic signatures")->capture_default_str();
  cmd->callback([o] {
    const int dim = image::signature_dim;
    const float threshold = image::near_duplicate_similarity;
    const std::size_t threads = o->threads > 0 ? o->threads : std::max(1u, std::thread::hardware_concurrency());
    const index::index_kind kind = index::parse_index_kind(o->index_kind);
    fmt::print("bench dedup: {}-d synthetic signatures, threshold {}, k={}, {} threads, index {}, load average {}\n",
               dim, threshold, o->neighbours, threads, o->index_kind, load_average());
    fmt::print("{:>9}  {:>8}  {:>9}  {:>9}  {:>9}  {:>8}  {:>24}  {:>16}  {}\n", "n", "index", "build s", "join s",
               "pairs", "groups", "brute s", "recall", "load");
    std::fflush(stdout);
    for (std::size_t n : o->sizes) {
      std::mt19937_64 rng(o->seed + n);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      std::vector<float> data(n * static_cast<std::size_t>(dim));
      std::vector<std::string> ids(n);
      auto unit = [&](float* v) {
        double s = 0;
        for (int c = 0; c < dim; ++c) s += static_cast<double>(v[c]) * v[c];
        const auto inv = static_cast<float>(1.0 / std::sqrt(s));
        for (int c = 0; c < dim; ++c) v[c] *= inv;
      };
      for (std::size_t i = 0; i < n; ++i) {
        float* v = data.data() + i * dim;
        ids[i] = fmt::format("i{}", i);
        if (i % 10 == 9) {
          // A planted copy of the previous vector: noise of norm ~0.4 (cosine ~0.93).
          const float* src = v - dim;
          for (int c = 0; c < dim; ++c) v[c] = src[c] + normal(rng) * 0.4f / std::sqrt(static_cast<float>(dim));
        } else {
          for (int c = 0; c < dim; ++c) v[c] = normal(rng);
        }
        unit(v);
      }
      fmt::print(stderr, "n={}: building the index\n", n);
      auto t0 = std::chrono::steady_clock::now();
      index::faiss_options fo;
      fo.name = "bench-dedup";
      fo.kind = kind;
      index::faiss_index idx(dim, index::metric::inner_product, fo);
      idx.assign(ids, data);
      const double build = seconds_since(t0);
      const std::size_t m = o->join_sample > 0 && o->join_sample < n ? o->join_sample : n;
      fmt::print(stderr, "n={}: index built in {:.1f} s; joining {} of {} vectors\n", n, build, m, n);
      t0 = std::chrono::steady_clock::now();
      auto search = [&](std::span<const float> q, std::size_t k) { return idx.search(q, k); };
      auto pairs = search::self_join(ids, data, dim, search, o->neighbours, threshold, true, threads, m);
      auto groups = search::connected_groups(n, pairs);
      const double join = seconds_since(t0) * static_cast<double>(n) / static_cast<double>(m);
      std::string brute = "-";
      std::string recall = "-";
      std::string notes;
      if (m < n) notes += fmt::format(" join: {} of {} queried, time x{:.0f};", m, n, static_cast<double>(n) / m);
      if (n <= o->brute_max) {
        fmt::print(stderr, "n={}: scanning all pairs\n", n);
        t0 = std::chrono::steady_clock::now();
        auto all = search::brute_force_pairs(data, dim, threshold, threads);
        brute = fmt::format("{:.2f}", seconds_since(t0));
        // The pair scan has no mirror; the planted and chance pairs it finds are what the join must find.
        if (m == n) recall = fmt::format("{:.4f} (all)", recall_of(all, pairs));
      }
      if (recall == "-") {
        const std::size_t r = std::min(o->recall_sample, m);
        fmt::print(stderr, "n={}: scanning {} rows against all {}\n", n, r, n);
        t0 = std::chrono::steady_clock::now();
        auto exact = exact_rows(data, dim, r, threshold, threads);
        const double sampled = seconds_since(t0);
        recall = fmt::format("{:.4f} ({} rows)", recall_of(exact, pairs), r);
        if (brute == "-") {
          brute = fmt::format("~{:.0f} (from {} rows)", sampled * static_cast<double>(n) / (2.0 * r), r);
          notes += fmt::format(" scan: {} rows x {} timed, x{:.0f} for all pairs;", r, n,
                               static_cast<double>(n) / (2.0 * r));
        }
      }
      fmt::print("{:>9}  {:>8}  {:>9.2f}  {:>9.2f}  {:>9}  {:>8}  {:>24}  {:>16}  {}{}\n", n,
                 index::to_string(idx.current_kind()), build, join, pairs.size(), groups.size(), brute, recall,
                 load_average(), notes);
      std::fflush(stdout);
    }
  });
}

}  // namespace acg2vec::cli
