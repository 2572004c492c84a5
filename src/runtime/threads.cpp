#include "runtime/threads.h"

#include "core/cpu_turns.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <thread>

#include "runtime/compute.h"

namespace acg2vec::runtime {

void configure_threads(int intra_op) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = intra_op > 0 ? intra_op : cores;
  // libtorch parallelises over its own OpenMP pool and calls BLAS from inside those threads.
  // A pthreads OpenBLAS would start a second pool whose threads busy-wait on the same cores
  // (measured several times slower on transformer matmuls with 2 cores), so BLAS runs
  // single-threaded and torch owns the parallelism. OpenBLAS reads its environment when it is
  // loaded, hence the call through dlsym rather than an environment variable; a BLAS that is
  // not OpenBLAS simply lacks the symbol.
  using set_threads_fn = void (*)(int);
  auto set_blas_threads = reinterpret_cast<set_threads_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_blas_threads) set_blas_threads(1);
  // libgomp's idle threads spin for ~0.1 ms by default, which is ruinous on a loaded or shared
  // 2-core machine (the binary bounds it at start, see cli/main.cpp). libgomp reads the policy
  // when it is loaded, so it must be in the environment that starts the process; say so when a
  // library user's process has none.
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT"))
    spdlog::info("runtime: neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set; idle OpenMP threads spin on shared cores");
  set_thread_openmp_threads(threads);
  // A team on every core cannot share them with decoders without stalling at its barriers;
  // a smaller team leaves cores to them (core/cpu_turns.h). ACG2VEC_CPU_TURNS=0/1 decides by hand.
  const char* turns_env = std::getenv("ACG2VEC_CPU_TURNS");
  set_cpu_turns(turns_env && *turns_env ? std::string_view(turns_env) != "0" : threads >= cores);
  // The thread that runs every forward (runtime/compute.h) may have read the count already.
  set_compute_threads(threads);
  try {
    at::set_num_interop_threads(1);
  } catch (const std::exception&) {
    // Only settable before the first inter-op task; a second call keeps the first setting.
  }
  spdlog::debug("runtime: {} intra-op threads{}", threads,
               set_blas_threads ? ", OpenBLAS single-threaded" : " (BLAS is not OpenBLAS)");
}

int intra_op_threads() {
  // Asked where the forwards run: the compute thread keeps its own OpenMP setting.
  return on_compute_thread([] { return at::get_num_threads(); });
}

}  // namespace acg2vec::runtime
