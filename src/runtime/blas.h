#pragma once
// Which BLAS runs the matrix products, and which of its kernels: chosen from the CPU's features
// (CPUID), never from a library's table of CPU models, and reported so it cannot change silently.
//
// OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernel when it is loaded, from a table
// of known CPU models; a model it does not know falls back to SSE3 ("Prescott") kernels that run
// GEMMs 3-5x slower. The only lever is the environment variable OPENBLAS_CORETYPE, read at load,
// so a process that wants the right kernel sets it and restarts itself (prepare_process).

#include <string>

namespace acg2vec::runtime {

/// @brief The SIMD features that decide the BLAS kernel (each also enabled by the OS).
struct cpu_features {
  std::string vendor;  ///< "intel", "amd" or "other"
  std::string model;   ///< /proc/cpuinfo "model name", or empty
  bool avx = false;
  bool avx2 = false;
  bool fma = false;
  bool avx512 = false;  ///< AVX-512 F, CD, BW, DQ and VL: what OpenBLAS's SkylakeX kernels use
};
[[nodiscard]] cpu_features detect_cpu_features();

/// @brief The OpenBLAS core (OPENBLAS_CORETYPE value) for these features: SkylakeX with AVX-512,
/// Zen on AMD with AVX2 (Haswell's GEMM kernel, Zen's blocking), Haswell with AVX2 + FMA,
/// Sandybridge with AVX only; empty where nothing better than OpenBLAS's own choice is known.
[[nodiscard]] std::string openblas_core_for(const cpu_features& cpu);

/// @brief True for an OpenBLAS core whose GEMM uses AVX2/FMA or AVX-512 (Haswell, Zen,
/// SkylakeX, Cooperlake, SapphireRapids); false for the SSE/AVX1 ("generic") ones.
[[nodiscard]] bool is_vector_core(const std::string& core);

/// @brief The BLAS that this process actually calls, found through the loaded symbols.
struct blas_info {
  bool openblas = false;
  std::string library;  ///< file of the library that defines sgemm_ (or openblas_get_config)
  std::string config;   ///< openblas_get_config(), e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ..."
  std::string core;     ///< openblas_get_corename(): the kernel in use, e.g. "SkylakeX"
  std::string origin;   ///< who chose the core: "CPU features", "OPENBLAS_CORETYPE", "OpenBLAS"
  /// openblas_thread_timeout(): an idle OpenBLAS thread yields for 2^N cycles before it sleeps
  /// (0: not set, OpenBLAS's built-in 2^28).
  int thread_timeout = 0;
};
[[nodiscard]] blas_info current_blas();

/// @brief One line for `version` and bench headers, e.g.
/// "BLAS: OpenBLAS 0.3.21 ... kernel SkylakeX (chosen from CPU features: avx512) [/usr/lib/...]".
[[nodiscard]] std::string describe_blas();

/// @brief Logs a warning when the GEMM kernel in use is generic although the CPU has AVX2.
/// Returns true when it warned.
bool warn_if_generic_blas();

/// @brief Sets, where the user has not, the environment that libraries read only when they are
/// loaded, and restarts the process (execv of /proc/self/exe with argv) once so they see it:
/// OPENBLAS_CORETYPE from openblas_core_for(), and a bounded OpenMP spin (GOMP_SPINCOUNT; see
/// blas.cpp for the measurement). Call first thing in main(); a library user's program gets
/// the same choice as the acg2vec binary. Returns only when no restart was needed or possible.
void prepare_process(char** argv);

}  // namespace acg2vec::runtime
