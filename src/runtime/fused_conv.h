#pragma once
// Convolutions run directly on oneDNN with their following element-wise work fused in.
//
// The executor's fusion pass (executor.cpp) rewrites Conv / ConvTranspose nodes into nodes of the
// fused domain with the same op type and attributes, plus:
//   - "fused_activation" (string): "", "Relu", "LeakyRelu", "Clip", "HardSwish", "Sigmoid",
//     "Tanh", "Gelu", "GeluTanh", "Swish", "Elu"; with "fused_alpha"/"fused_beta" (floats) for
//     LeakyRelu (alpha), Clip (min, max) and Elu (alpha);
//   - an optional fourth input, a tensor added to the convolution result before the activation
//     (a residual connection), or after it when "fused_add_after_activation" (int) is 1;
//   - "fused_label" (string): what --profile and run_histogram() call the step, e.g.
//     "Conv+Add+Relu".
// With constant 4-D float weights and a 4-D float input, the kernel creates a oneDNN
// convolution (or deconvolution) primitive per input shape, with the weights reordered once into
// the layout the primitive prefers, bias, and the add/activation as post-ops, so the result is
// written once. Anything else (other ranks or types, runtime weights, ConvTranspose with
// output_shape or SAME padding, a residual whose shape needs broadcasting) runs the plain
// kernels followed by the add and the activation in libtorch: same semantics, no speed-up.

#include "runtime/ops.h"

namespace acg2vec::runtime {

/// @brief Kernels of the fused domain's "Conv" and "ConvTranspose" (see above).
const kernel_registry& fused_conv_kernels();

/// @brief True when op_type (default domain) is an activation the fused convolution can apply.
bool fusable_activation(std::string_view op_type);

}  // namespace acg2vec::runtime
