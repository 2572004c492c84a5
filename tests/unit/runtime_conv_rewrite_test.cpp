// Convolutions that fused_conv.cpp runs as a different convolution plus a copy: a ConvTranspose
// whose stride divides its kernel (a k/s convolution, depth-to-space and a crop) and a stride-1
// convolution to at most four channels (a 1x1 convolution per tap and a gather). Checked against
// libtorch's own conv_transpose2d / conv2d on random weights, fp32, within 1e-5 of the largest
// output magnitude (the summation order differs).
#include "runtime/executor.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace acg2vec;

namespace {

runtime::value_info input(const std::string& name, std::vector<std::int64_t> shape) {
  runtime::value_info v;
  v.name = name;
  v.shape = std::move(shape);
  return v;
}

double max_rel(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-12);
}

}  // namespace

namespace {

// A ConvTranspose whose stride divides its kernel runs as a convolution with kernel k/s, a
// depth-to-space copy and a crop (fused_conv.cpp); these cases cover the pads that crop inside a
// phase, pads of a whole phase or more, asymmetric pads, output_padding, unequal strides, odd and
// non-square inputs, a batch of two and the k == s case that needs no crop.
struct transpose_case {
  std::int64_t cin, cout, kh, kw, sh, sw;
  std::vector<std::int64_t> pads;  // ONNX order: top, left, bottom, right
  std::vector<std::int64_t> output_padding;
  std::int64_t batch, h, w;
};

at::Tensor transpose_reference(const transpose_case& t, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const std::vector<std::int64_t> s{t.sh, t.sw}, one{1, 1}, zero{0, 0};
  if (t.pads[0] == t.pads[2] && t.pads[1] == t.pads[3])
    return at::conv_transpose2d(x, w, b, s, std::vector<std::int64_t>{t.pads[0], t.pads[1]}, t.output_padding, 1, one);
  // libtorch pads symmetrically: the full result, cropped as ONNX defines it.
  const at::Tensor full = at::conv_transpose2d(x, w, b, s, zero, zero, 1, one);
  return full.slice(2, t.pads[0], full.size(2) - (t.pads[2] - t.output_padding[0]))
      .slice(3, t.pads[1], full.size(3) - (t.pads[3] - t.output_padding[1]));
}

}  // namespace

TEST(RuntimeConvRewrite, StridedTransposedConvolutionsMatchTorch) {
  const std::vector<transpose_case> cases{
      {16, 3, 4, 4, 2, 2, {3, 3, 3, 3}, {0, 0}, 1, 12, 12},   // Real-CUGAN's output layer (64->3)
      {64, 3, 4, 4, 2, 2, {3, 3, 3, 3}, {0, 0}, 1, 13, 9},    // its channel count, odd sizes
      {8, 5, 4, 4, 2, 2, {1, 1, 1, 1}, {0, 0}, 1, 11, 7},
      {8, 5, 4, 4, 2, 2, {0, 0, 0, 0}, {0, 0}, 2, 6, 5},
      {8, 5, 4, 4, 2, 2, {1, 1, 1, 1}, {1, 1}, 1, 7, 8},      // output_padding
      {8, 4, 4, 4, 2, 2, {3, 1, 0, 2}, {0, 0}, 1, 9, 10},     // asymmetric
      {8, 4, 4, 4, 2, 2, {5, 6, 5, 4}, {0, 0}, 1, 9, 10},     // pads beyond a whole phase
      {6, 7, 6, 6, 3, 3, {2, 2, 2, 2}, {0, 0}, 1, 8, 7},
      {6, 7, 3, 3, 3, 3, {1, 0, 2, 1}, {0, 0}, 1, 5, 6},      // k == s with pads
      {6, 7, 4, 3, 2, 1, {1, 1, 2, 1}, {0, 0}, 1, 7, 9},      // unequal strides
      {16, 8, 2, 2, 2, 2, {0, 0, 0, 0}, {0, 0}, 1, 9, 11},    // k == s, no crop
  };
  at::manual_seed(17);
  for (const transpose_case& t : cases) {
    SCOPED_TRACE(::testing::Message() << "k" << t.kh << "x" << t.kw << " s" << t.sh << "x" << t.sw << " pads "
                                      << t.pads[0] << "," << t.pads[1] << "," << t.pads[2] << "," << t.pads[3]
                                      << " op " << t.output_padding[0] << " in " << t.cin << "x" << t.h << "x" << t.w);
    for (bool fused_tail : {false, true}) {
      runtime::graph g;
      g.opset = 13;
      g.inputs.push_back(input("X", {t.batch, t.cin, t.h, t.w}));
      const at::Tensor w = at::randn({t.cin, t.cout, t.kh, t.kw}) * 0.2, b = at::randn({t.cout});
      g.initializers["W"] = w;
      g.initializers["B"] = b;
      runtime::node conv{"conv", "ConvTranspose", "", {"X", "W", "B"}, {fused_tail ? "c" : "Y"}, {}};
      conv.attributes["strides"] = std::vector<std::int64_t>{t.sh, t.sw};
      conv.attributes["pads"] = t.pads;
      conv.attributes["output_padding"] = t.output_padding;
      g.nodes.push_back(conv);
      const at::Tensor x = at::randn({t.batch, t.cin, t.h, t.w});
      const at::Tensor ref = transpose_reference(t, x, w, b);
      std::vector<at::Tensor> in{x};
      at::Tensor expected = ref;
      if (fused_tail) {
        // Add(R) + LeakyRelu after the shuffle, as one fused step.
        g.inputs.push_back(input("R", ref.sizes().vec()));
        g.nodes.push_back({"add", "Add", "", {"c", "R"}, {"a"}, {}});
        g.nodes.push_back({"act", "LeakyRelu", "", {"a"}, {"Y"}, {{"alpha", 0.1}}});
        in.push_back(at::randn(ref.sizes()));
        expected = at::leaky_relu(ref + in[1], 0.1);
      }
      g.outputs.push_back(input("Y", {}));
      g.outputs.back().rank_known = false;
      runtime::executor ex(g);
      EXPECT_EQ(ex.run_histogram().size(), 1u);
      EXPECT_EQ(ex.run_histogram().begin()->first, fused_tail ? "ConvTranspose+Add+LeakyRelu" : "ConvTranspose");
      const at::Tensor r_before = fused_tail ? in[1].clone() : at::Tensor();
      const at::Tensor y = ex.run(in)[0];
      ASSERT_EQ(y.sizes(), expected.sizes());
      // fp32, a different summation order than libtorch's: 1e-5 of the largest magnitude.
      EXPECT_LE(max_rel(y, expected), 1e-5);
      if (fused_tail) EXPECT_TRUE(at::equal(in[1], r_before));
    }
  }
}

// A stride-1 convolution to at most four channels runs as a 1x1 convolution to one channel per
// tap and a gather (fused_conv.cpp); checked against libtorch's convolution with the ONNX pads
// applied by constant_pad_nd, with and without a fused Add + LeakyRelu.
TEST(RuntimeConvRewrite, NarrowConvolutionsMatchTorch) {
  struct narrow_case {
    std::int64_t cin, cout, kh, kw;
    std::vector<std::int64_t> pads;  // top, left, bottom, right
    std::int64_t batch, h, w;
  };
  const std::vector<narrow_case> cases{
      {64, 3, 3, 3, {0, 0, 0, 0}, 1, 14, 14},  // Real-CUGAN's last layer (64->3, 3x3, no pads)
      {64, 3, 3, 3, {1, 1, 1, 1}, 1, 9, 13},
      {16, 1, 5, 5, {2, 2, 2, 2}, 2, 7, 6},
      {32, 4, 3, 3, {1, 0, 2, 1}, 1, 8, 11},   // asymmetric
      {16, 2, 1, 7, {0, 3, 0, 3}, 1, 5, 12},
      {16, 2, 3, 3, {4, 0, 0, 4}, 1, 6, 6},    // whole rows/columns of padding: bias only there
  };
  at::manual_seed(23);
  for (const narrow_case& t : cases) {
    SCOPED_TRACE(::testing::Message() << t.cin << "->" << t.cout << " k" << t.kh << "x" << t.kw << " pads " << t.pads[0]
                                      << "," << t.pads[1] << "," << t.pads[2] << "," << t.pads[3]);
    for (bool fused_tail : {false, true}) {
      runtime::graph g;
      g.opset = 13;
      g.inputs.push_back(input("X", {t.batch, t.cin, t.h, t.w}));
      const at::Tensor w = at::randn({t.cout, t.cin, t.kh, t.kw}) * 0.2, b = at::randn({t.cout});
      g.initializers["W"] = w;
      g.initializers["B"] = b;
      runtime::node conv{"conv", "Conv", "", {"X", "W", "B"}, {fused_tail ? "c" : "Y"}, {}};
      conv.attributes["pads"] = t.pads;
      g.nodes.push_back(conv);
      const at::Tensor x = at::randn({t.batch, t.cin, t.h, t.w});
      const at::Tensor ref = at::conv2d(at::constant_pad_nd(x, {t.pads[1], t.pads[3], t.pads[0], t.pads[2]}), w, b);
      std::vector<at::Tensor> in{x};
      at::Tensor expected = ref;
      if (fused_tail) {
        g.inputs.push_back(input("R", ref.sizes().vec()));
        g.nodes.push_back({"add", "Add", "", {"c", "R"}, {"a"}, {}});
        g.nodes.push_back({"act", "LeakyRelu", "", {"a"}, {"Y"}, {{"alpha", 0.1}}});
        in.push_back(at::randn(ref.sizes()));
        expected = at::leaky_relu(ref + in[1], 0.1);
      }
      g.outputs.push_back(input("Y", {}));
      g.outputs.back().rank_known = false;
      runtime::executor ex(g);
      EXPECT_EQ(ex.run_histogram().begin()->first, fused_tail ? "Conv+Add+LeakyRelu" : "Conv");
      const at::Tensor y = ex.run(in)[0];
      ASSERT_EQ(y.sizes(), expected.sizes());
      EXPECT_LE(max_rel(y, expected), 1e-5);  // fp32, another summation order
    }
  }
}

// Conv -> LeakyRelu -> Add(R) (the add after the activation, as Real-CUGAN's upsampling layers
// and skip connections are written) is one fused step on every path: the oneDNN convolution and
// deconvolution, the shuffled transposed convolution with and without a crop, and the narrow one.
TEST(RuntimeConvRewrite, AddAfterTheActivationFusesOnEveryPath) {
  struct case_t {
    bool transpose;
    std::int64_t cin, cout, k, stride, pad;
  };
  const std::vector<case_t> cases{
      {false, 8, 16, 3, 1, 1},   // oneDNN convolution, eltwise post-op, then the add
      {false, 32, 3, 3, 1, 1},   // narrow: gather, activation, add
      {true, 16, 8, 2, 2, 0},    // shuffle without a crop: the add in the copy
      {true, 16, 3, 4, 2, 3},    // shuffle with a crop (Real-CUGAN's output layer shape)
      {true, 8, 4, 3, 2, 1},     // oneDNN deconvolution
  };
  at::manual_seed(29);
  for (const case_t& t : cases) {
    SCOPED_TRACE(::testing::Message() << (t.transpose ? "ConvTranspose" : "Conv") << " " << t.cin << "->" << t.cout
                                      << " k" << t.k << " s" << t.stride << " p" << t.pad);
    const std::int64_t side = 11;
    runtime::graph g;
    g.opset = 13;
    g.inputs.push_back(input("X", {1, t.cin, side, side}));
    const at::Tensor w = (t.transpose ? at::randn({t.cin, t.cout, t.k, t.k}) : at::randn({t.cout, t.cin, t.k, t.k})) * 0.2;
    const at::Tensor b = at::randn({t.cout});
    g.initializers["W"] = w;
    g.initializers["B"] = b;
    runtime::node conv{"conv", t.transpose ? "ConvTranspose" : "Conv", "", {"X", "W", "B"}, {"c"}, {}};
    conv.attributes["strides"] = std::vector<std::int64_t>{t.stride, t.stride};
    conv.attributes["pads"] = std::vector<std::int64_t>{t.pad, t.pad, t.pad, t.pad};
    g.nodes.push_back(conv);
    const at::Tensor x = at::randn({1, t.cin, side, side});
    const std::vector<std::int64_t> s{t.stride, t.stride}, p{t.pad, t.pad}, one{1, 1}, zero{0, 0};
    const at::Tensor c = t.transpose ? at::conv_transpose2d(x, w, b, s, p, zero, 1, one) : at::conv2d(x, w, b, s, p, one, 1);
    g.inputs.push_back(input("R", c.sizes().vec()));
    g.nodes.push_back({"act", "LeakyRelu", "", {"c"}, {"l"}, {{"alpha", 0.1}}});
    g.nodes.push_back({"add", "Add", "", {"R", "l"}, {"Y"}, {}});
    g.outputs.push_back(input("Y", {}));
    g.outputs.back().rank_known = false;
    runtime::executor ex(g);
    const auto hist = ex.run_histogram();
    ASSERT_EQ(hist.size(), 1u);
    EXPECT_EQ(hist.begin()->first, std::string(t.transpose ? "ConvTranspose" : "Conv") + "+LeakyRelu+Add");
    const at::Tensor r = at::randn(c.sizes());
    const at::Tensor r_before = r.clone();
    const at::Tensor y = ex.run(std::vector<at::Tensor>{x, r})[0];
    const at::Tensor expected = at::leaky_relu(c, 0.1) + r;
    ASSERT_EQ(y.sizes(), expected.sizes());
    EXPECT_LE(max_rel(y, expected), 1e-5);
    EXPECT_TRUE(at::equal(r, r_before)) << "the caller's residual was written to";
    // A negative residual shows the order: Add -> LeakyRelu would scale it by 0.1 where the sum is
    // negative, so a swapped order fails the comparison above on these random values.
  }
}

// A Pad of zeros on the spatial axes feeding a Conv becomes the Conv's padding (fold_pads); every
// other Pad stays a step of its own. Each case is checked against libtorch's own pad + conv2d, and
// the step list says whether the Pad was folded.
TEST(RuntimeConvRewrite, ZeroPadsFoldIntoTheConvolutionThatReadsThem) {
  struct pad_case {
    const char* what;
    std::int64_t opset;
    std::vector<std::int64_t> pads;  // ONNX Pad order, rank 4: begins of N, C, H, W, then ends
    std::string mode;
    double value;
    std::vector<std::int64_t> conv_pads;  // top, left, bottom, right
    std::int64_t stride, group;
    bool pad_also_requested;
    bool folds;
  };
  const std::vector<pad_case> cases{
      {"TF SAME, stride 2, depthwise", 13, {0, 0, 0, 0, 0, 0, 1, 1}, "constant", 0.0, {0, 0, 0, 0}, 2, 8, false, true},
      {"ZeroPadding2D 3 before a padded 7x7", 13, {0, 0, 3, 3, 0, 0, 3, 3}, "constant", 0.0, {1, 0, 1, 2}, 2, 1, false, true},
      {"pads as an attribute (opset 9)", 9, {0, 0, 1, 0, 0, 0, 2, 1}, "constant", 0.0, {0, 0, 0, 0}, 1, 1, false, true},
      {"non-zero value", 13, {0, 0, 1, 1, 0, 0, 1, 1}, "constant", 0.5, {0, 0, 0, 0}, 1, 1, false, false},
      {"reflect mode", 13, {0, 0, 1, 1, 0, 0, 1, 1}, "reflect", 0.0, {0, 0, 0, 0}, 1, 1, false, false},
      {"channel padding", 13, {0, 1, 0, 0, 0, 1, 0, 0}, "constant", 0.0, {1, 1, 1, 1}, 1, 1, false, false},
      {"padded value also requested", 13, {0, 0, 1, 1, 0, 0, 1, 1}, "constant", 0.0, {0, 0, 0, 0}, 1, 1, true, false},
  };
  at::manual_seed(31);
  for (const pad_case& t : cases) {
    SCOPED_TRACE(t.what);
    const std::int64_t cin = 8, cout = 8, k = t.conv_pads[0] ? 7 : 3, h = 13, w_side = 10;
    const std::int64_t padded_c = cin + t.pads[1] + t.pads[5];
    runtime::graph g;
    g.opset = t.opset;
    g.inputs.push_back(input("X", {1, cin, h, w_side}));
    const at::Tensor w = at::randn({cout, padded_c / t.group, k, k}) * 0.2, b = at::randn({cout});
    g.initializers["W"] = w;
    g.initializers["B"] = b;
    runtime::node pad{"pad", "Pad", "", {"X"}, {"P"}, {{"mode", t.mode}}};
    if (t.opset >= 11) {
      g.initializers["pads"] = at::tensor(t.pads, at::kLong);
      pad.inputs.push_back("pads");
      if (t.value != 0.0) {
        g.initializers["value"] = at::tensor({static_cast<float>(t.value)});
        pad.inputs.push_back("value");
      }
    } else {
      pad.attributes["pads"] = t.pads;
      pad.attributes["value"] = t.value;
    }
    g.nodes.push_back(pad);
    runtime::node conv{"conv", "Conv", "", {"P", "W", "B"}, {"Y"}, {}};
    conv.attributes["strides"] = std::vector<std::int64_t>{t.stride, t.stride};
    conv.attributes["pads"] = t.conv_pads;
    conv.attributes["group"] = t.group;
    g.nodes.push_back(conv);
    g.outputs.push_back(input("Y", {}));
    g.outputs.back().rank_known = false;
    std::vector<std::string> outputs{"Y"};
    if (t.pad_also_requested) outputs.push_back("P");

    const at::Tensor x = at::randn({1, cin, h, w_side});
    // libtorch's pad lists the last axis first: W, H, C.
    const std::vector<std::int64_t> torch_pads{t.pads[3], t.pads[7], t.pads[2], t.pads[6], t.pads[1], t.pads[5]};
    const at::Tensor padded = t.mode == "reflect"
                                  ? at::reflection_pad2d(x, {t.pads[3], t.pads[7], t.pads[2], t.pads[6]})
                                  : at::constant_pad_nd(x, torch_pads, t.value);
    const at::Tensor expected = at::conv2d(
        at::constant_pad_nd(padded, {t.conv_pads[1], t.conv_pads[3], t.conv_pads[0], t.conv_pads[2]}), w, b,
        std::vector<std::int64_t>{t.stride, t.stride}, std::vector<std::int64_t>{0, 0}, std::vector<std::int64_t>{1, 1},
        t.group);

    runtime::executor ex(g, outputs);
    const auto steps = ex.run_histogram();
    EXPECT_EQ(steps.count("Pad"), t.folds ? 0u : 1u);
    const auto y = ex.run(std::vector<at::Tensor>{x});
    ASSERT_EQ(y[0].sizes(), expected.sizes());
    EXPECT_LE(max_rel(y[0], expected), 1e-5);  // fp32, another summation order
    if (t.pad_also_requested) EXPECT_TRUE(at::equal(y[1], padded));
  }
}
