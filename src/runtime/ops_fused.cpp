// Attention(Q, K^T, V; scale): the kernel of the node that fuse_attention (rewrites.cpp) makes
// from MatMul -> scale -> Softmax -> MatMul.
//
// Unfused, each head's [m, n] score matrix is written by one GEMM, read and written by Softmax
// and read again by the second GEMM: for a 24x24-token map with 4 heads that is 5.3 MB per
// image, four trips through memory. Here the rows of one head are taken a block at a time; the
// block's scores and probabilities stay in two per-thread buffers of at most 128 KiB each while
// both GEMMs and the softmax (softmax.h, our own: libtorch's took twice ORT's time) run on
// them, and only the [m, dv] result is written.
#include "core/error.h"
#include "runtime/ops.h"
#include "runtime/softmax.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <optional>
#include <vector>

namespace acg2vec::runtime {
namespace {

// Fortran BLAS sgemm (column-major), looked up in whatever BLAS libtorch loaded. Calling it
// directly avoids libtorch's per-call dispatch, which would cost more than a small block's GEMM.
using sgemm_fn = void (*)(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                          const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                          const float* beta, float* c, const int* ldc);

sgemm_fn find_sgemm() {
  static const sgemm_fn fn = reinterpret_cast<sgemm_fn>(::dlsym(RTLD_DEFAULT, "sgemm_"));
  return fn;
}

// A row-major matrix view for BLAS: rows of `cols` floats `ld` apart (trans = false), or
// columns of `rows` floats `ld` apart (trans = true, a transposed view such as K^T).
struct blas_view {
  bool trans = false;
  std::int64_t ld = 0;
};

// The layout of the last two dimensions, or nullopt when neither has unit stride.
std::optional<blas_view> layout_of(const at::Tensor& t) {
  const std::int64_t r = t.size(-2), c = t.size(-1), sr = t.stride(-2), sc = t.stride(-1);
  if ((sc == 1 || c == 1) && sr >= std::max<std::int64_t>(c, 1)) return blas_view{false, sr};
  if ((sr == 1 || r == 1) && sc >= std::max<std::int64_t>(r, 1)) return blas_view{true, sc};
  if (r == 1 && c == 1) return blas_view{false, 1};
  return std::nullopt;
}

// Row-major C[m, n] = alpha * A[m, k] B[k, n] (C contiguous rows, ldc apart) through the
// column-major BLAS: C^T = B^T A^T.
void gemm_rows(sgemm_fn sgemm, int m, int n, int k, float alpha, const float* a, const blas_view& la, const float* b,
               const blas_view& lb, float* c, int ldc) {
  const char ta = la.trans ? 'T' : 'N', tb = lb.trans ? 'T' : 'N';
  const int lda = static_cast<int>(la.ld), ldb = static_cast<int>(lb.ld);
  const float beta = 0.0F;
  sgemm(&tb, &ta, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}

// The storage offset (in elements) of every matrix of t, batch dimensions walked in row-major order.
std::vector<std::int64_t> matrix_offsets(const at::Tensor& t, std::int64_t count) {
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(count));
  const std::int64_t batch_dims = t.dim() - 2;
  std::vector<std::int64_t> index(static_cast<std::size_t>(batch_dims), 0);
  std::int64_t offset = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    offsets[static_cast<std::size_t>(i)] = offset;
    for (std::int64_t d = batch_dims - 1; d >= 0; --d) {
      auto& idx = index[static_cast<std::size_t>(d)];
      offset += t.stride(d);
      if (++idx < t.size(d)) break;
      offset -= idx * t.stride(d);
      idx = 0;
    }
  }
  return offsets;
}

// What the unfused nodes compute, for inputs the blocked path does not take (other types,
// broadcast batch dimensions, rank below 3).
at::Tensor attention_reference(const at::Tensor& q, const at::Tensor& kt, const at::Tensor& v, double scale) {
  at::Tensor s = at::matmul(q, kt);
  if (scale != 1.0) s.mul_(scale);
  return at::matmul(at::softmax(s, -1), v);
}

at::Tensor attention(at::Tensor q, at::Tensor kt, at::Tensor v, double scale) {
  const sgemm_fn sgemm = find_sgemm();
  if (!sgemm || q.scalar_type() != at::kFloat || kt.scalar_type() != at::kFloat || v.scalar_type() != at::kFloat ||
      q.dim() < 3 || kt.dim() != q.dim() || v.dim() != q.dim() || q.sizes().slice(0, q.dim() - 2) != kt.sizes().slice(0, q.dim() - 2) ||
      q.sizes().slice(0, q.dim() - 2) != v.sizes().slice(0, q.dim() - 2) || q.size(-1) != kt.size(-2) ||
      kt.size(-1) != v.size(-2) || q.numel() == 0 || kt.numel() == 0 || v.numel() == 0)
    return attention_reference(q, kt, v, scale);
  auto blas_ready = [](at::Tensor& t) {
    auto l = layout_of(t);
    if (!l || l->ld > INT_MAX) {
      t = t.contiguous();
      l = layout_of(t);
    }
    return *l;
  };
  const blas_view lq = blas_ready(q), lk = blas_ready(kt), lv = blas_ready(v);
  const std::int64_t m = q.size(-2), k = q.size(-1), n = kt.size(-1), dv = v.size(-1);
  if (m > INT_MAX || k > INT_MAX || n > INT_MAX || dv > INT_MAX) return attention_reference(q, kt, v, scale);
  std::vector<std::int64_t> out_shape(q.sizes().begin(), q.sizes().end() - 1);
  out_shape.push_back(dv);
  at::Tensor out = at::empty(out_shape, q.options());
  std::int64_t count = 1;
  for (std::int64_t d = 0; d < q.dim() - 2; ++d) count *= q.size(d);
  const std::vector<std::int64_t> oq = matrix_offsets(q, count), ok = matrix_offsets(kt, count),
                                  ov = matrix_offsets(v, count);
  // Rows per block: the block's scores fit 128 KiB (L2-resident with its probabilities).
  const std::int64_t rows = std::clamp<std::int64_t>((std::int64_t{32} << 10) / n, 8, m);
  const std::int64_t blocks = (m + rows - 1) / rows;
  const float* qp = q.data_ptr<float>();
  const float* kp = kt.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const float alpha = static_cast<float>(scale);
  at::parallel_for(0, count * blocks, 1, [&](std::int64_t begin, std::int64_t end) {
    // Uninitialised: every element is written by the GEMM before it is read.
    const std::unique_ptr<float[]> buffer(new float[static_cast<std::size_t>(2 * rows * n)]);
    float* scores = buffer.get();
    float* probs = scores + rows * n;
    for (std::int64_t t = begin; t < end; ++t) {
      const std::int64_t i = t / blocks, r0 = (t % blocks) * rows, r = std::min(rows, m - r0);
      const auto ii = static_cast<std::size_t>(i);
      // Row r0 of Q: r0 rows down, whichever way Q is stored.
      const float* qa = qp + oq[ii] + r0 * (lq.trans ? 1 : lq.ld);
      gemm_rows(sgemm, static_cast<int>(r), static_cast<int>(n), static_cast<int>(k), alpha, qa, lq, kp + ok[ii], lk,
                scores, static_cast<int>(n));
      // The block is r contiguous rows of n scores (ldc = n above).
      softmax_rows(scores, probs, r, n);
      gemm_rows(sgemm, static_cast<int>(r), static_cast<int>(dv), static_cast<int>(n), 1.0F, probs,
                blas_view{false, n}, vp + ov[ii], lv, op + (i * m + r0) * dv, static_cast<int>(dv));
    }
  });
  return out;
}

}  // namespace

void register_fused_attention(kernel_registry& r) {
  r["Attention"] = [](const build_context& ctx) -> kernel {
    const double scale = attr_float(ctx.n, "scale", 1.0);
    return [scale](const tensor_list& in) {
      return tensor_list{attention(need(in, 0, "Attention"), need(in, 1, "Attention"), need(in, 2, "Attention"), scale)};
    };
  };
}

}  // namespace acg2vec::runtime
