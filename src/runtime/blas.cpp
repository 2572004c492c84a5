#include "runtime/blas.h"

#include <dlfcn.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace acg2vec::runtime {

namespace {

// Set beside OPENBLAS_CORETYPE when prepare_process chose it, so that reports can tell the
// process's own choice from a user's.
constexpr const char* kChosenMarker = "ACG2VEC_BLAS_CORE";

// libgomp reads its wait policy once, when it loads. Idle OpenMP workers spin by default (300k
// rounds) and steal the cores that the HTTP, batcher and decode threads need: ResNet-50 at batch
// 1 on 2 busy cores ran 2.6 items/s. Not spinning at all (OMP_WAIT_POLICY=PASSIVE) fixed that but
// cost 25 % on a quiet machine, where a worker put to sleep between two kernels is woken by a
// futex every time. Spinning kOpenmpSpin rounds gave the quiet machine's full speed (23.6
// items/s, as fully active; passive 18.1) and 92 % of passive's under load (9.4 vs 10.2;
// BENCHMARKS.md). An explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
constexpr const char* kOpenmpSpin = "10000";

// An OpenBLAS worker that has finished its share of a GEMM calls sched_yield in a loop for 2^N
// cycles (N = 28 by default, about 0.1 s) before it sleeps. A served model runs a GEMM every few
// milliseconds, so its worker never sleeps: profiling `acg2vec ingest` of a small model on 2 cores,
// that thread took 14 % of all CPU samples, yielding, beside the decoders. 2^20 cycles (a few
// hundred microseconds) still covers the gap between the GEMMs of one forward (model-only speed
// unchanged within noise) and made the same ingest 20 % faster (BENCHMARKS.md). An explicit
// OPENBLAS_THREAD_TIMEOUT wins.
constexpr const char* kOpenblasTimeout = "20";

std::string read_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon == std::string::npos) return {};
      auto value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  }
  return {};
}

const char* env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

std::string library_of(void* symbol) {
  Dl_info info{};
  if (symbol != nullptr && ::dladdr(symbol, &info) != 0 && info.dli_fname != nullptr) return info.dli_fname;
  return {};
}

}  // namespace

cpu_features detect_cpu_features() {
  cpu_features f;
#if defined(__x86_64__) || defined(__i386__)
  // libgcc's checks include the OS's XGETBV support for the AVX and AVX-512 register state, so a
  // kernel or hypervisor that disables AVX-512 reads as "no AVX-512".
  __builtin_cpu_init();
  f.vendor = __builtin_cpu_is("intel") ? "intel" : __builtin_cpu_is("amd") ? "amd" : "other";
  f.avx = __builtin_cpu_supports("avx");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl");
#else
  f.vendor = "other";
#endif
  f.model = read_model_name();
  return f;
}

std::string openblas_core_for(const cpu_features& cpu) {
  // Measured on an AMD EPYC (family 26, AVX-512), one thread, sgemm 768^3: SkylakeX 192 GFLOP/s,
  // Cooperlake 194 (same sgemm kernel), Haswell 100, Zen 100, Prescott 38. SkylakeX is the
  // AVX-512 core every OpenBLAS since 0.3.0 knows. Zen uses Haswell's GEMM kernel with blocking
  // for Zen's caches, so it is the AVX2 choice on AMD and never slower there than Haswell.
  if (cpu.avx512) return "SkylakeX";
  if (cpu.avx2 && cpu.fma) return cpu.vendor == "amd" ? "Zen" : "Haswell";
  if (cpu.avx) return "Sandybridge";
  return {};
}

bool is_vector_core(const std::string& core) {
  static constexpr std::array<const char*, 5> kVector = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"};
  for (const char* name : kVector) {
    if (::strcasecmp(core.c_str(), name) == 0) return true;
  }
  return false;
}

blas_info current_blas() {
  blas_info b;
  using text_fn = char* (*)();
  auto get_config = reinterpret_cast<text_fn>(::dlsym(RTLD_DEFAULT, "openblas_get_config"));
  auto get_core = reinterpret_cast<text_fn>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (get_config != nullptr && get_core != nullptr) {
    b.openblas = true;
    b.config = get_config();
    b.core = get_core();
    b.library = library_of(reinterpret_cast<void*>(get_config));
    using int_fn = int (*)();
    if (auto timeout = reinterpret_cast<int_fn>(::dlsym(RTLD_DEFAULT, "openblas_thread_timeout")))
      b.thread_timeout = timeout();
    const char* set = env_or_null("OPENBLAS_CORETYPE");
    const char* mine = env_or_null(kChosenMarker);
    if (set == nullptr) {
      b.origin = "OpenBLAS";
    } else if (mine != nullptr && std::strcmp(set, mine) == 0) {
      b.origin = "CPU features";
    } else {
      b.origin = "OPENBLAS_CORETYPE";
    }
  } else {
    b.library = library_of(::dlsym(RTLD_DEFAULT, "sgemm_"));
    if (b.library.empty()) b.library = library_of(::dlsym(RTLD_DEFAULT, "cblas_sgemm"));
  }
  return b;
}

std::string describe_blas() {
  auto b = current_blas();
  if (!b.openblas) {
    return fmt::format("BLAS: {} (not OpenBLAS; kernel not reported)", b.library.empty() ? "none found" : b.library);
  }
  std::string why;
  if (b.origin == "CPU features") {
    why = "chosen from CPU features";
  } else if (b.origin == "OPENBLAS_CORETYPE") {
    why = "set by OPENBLAS_CORETYPE";
  } else {
    why = "OpenBLAS's own detection";
  }
  auto cpu = detect_cpu_features();
  std::string simd = cpu.avx512 ? "avx512" : cpu.avx2 ? "avx2" : cpu.avx ? "avx" : "sse";
  // OpenBLAS clamps the timeout to [4, 30] when it reads it.
  const int timeout = b.thread_timeout > 0 ? std::clamp(b.thread_timeout, 4, 30) : 28;
  return fmt::format("BLAS: {} [{}], kernel {} ({}; CPU {}, {}), idle threads sleep after 2^{} cycles", b.config,
                     b.library, b.core, why, cpu.model.empty() ? cpu.vendor : cpu.model, simd, timeout);
}

bool warn_if_generic_blas() {
  auto b = current_blas();
  if (!b.openblas) return false;
  auto cpu = detect_cpu_features();
  if (!(cpu.avx2 && cpu.fma) || is_vector_core(b.core)) return false;
  spdlog::warn(
      "BLAS: OpenBLAS runs its generic '{}' GEMM kernel on a CPU with AVX2 (matrix products 3-5x slower); "
      "unset OPENBLAS_CORETYPE or set it to {}",
      b.core, openblas_core_for(cpu));
  return true;
}

void prepare_process(char** argv) {
  bool changed = false;
  if (env_or_null("OMP_WAIT_POLICY") == nullptr && env_or_null("GOMP_SPINCOUNT") == nullptr) {
    ::setenv("GOMP_SPINCOUNT", kOpenmpSpin, 1);
    changed = true;
  }
  if (env_or_null("OPENBLAS_THREAD_TIMEOUT") == nullptr) {
    ::setenv("OPENBLAS_THREAD_TIMEOUT", kOpenblasTimeout, 1);
    changed = true;
  }
  if (env_or_null("OPENBLAS_CORETYPE") == nullptr) {
    auto core = openblas_core_for(detect_cpu_features());
    if (!core.empty()) {
      ::setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
      ::setenv(kChosenMarker, core.c_str(), 1);
      changed = true;
    }
  }
  if (!changed || argv == nullptr) return;
  ::execv("/proc/self/exe", argv);
  // If the restart is impossible the process goes on with what the libraries chose when they
  // loaded; current_blas() reports the kernel actually in use either way.
}

}  // namespace acg2vec::runtime
