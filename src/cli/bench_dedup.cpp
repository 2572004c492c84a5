// `acg2vec bench dedup`: how duplicate grouping scales. Synthetic perceptual signatures (random unit
// vectors, a tenth of them with a planted noisy copy at cosine ~0.93) are grouped twice: by the
// similarity self-join that `acg2vec dedup` runs (index/similarity_join.h: exact up to --exact-max
// rows, clustered above), and by the exact scan of every pair (blocked matrix products). Each row is
// printed as soon as it is measured.
//
// Where a size is too large to measure whole on the machine at hand, samples stand in, and the row
// says so: --join-sample queries only the first m vectors (against all n) and scales the join's
// comparison time by n/m; past --brute-max the pair scan is not run whole, and its time comes from
// scanning --recall-sample rows against all n vectors (the full scan is the same products for all n
// rows, so its time is the sample's times n/r). The same sampled rows give the join's recall: the
// share of the pairs the exact scan finds for those rows that the join found too.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <random>
#include <set>

#include <omp.h>

#include "cli/bench_common.h"
#include "cli/commands.h"
#include "core/error.h"
#include "image/signature.h"
#include "index/similarity_join.h"
#include "runtime/blas.h"
#include "search/dedup.h"

namespace acg2vec::cli {

using namespace bench;

namespace {

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
  auto* cmd = bench_cmd.add_subcommand("dedup", "duplicate grouping time: similarity self-join vs exact pair scan");
  struct opts_t {
    std::vector<std::size_t> sizes{10000, 100000, 1000000};
    std::size_t brute_max = 100000;
    std::size_t join_sample = 0;
    std::size_t recall_sample = 2000;
    index::self_join_options join;
    std::size_t threads = 0;
    unsigned seed = 7;
  };
  auto o = std::make_shared<opts_t>();
  cmd->add_option("--n", o->sizes, "collection sizes to measure (repeatable)")->capture_default_str();
  cmd->add_option("--brute-max", o->brute_max,
                  "largest size the full pair scan is run on (larger: timed on --recall-sample rows and scaled "
                  "to all rows)")
      ->capture_default_str();
  cmd->add_option("--neighbours", o->join.neighbours, "neighbours kept per query in the self-join")
      ->capture_default_str();
  cmd->add_option("--exact-max", o->join.exact_max,
                  "largest size the self-join compares all pairs on (larger: clustered)")
      ->capture_default_str();
  cmd->add_option("--clusters", o->join.clusters, "clusters of the clustered join (0 = about 2 sqrt(n))")
      ->capture_default_str();
  cmd->add_option("--probes", o->join.probes, "clusters each query is compared with")->capture_default_str();
  cmd->add_option("--join-sample", o->join_sample,
                  "query only the first N vectors in the self-join (against all n) and scale its comparison "
                  "time to all n (0 = query all)")
      ->capture_default_str();
  cmd->add_option("--recall-sample", o->recall_sample,
                  "rows scanned exactly against all n where the full scan is not run (or the join is sampled): "
                  "they give the recall and the scan's time estimate")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "OpenMP threads of the join and the scan (0 = the default)")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "random seed of the synthetic signatures")->capture_default_str();
  cmd->callback([o] {
    const int dim = image::signature_dim;
    const float threshold = image::near_duplicate_similarity;
    if (o->threads > 0) omp_set_num_threads(static_cast<int>(o->threads));
    fmt::print("bench dedup: {}-d synthetic signatures, threshold {}, k={}, exact up to {} rows, {} probes, "
               "{} OpenMP threads, load average {}\n{}\n",
               dim, threshold, o->join.neighbours, o->join.exact_max, o->join.probes, omp_get_max_threads(),
               load_average(), runtime::describe_blas());
    fmt::print("{:>9}  {:>14}  {:>9}  {:>9}  {:>9}  {:>8}  {:>8}  {:>24}  {:>16}  {}\n", "n", "join", "cluster s",
               "compare s", "join s", "pairs", "groups", "scan s", "recall", "load");
    std::fflush(stdout);
    for (std::size_t n : o->sizes) {
      std::mt19937_64 rng(o->seed + n);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      std::vector<float> data(n * static_cast<std::size_t>(dim));
      auto unit = [&](float* v) {
        double s = 0;
        for (int c = 0; c < dim; ++c) s += static_cast<double>(v[c]) * v[c];
        const auto inv = static_cast<float>(1.0 / std::sqrt(s));
        for (int c = 0; c < dim; ++c) v[c] *= inv;
      };
      for (std::size_t i = 0; i < n; ++i) {
        float* v = data.data() + i * dim;
        if (i % 10 == 9) {
          // A planted copy of the previous vector: noise of norm ~0.4 (cosine ~0.93).
          const float* src = v - dim;
          for (int c = 0; c < dim; ++c) v[c] = src[c] + normal(rng) * 0.4f / std::sqrt(static_cast<float>(dim));
        } else {
          for (int c = 0; c < dim; ++c) v[c] = normal(rng);
        }
        unit(v);
      }
      const std::size_t m = o->join_sample > 0 && o->join_sample < n ? o->join_sample : n;
      fmt::print(stderr, "n={}: joining {} of {} vectors\n", n, m, n);
      index::self_join_options jo = o->join;
      jo.threshold = threshold;
      jo.queries = m;
      index::self_join_stats st;
      auto t0 = std::chrono::steady_clock::now();
      auto pairs = search::self_join(data, dim, true, jo, &st);
      const double mirror_and_rest = seconds_since(t0) - st.cluster_seconds - st.compare_seconds;
      auto groups = search::connected_groups(n, pairs);
      // Clustering covers all n rows whatever the sample; the comparisons scale with the queries.
      const double scale = static_cast<double>(n) / static_cast<double>(m);
      const double join = st.cluster_seconds + (st.compare_seconds + mirror_and_rest) * scale;
      std::string kind = st.exact ? "exact" : fmt::format("{}c/{}p", st.clusters, st.probes);
      std::string brute = "-";
      std::string recall = "-";
      std::string notes = fmt::format(" {:.0f} rows compared per query;", st.mean_compared);
      if (m < n) notes += fmt::format(" join: {} of {} queried, time x{:.0f};", m, n, scale);
      if (n <= o->brute_max) {
        fmt::print(stderr, "n={}: scanning all pairs\n", n);
        t0 = std::chrono::steady_clock::now();
        auto all = index::all_pairs_scan(data, dim, threshold);
        brute = fmt::format("{:.2f}", seconds_since(t0));
        // The pair scan has no mirror; the planted and chance pairs it finds are what the join must find.
        if (m == n) recall = fmt::format("{:.4f} (all)", recall_of(all, pairs));
      }
      if (recall == "-") {
        const std::size_t r = std::min(o->recall_sample, m);
        fmt::print(stderr, "n={}: scanning {} rows against all {}\n", n, r, n);
        t0 = std::chrono::steady_clock::now();
        auto exact = index::all_pairs_scan(data, dim, threshold, r);
        const double sampled = seconds_since(t0);
        recall = fmt::format("{:.4f} ({} rows)", recall_of(exact, pairs), r);
        if (brute == "-") {
          brute = fmt::format("~{:.0f} (from {} rows)", sampled * static_cast<double>(n) / static_cast<double>(r), r);
          notes += fmt::format(" scan: {} rows x {} timed, x{:.0f} for all rows;", r, n,
                               static_cast<double>(n) / static_cast<double>(r));
        }
      }
      fmt::print("{:>9}  {:>14}  {:>9.2f}  {:>9.2f}  {:>9.2f}  {:>8}  {:>8}  {:>24}  {:>16}  {}{}\n", n, kind,
                 st.cluster_seconds, st.compare_seconds * scale, join, pairs.size(), groups.size(), brute, recall,
                 load_average(), notes);
      std::fflush(stdout);
    }
  });
}

}  // namespace acg2vec::cli
