#pragma once
// Load-time static shape inference, used by the executor to fold shape arithmetic
// (Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains) wherever the dimensions involved are
// known even though others (the batch) are not. Conservative: an op it does not model yields
// an unknown shape, never a guess.

#include "runtime/graph.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace acg2vec::runtime {

/// A value's shape as far as known at load time: rank known or not; each dimension is a
/// known size (>= 0), unknown (-1), or a symbol (<= -2) naming one dynamic input dimension, so
/// that e.g. the batch can be followed through the graph and cancelled in Reshape arithmetic.
struct static_shape {
  bool rank_known = false;
  std::vector<std::int64_t> dims;

  static static_shape of(const at::Tensor& t) { return {true, t.sizes().vec()}; }
  [[nodiscard]] bool fully_known() const {
    if (!rank_known) return false;
    for (auto d : dims)
      if (d < 0) return false;
    return true;
  }
};

/// An int64 scalar or vector whose elements are partly known at load time (e.g. Shape of a
/// tensor with a dynamic batch dimension).
struct partial_value {
  struct element {
    std::optional<std::int64_t> value;
    std::int64_t symbol = -1;  ///< the dimension symbol (<= -2) an unknown element equals, or -1
  };
  bool scalar = false;
  std::vector<element> values;
  at::ScalarType dtype = at::kLong;

  [[nodiscard]] bool fully_known() const {
    for (const auto& v : values)
      if (!v.value) return false;
    return true;
  }
  [[nodiscard]] at::Tensor to_tensor() const;
};

/// @brief Output shapes of n from what is known about its inputs (constants given where known).
std::vector<static_shape> infer_shapes(const node& n, std::int64_t opset, const std::vector<static_shape>& inputs,
                                       const std::vector<const at::Tensor*>& constants,
                                       const std::vector<const partial_value*>& partials = {});

/// @brief Partial int64 outputs of shape-arithmetic ops (Shape, Gather, Concat, Unsqueeze,
/// Squeeze, Slice, Cast, Add/Sub/Mul/Div) given partial or constant inputs; nullopt when n is
/// not such an op or nothing useful is known.
std::optional<partial_value> infer_partial(const node& n, std::int64_t opset, const std::vector<static_shape>& shapes,
                                           const std::vector<const partial_value*>& partials,
                                           const std::vector<const at::Tensor*>& constants);

/// @brief The output shape of a Reshape to dims (sizes, symbols, at most one -1 to infer).
static_shape resolve_reshape(const static_shape& input, std::vector<std::int64_t> dims);

/// @brief Rewrites a partially known Reshape target into a constant one using 0 (copy the
/// input dimension) and -1 (infer) for its dynamic entries; nullopt when that is not exact.
std::optional<std::vector<std::int64_t>> static_reshape_target(const static_shape& input, const partial_value& target,
                                                               bool allowzero);

}  // namespace acg2vec::runtime
