// The variants behind softmax_rows (softmax.h), exposed so that tests can run each one the CPU
// supports rather than only the one the dispatcher picks.
#pragma once

#include <cstdint>

namespace acg2vec::runtime::softmax_detail {

using rows_fn = void (*)(const float* in, float* out, std::int64_t rows, std::int64_t n);

/// Portable: std::exp per element.
void rows_scalar(const float* in, float* out, std::int64_t rows, std::int64_t n);
/// Call only where cpu_has_avx2_fma() holds.
void rows_avx2(const float* in, float* out, std::int64_t rows, std::int64_t n);
/// Call only where cpu_has_avx512() holds.
void rows_avx512(const float* in, float* out, std::int64_t rows, std::int64_t n);

bool cpu_has_avx2_fma();
bool cpu_has_avx512();

}  // namespace acg2vec::runtime::softmax_detail
