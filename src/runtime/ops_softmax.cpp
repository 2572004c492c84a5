// Softmax on the last axis of a contiguous float CPU tensor, split over the intra-op threads by
// rows, on the row kernel of softmax.h (about three times libtorch's speed on AVX-512); any other
// axis, type or layout keeps libtorch's softmax.
#include "runtime/ops.h"
#include "runtime/softmax.h"

#include <ATen/Parallel.h>

#include <algorithm>

namespace acg2vec::runtime {

at::Tensor softmax_along(const at::Tensor& x, std::int64_t axis) {
  if (x.scalar_type() != at::kFloat || !x.device().is_cpu() || x.dim() == 0 || axis != x.dim() - 1 ||
      !x.is_contiguous() || x.numel() == 0)
    return at::softmax(x, axis);
  const std::int64_t n = x.size(-1), rows = x.numel() / n;
  at::Tensor y = at::empty(x.sizes(), x.options());
  const float* in = x.data_ptr<float>();
  float* out = y.data_ptr<float>();
  // About 32K elements per task, so that a small tensor stays on the calling thread.
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 15) / n);
  at::parallel_for(0, rows, grain, [&](std::int64_t begin, std::int64_t end) {
    softmax_rows(in + begin * n, out + begin * n, end - begin, n);
  });
  return y;
}

}  // namespace acg2vec::runtime
