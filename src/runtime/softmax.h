// Row-wise softmax over contiguous float rows, for the fused Attention step (ops_fused.cpp) and
// Softmax on the last axis (ops_math.cpp).
//
// libtorch's softmax evaluates exp through Sleef (1 ulp) and makes four passes over each row; on
// a ViT's 576-wide attention rows it took twice as long as ONNX Runtime's. Here exp is a
// degree-6 polynomial after Cody-Waite range reduction (within 2 ulp of expf) in AVX-512 or
// AVX2+FMA, picked once from the CPU, with a scalar std::exp fallback.
#pragma once

#include <cstdint>

namespace acg2vec::runtime {

/// out[i, :] = softmax(in[i, :]) for `rows` rows of `n` contiguous floats (`out` may be `in`).
/// As at::softmax: a row holding NaN or +inf, or only -inf, comes out all NaN; -inf elements of
/// any other row come out 0. Runs on the calling thread.
void softmax_rows(const float* in, float* out, std::int64_t rows, std::int64_t n);

/// The variant softmax_rows runs on this CPU: "avx512", "avx2" or "scalar".
const char* softmax_kernel_name();

}  // namespace acg2vec::runtime
