// `acg2vec bench dedup`: how duplicate grouping scales. Synthetic perceptual signatures (random unit
// vectors, a tenth of them with a planted noisy copy at cosine ~0.93) are grouped twice: by the ANN
// self-join that `acg2vec dedup` uses (FAISS, flat below 50k vectors and HNSW above, as the service
// builds it), and by scanning every pair. The pair scan is quadratic; past --brute-max it is not run
// and its time is extrapolated from the largest size measured, and the output says so.
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

void add_bench_dedup(CLI::App& bench_cmd) {
  auto* cmd = bench_cmd.add_subcommand("dedup", "duplicate grouping time: ANN self-join vs brute-force pair scan");
  struct opts_t {
    std::vector<std::size_t> sizes{10000, 100000, 1000000};
    std::size_t brute_max = 100000;
    std::size_t join_sample = 0;
    std::size_t neighbours = 16;
    std::size_t threads = 0;
    unsigned seed = 7;
  };
  auto o = std::make_shared<opts_t>();
  cmd->add_option("--n", o->sizes, "collection sizes to measure (repeatable)")->capture_default_str();
  cmd->add_option("--brute-max", o->brute_max, "largest size the brute-force scan is run on (larger: extrapolated)")
      ->capture_default_str();
  cmd->add_option("--neighbours", o->neighbours, "neighbours per query in the self-join")->capture_default_str();
  cmd->add_option("--join-sample", o->join_sample,
                  "query only the first N vectors in the self-join (on the full index) and extrapolate its time "
                  "to all n (0 = query all)")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "random seed of the synthetic signatures")->capture_default_str();
  cmd->callback([o] {
    const int dim = image::signature_dim;
    const float threshold = image::near_duplicate_similarity;
    const std::size_t threads = o->threads > 0 ? o->threads : std::max(1u, std::thread::hardware_concurrency());
    fmt::print("bench dedup: {}-d synthetic signatures, threshold {}, k={}, {} threads, load average {}\n", dim,
               threshold, o->neighbours, threads, load_average());
    fmt::print("{:>9}  {:>8}  {:>9}  {:>9}  {:>9}  {:>8}  {:>11}  {:>8}\n", "n", "index", "build s", "join s",
               "pairs", "groups", "brute s", "recall");
    double brute_rate = 0;  // seconds per pair compared, from the largest measured scan
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
      auto t0 = std::chrono::steady_clock::now();
      index::faiss_options fo;
      fo.name = "bench-dedup";
      index::faiss_index idx(dim, index::metric::inner_product, fo);
      idx.assign(ids, data);
      const double build = seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      auto search = [&](std::span<const float> q, std::size_t k) { return idx.search(q, k); };
      // A sample queries the first m vectors against the whole index; pairs with the other vectors are
      // dropped (self_join keeps only ids it was given), but each query costs what it would in the full join.
      const std::size_t m = o->join_sample > 0 && o->join_sample < n ? o->join_sample : n;
      auto pairs = search::self_join(std::span<const std::string>(ids.data(), m),
                             std::span<const float>(data.data(), m * static_cast<std::size_t>(dim)), dim, search,
                             o->neighbours, threshold, true, threads);
      auto groups = search::connected_groups(m, pairs);
      const double join = seconds_since(t0) * static_cast<double>(n) / static_cast<double>(m);
      if (m < n) fmt::print("(join of n={}: {} of {} vectors queried; time extrapolated x{:.1f}, pairs and groups of the sample)\n",
                            n, m, n, static_cast<double>(n) / m);
      std::string brute = "-";
      std::string recall = "-";
      if (n <= o->brute_max) {
        t0 = std::chrono::steady_clock::now();
        auto all = search::brute_force_pairs(data, dim, threshold, threads);
        const double s = seconds_since(t0);
        brute_rate = s / (static_cast<double>(n) * (n - 1) / 2);
        brute = fmt::format("{:.2f}", s);
        // The brute-force scan has no mirror; count the planted and chance pairs it finds.
        std::set<std::pair<std::size_t, std::size_t>> found;
        for (const auto& p : pairs) found.insert({p.a, p.b});
        std::size_t hit = 0;
        for (const auto& p : all) hit += found.count({p.a, p.b});
        if (m == n) recall = all.empty() ? "-" : fmt::format("{:.4f}", static_cast<double>(hit) / all.size());
      } else if (brute_rate > 0) {
        brute = fmt::format("~{:.0f} (extrapolated)", brute_rate * static_cast<double>(n) * (n - 1) / 2);
      }
      fmt::print("{:>9}  {:>8}  {:>9.2f}  {:>9.2f}  {:>9}  {:>8}  {:>11}  {:>8}\n", n,
                 index::to_string(idx.current_kind()), build, join, pairs.size(), groups.size(), brute, recall);
    }
  });
}

}  // namespace acg2vec::cli
