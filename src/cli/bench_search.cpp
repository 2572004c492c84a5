// `acg2vec bench search`: vector index build time, memory, QPS and recall against brute force.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/bench_common.h"
#include "cli/commands.h"
#include "core/error.h"
#include "index/brute_index.h"
#include "index/faiss_index.h"
#include "runtime/blas.h"
#include "runtime/threads.h"
#include "index/milvus_index.h"

namespace acg2vec::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;
using namespace bench;

struct search_options {
  std::size_t n = 100000;
  int dim = 512;
  std::string kinds = "flat,hnsw,ivf_pq";
  std::size_t queries = 1000;
  bool clustered = false;
  std::size_t k = 10;
  int threads = 0;
  double brute_seconds = 5.0;
  std::size_t nlist = 0;
  std::string nprobe;     ///< comma list swept on one IVF-PQ build ("" = the index's default)
  std::string ef_search;  ///< comma list swept on one HNSW build ("" = the index's default)
  float refine = 32.0f;
  std::size_t pq_m = 0;
  std::string milvus;  ///< milvus://... : one more row through the Milvus REST client ("" = none)
};

/// Unit vectors: isotropic Gaussian directions, or points around n/100 (at most 1000) centres.
at::Tensor make_vectors(std::size_t n, int dim, bool clustered, const at::Tensor& centres) {
  auto noise = at::randn({static_cast<std::int64_t>(n), dim});
  at::Tensor v = noise;
  if (clustered) {
    auto pick = at::randint(centres.size(0), {static_cast<std::int64_t>(n)}, at::kLong);
    v = centres.index_select(0, pick) + noise * 0.5 / std::sqrt(static_cast<double>(dim)) * 2.0;
  }
  return v / v.norm(2, {1}, true);
}

/// Exact top-k ids (as row numbers) of every query by inner product, in chunks.
at::Tensor exact_topk(const at::Tensor& base, const at::Tensor& queries, std::int64_t k) {
  std::vector<at::Tensor> parts;
  for (std::int64_t q = 0; q < queries.size(0); q += 256) {
    auto scores = at::mm(queries.slice(0, q, std::min(queries.size(0), q + 256)), base.t());
    parts.push_back(std::get<1>(scores.topk(k, 1)));
  }
  return at::cat(parts, 0);
}

struct recall_qps {
  double qps_one = 0;
  double qps_all = 0;
  double recall1 = 0;
  double recall10 = 0;
};

/// Queries one thread after another, then all threads at once; recall against truth.
recall_qps measure_index(const index::vector_index& idx, const at::Tensor& queries, const at::Tensor& truth,
                         std::size_t k, int threads) {
  const auto nq = static_cast<std::size_t>(queries.size(0));
  const float* q = queries.data_ptr<float>();
  const auto dim = static_cast<std::size_t>(queries.size(1));
  std::vector<std::vector<index::hit>> results(nq);
  // One query is one thread's work: FAISS opens an OpenMP region per call, and a team of
  // intra-op threads spinning for one query costs several times the search itself.
  const int intra = at::get_num_threads();
  at::set_num_threads(1);
  auto start = clock_type::now();
  for (std::size_t i = 0; i < nq; ++i) results[i] = idx.search({q + i * dim, dim}, k);
  recall_qps r;
  r.qps_one = static_cast<double>(nq) / seconds_since(start);

  std::vector<std::thread> pool;
  start = clock_type::now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      at::set_num_threads(1);
      for (std::size_t i = static_cast<std::size_t>(t); i < nq; i += static_cast<std::size_t>(threads)) {
        (void)idx.search({q + i * dim, dim}, k);
      }
    });
  }
  for (auto& th : pool) th.join();
  r.qps_all = static_cast<double>(nq) / seconds_since(start);
  at::set_num_threads(intra);

  auto tr = truth.accessor<std::int64_t, 2>();
  const std::size_t kk = std::min<std::size_t>(k, static_cast<std::size_t>(truth.size(1)));
  double hits1 = 0, hits10 = 0;
  for (std::size_t i = 0; i < nq; ++i) {
    const auto& got = results[i];
    if (!got.empty() && std::stoll(got[0].id) == tr[static_cast<std::int64_t>(i)][0]) hits1 += 1;
    for (std::size_t j = 0; j < kk; ++j) {
      auto want = std::to_string(tr[static_cast<std::int64_t>(i)][static_cast<std::int64_t>(j)]);
      for (std::size_t g = 0; g < std::min(kk, got.size()); ++g) {
        if (got[g].id == want) {
          hits10 += 1;
          break;
        }
      }
    }
  }
  r.recall1 = hits1 / static_cast<double>(nq);
  r.recall10 = hits10 / static_cast<double>(nq * kk);
  return r;
}

void run_bench_search(const search_options& o) {
  line_buffered_stdout();
  if (o.n < o.k || o.queries == 0) fail(errc::bad_parameter, "bench search: need --n >= k and --queries > 0");
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  runtime::configure_threads(threads);
  std::vector<index::index_kind> kinds;
  for (const auto& name : parse_name_list(o.kinds)) kinds.push_back(index::parse_index_kind(name));

  at::InferenceMode guard;
  at::manual_seed(0);
  at::Tensor centres;
  if (o.clustered) {
    centres = at::randn({static_cast<std::int64_t>(std::clamp<std::size_t>(o.n / 100, 1, 1000)), o.dim});
    centres = centres / centres.norm(2, {1}, true);
  }
  auto base = make_vectors(o.n, o.dim, o.clustered, centres).contiguous();
  auto queries = make_vectors(o.queries, o.dim, o.clustered, centres).contiguous();
  const auto k10 = static_cast<std::int64_t>(std::min<std::size_t>(o.k, o.n));
  auto truth = exact_topk(base, queries, k10).contiguous();
  std::vector<std::string> ids(o.n);
  for (std::size_t i = 0; i < o.n; ++i) ids[i] = std::to_string(i);
  const float* data = base.data_ptr<float>();

  fmt::print("bench search: {} {} vectors x {}-d (inner product), {} queries, k={}, {} threads, load average {}\n",
             o.n, o.clustered ? "clustered" : "random", o.dim, o.queries, o.k, threads, load_average());
  fmt::print("{}\n", runtime::describe_blas());
  fmt::print("\n{:<13} {:>9} {:>9} {:>10} {:>12} {:>9} {:>10} {:>8}\n", "INDEX", "BUILD_S", "RSS_MB", "QPS_1T",
             fmt::format("QPS_{}T", threads), "QPS/CORE", "RECALL@1", fmt::format("RECALL@{}", o.k));

  // Brute force: the reference scan, single thread, on as many queries as fit in brute_seconds.
  double brute_qps = 0;
  {
    auto before = resident_bytes();
    auto start = clock_type::now();
    index::brute_index brute(o.dim, index::metric::inner_product);
    for (std::size_t i = 0; i < o.n; ++i) {
      brute.add(ids[i], {data + i * static_cast<std::size_t>(o.dim), static_cast<std::size_t>(o.dim)});
    }
    double build = seconds_since(start);
    double rss = static_cast<double>(resident_bytes() - std::min(before, resident_bytes())) / 1e6;
    const float* q = queries.data_ptr<float>();
    std::size_t done = 0;
    start = clock_type::now();
    while (done < o.queries && (done < 3 || seconds_since(start) < o.brute_seconds)) {
      (void)brute.search({q + done * static_cast<std::size_t>(o.dim), static_cast<std::size_t>(o.dim)}, o.k);
      ++done;
    }
    brute_qps = static_cast<double>(done) / seconds_since(start);
    fmt::print("{:<13} {:>9.2f} {:>9.0f} {:>10.1f} {:>12} {:>9.1f} {:>10} {:>8}  ({} queries)\n", "brute", build, rss,
               brute_qps, "-", brute_qps, "1.000", "1.000", done);
  }

  for (auto kind : kinds) {
    index::faiss_options fo;
    fo.kind = kind;
    fo.ivf_min_train = 1;  // build the requested structure whatever the size
    fo.ivf_nlist = o.nlist;
    fo.ivf_refine_factor = o.refine;
    fo.ivf_pq_m = o.pq_m;
    auto before = resident_bytes();
    auto start = clock_type::now();
    auto idx = std::make_unique<index::faiss_index>(o.dim, index::metric::inner_product, fo);
    idx->assign(ids, std::vector<float>(data, data + o.n * static_cast<std::size_t>(o.dim)));
    double build = seconds_since(start);
    double rss = static_cast<double>(resident_bytes() - std::min(before, resident_bytes())) / 1e6;
    // One build, then each requested search effort (nprobe or efSearch) on it.
    std::vector<std::int64_t> efforts{0};
    if (kind == index::index_kind::ivf_pq && !o.nprobe.empty()) efforts = parse_int_list(o.nprobe, "--nprobe");
    if (kind == index::index_kind::hnsw && !o.ef_search.empty()) efforts = parse_int_list(o.ef_search, "--ef-search");
    for (auto effort : efforts) {
      std::string name(index::to_string(idx->current_kind()));
      if (effort > 0) {
        const bool ivf = kind == index::index_kind::ivf_pq;
        idx->set_search_options(ivf ? fo.hnsw_ef_search : static_cast<int>(effort), ivf ? static_cast<int>(effort) : 0,
                                fo.ivf_refine_factor);
        name += fmt::format("/{}{}", ivf ? "np" : "ef", effort);
      }
      auto r = measure_index(*idx, queries, truth, o.k, threads);
      std::string note = fmt::format("{:.1f}x brute, 1 thread", r.qps_one / brute_qps);
      if (idx->current_kind() != kind) {
        note += fmt::format("; {} requested, too few vectors to train it", index::to_string(kind));
      }
      fmt::print("{:<13} {:>9.2f} {:>9.0f} {:>10.1f} {:>12.1f} {:>9.1f} {:>10.3f} {:>8.3f}  ({})\n", name, build, rss,
                 r.qps_one, r.qps_all, r.qps_all / threads, r.recall1, r.recall10, note);
    }
  }

  if (!o.milvus.empty()) {
    // The same vectors through the Milvus REST client: upserts in batches, then the same queries.
    // Against tests/milvus_double this measures the client's protocol overhead (JSON, HTTP, one
    // request per search) on a brute-force Python server; it says nothing about Milvus's speed.
    auto mo = index::parse_milvus_uri(o.milvus);
    mo.collection_prefix = "acg2vec_bench_";
    index::milvus_index(mo, "search", o.dim, index::metric::inner_product).drop();
    auto start = clock_type::now();
    index::milvus_index idx(mo, "search", o.dim, index::metric::inner_product);
    idx.add_batch(ids, std::span<const float>(data, o.n * static_cast<std::size_t>(o.dim)));
    const double build = seconds_since(start);
    auto r = measure_index(idx, queries, truth, o.k, threads);
    fmt::print("{:<13} {:>9.2f} {:>9} {:>10.1f} {:>12.1f} {:>9.1f} {:>10.3f} {:>8.3f}  ({} {}:{}; protocol overhead, "
               "not a Milvus measurement)\n",
               "milvus", build, "-", r.qps_one, r.qps_all, r.qps_all / threads, r.recall1, r.recall10,
               "REST v2 at", mo.host, mo.port);
    idx.drop();
  }
}

}  // namespace

void add_bench_search(CLI::App& bench_cmd) {
  auto o = std::make_shared<search_options>();
  auto* cmd = bench_cmd.add_subcommand("search", "vector index build time, memory, QPS and recall vs brute force");
  cmd->add_option("--n", o->n, "vectors in the index")->check(CLI::Range(1, 10000000))->capture_default_str();
  cmd->add_option("--dim", o->dim, "dimension")->check(CLI::Range(2, 4096))->capture_default_str();
  cmd->add_option("--kinds", o->kinds, "flat, hnsw, ivf_pq (comma-separated)")->capture_default_str();
  cmd->add_option("--queries", o->queries, "queries")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--k", o->k, "results per query (recall@k)")->check(CLI::Range(1, 1000))->capture_default_str();
  cmd->add_flag("--clustered", o->clustered, "points around n/100 centres instead of isotropic noise");
  cmd->add_option("--threads", o->threads, "threads for the all-threads run (0 = cores)")->capture_default_str();
  cmd->add_option("--brute-seconds", o->brute_seconds, "time bound of the brute-force QPS measurement")
      ->capture_default_str();
  cmd->add_option("--nlist", o->nlist, "IVF-PQ inverted lists (0 = sqrt(n))")->capture_default_str();
  cmd->add_option("--nprobe", o->nprobe, "IVF-PQ lists probed, comma-separated values swept on one build");
  cmd->add_option("--ef-search", o->ef_search, "HNSW efSearch, comma-separated values swept on one build");
  cmd->add_option("--pq-m", o->pq_m, "IVF-PQ sub-quantizers, bytes per code (0 = up to 64, dividing dim)")
      ->capture_default_str();
  cmd->add_option("--refine", o->refine, "IVF-PQ candidates re-ranked exactly, as a multiple of k")
      ->check(CLI::Range(1.0f, 1000.0f))
      ->capture_default_str();
  cmd->add_option("--milvus", o->milvus,
                  "also measure a Milvus collection through the REST client (milvus://host:port[?...]); against "
                  "tests/milvus_double this is the client's protocol overhead only");
  cmd->callback([o] { run_bench_search(*o); });
}

}  // namespace acg2vec::cli
