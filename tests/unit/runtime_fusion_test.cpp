// The executor's convolution fusion (runtime/fused_conv.h): Conv / ConvTranspose followed by an
// Add and an activation run as one oneDNN primitive. Checked against the same graph run unfused
// (the intermediate requested as an output blocks every fusion) and against libtorch's own
// convolution on the same random weights.
#include "runtime/executor.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace acg2vec;

namespace {

struct act_case {
  std::string op;  // "Swish" builds x * Sigmoid(x)
  std::map<std::string, runtime::attribute> attributes;
};

runtime::value_info input(const std::string& name, std::vector<std::int64_t> shape) {
  runtime::value_info v;
  v.name = name;
  v.shape = std::move(shape);
  return v;
}

struct conv_case {
  bool transpose;
  std::int64_t cin, cout, k, stride, pad;
};

// X -> Conv -> "c" [-> Add(R) -> "a"] -> activation -> "Y"
runtime::graph make_graph(const conv_case& cc, const act_case& act, bool residual, std::int64_t side,
                          at::Tensor& w, at::Tensor& b) {
  runtime::graph g;
  g.opset = 13;
  g.inputs.push_back(input("X", {1, cc.cin, side, side}));
  w = cc.transpose ? at::randn({cc.cin, cc.cout, cc.k, cc.k}) * 0.2 : at::randn({cc.cout, cc.cin, cc.k, cc.k}) * 0.2;
  b = at::randn({cc.cout});
  g.initializers["W"] = w;
  g.initializers["B"] = b;
  runtime::node conv{"conv", cc.transpose ? "ConvTranspose" : "Conv", "", {"X", "W", "B"}, {"c"}, {}};
  conv.attributes["strides"] = std::vector<std::int64_t>{cc.stride, cc.stride};
  conv.attributes["pads"] = std::vector<std::int64_t>{cc.pad, cc.pad, cc.pad, cc.pad};
  g.nodes.push_back(conv);
  std::string x = "c";
  if (residual) {
    const std::int64_t out = cc.transpose ? (side - 1) * cc.stride + cc.k - 2 * cc.pad
                                          : (side + 2 * cc.pad - cc.k) / cc.stride + 1;
    g.inputs.push_back(input("R", {1, cc.cout, out, out}));
    g.nodes.push_back({"add", "Add", "", {"R", x}, {"a"}, {}});
    x = "a";
  }
  if (act.op == "Swish") {
    g.nodes.push_back({"sig", "Sigmoid", "", {x}, {"s"}, {}});
    g.nodes.push_back({"mul", "Mul", "", {x, "s"}, {"Y"}, {}});
  } else if (act.op == "Clip") {
    g.initializers["lo"] = at::scalar_tensor(0.0, at::kFloat);
    g.initializers["hi"] = at::scalar_tensor(0.5, at::kFloat);
    g.nodes.push_back({"act", "Clip", "", {x, "lo", "hi"}, {"Y"}, {}});
  } else {
    g.nodes.push_back({"act", act.op, "", {x}, {"Y"}, act.attributes});
  }
  g.outputs.push_back(input("Y", {}));
  g.outputs.back().rank_known = false;
  return g;
}

at::Tensor reference(const conv_case& cc, const act_case& act, const at::Tensor& x, const at::Tensor* r,
                     const at::Tensor& w, const at::Tensor& b) {
  const std::vector<std::int64_t> s{cc.stride, cc.stride}, p{cc.pad, cc.pad}, one{1, 1}, zero{0, 0};
  at::Tensor y = cc.transpose ? at::conv_transpose2d(x, w, b, s, p, zero, 1, one) : at::conv2d(x, w, b, s, p, one, 1);
  if (r) y = y + *r;
  if (act.op == "Relu") return at::relu(y);
  if (act.op == "LeakyRelu") return at::leaky_relu(y, std::get<double>(act.attributes.at("alpha")));
  if (act.op == "Clip") return at::clamp(y, 0.0, 0.5);
  if (act.op == "HardSwish") return at::hardswish(y);
  if (act.op == "Sigmoid") return at::sigmoid(y);
  if (act.op == "Tanh") return at::tanh(y);
  if (act.op == "Gelu") return at::gelu(y);
  if (act.op == "Elu") return at::elu(y, 0.7);
  if (act.op == "Swish") return y * at::sigmoid(y);
  ADD_FAILURE() << "no reference for " << act.op;
  return y;
}

double max_rel(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-12);
}

bool has_fused_step(const runtime::executor& ex) {
  for (const auto& [op, n] : ex.run_histogram())
    if (op.find('+') != std::string::npos) return true;
  return false;
}

}  // namespace

TEST(RuntimeFusion, FusedConvolutionsMatchTheUnfusedGraphAndTorch) {
  const std::vector<act_case> acts{{"Relu", {}},    {"LeakyRelu", {{"alpha", 0.1}}}, {"Clip", {}},
                                   {"HardSwish", {}}, {"Sigmoid", {}},               {"Tanh", {}},
                                   {"Gelu", {}},    {"Elu", {{"alpha", 0.7}}},       {"Swish", {}}};
  // Conv 3x3 with padding, Conv 2x2 stride 2, ConvTranspose 2x2 stride 2 (the 1x1 + depth-to-space
  // path), ConvTranspose 3x3 stride 2 pad 1 (oneDNN's deconvolution).
  const std::vector<conv_case> convs{{false, 8, 16, 3, 1, 1}, {false, 16, 8, 2, 2, 0}, {true, 16, 8, 2, 2, 0},
                                     {true, 8, 4, 3, 2, 1}};
  at::manual_seed(11);
  for (const conv_case& cc : convs) {
    for (const act_case& act : acts) {
      for (bool residual : {false, true}) {
        const std::string what = std::string(cc.transpose ? "ConvTranspose" : "Conv") + (residual ? "+Add+" : "+") + act.op;
        SCOPED_TRACE(what + " k" + std::to_string(cc.k));
        at::Tensor w, b;
        runtime::graph g = make_graph(cc, act, residual, 12, w, b);
        runtime::executor fused(g);
        runtime::executor unfused(g, {"Y", "c"});
        const auto hist = fused.run_histogram();
        EXPECT_EQ(hist.size(), 1u) << "everything fuses into one step";
        EXPECT_EQ(hist.begin()->first, what);
        EXPECT_FALSE(has_fused_step(unfused));
        std::vector<at::Tensor> in{at::randn({1, cc.cin, 12, 12})};
        if (residual) in.push_back(at::randn(g.inputs[1].shape));
        const at::Tensor r_before = residual ? in[1].clone() : at::Tensor();
        const at::Tensor y = fused.run(in)[0];
        const at::Tensor y_unfused = unfused.run(in)[0];
        const at::Tensor ref = reference(cc, act, in[0], residual ? &in[1] : nullptr, w, b);
        ASSERT_EQ(y.sizes(), ref.sizes());
        EXPECT_LE(max_rel(y, y_unfused), 1e-5);
        EXPECT_LE(max_rel(y, ref), 1e-4);  // a different convolution kernel: summation order differs
        if (residual) EXPECT_TRUE(at::equal(in[1], r_before)) << "the caller's residual was written to";
      }
    }
  }
}

TEST(RuntimeFusion, ConvolutionWithTwoReadersIsNotFused) {
  runtime::graph g;
  g.inputs.push_back(input("X", {1, 4, 9, 9}));
  at::manual_seed(3);
  const at::Tensor w = at::randn({6, 4, 3, 3}), b = at::randn({6});
  g.initializers["W"] = w;
  g.initializers["B"] = b;
  g.nodes.push_back({"conv", "Conv", "", {"X", "W", "B"}, {"c"}, {}});
  g.nodes.push_back({"relu", "Relu", "", {"c"}, {"r"}, {}});
  g.nodes.push_back({"add", "Add", "", {"c", "r"}, {"Y"}, {}});
  g.outputs.push_back(input("Y", {}));
  runtime::executor ex(g);
  EXPECT_FALSE(has_fused_step(ex));
  EXPECT_EQ(ex.run_histogram().count("Relu"), 1u);
  EXPECT_EQ(ex.run_histogram().count("Add"), 1u);
  const at::Tensor x = at::randn({1, 4, 9, 9});
  const at::Tensor c = at::conv2d(x, w, b);
  const at::Tensor y = ex.run(std::vector<at::Tensor>{x})[0];
  EXPECT_LE(max_rel(y, c + at::relu(c)), 1e-5);
}

TEST(RuntimeFusion, RequestedIntermediateIsNotFused) {
  runtime::graph g;
  g.inputs.push_back(input("X", {1, 4, 9, 9}));
  at::manual_seed(5);
  const at::Tensor w = at::randn({6, 4, 3, 3}), b = at::randn({6});
  g.initializers["W"] = w;
  g.initializers["B"] = b;
  g.nodes.push_back({"conv", "Conv", "", {"X", "W", "B"}, {"c"}, {}});
  g.nodes.push_back({"act", "LeakyRelu", "", {"c"}, {"Y"}, {{"alpha", 0.2}}});
  g.outputs.push_back(input("Y", {}));
  runtime::executor both(g, {"Y", "c"});
  EXPECT_FALSE(has_fused_step(both));
  const at::Tensor x = at::randn({1, 4, 9, 9});
  const auto out = both.run(std::vector<at::Tensor>{x});
  const at::Tensor c = at::conv2d(x, w, b);
  EXPECT_LE(max_rel(out[1], c), 1e-5);
  EXPECT_LE(max_rel(out[0], at::leaky_relu(c, 0.2)), 1e-5);
  runtime::executor only_y(g);
  EXPECT_EQ(only_y.run_histogram().count("Conv+LeakyRelu"), 1u);
}

TEST(RuntimeFusion, RuntimeWeightsAndOtherRanksTakeThePlainPath) {
  // Weights supplied at run time cannot be reordered at load: the fused node runs libtorch's
  // convolution, then the activation, with the same result.
  runtime::graph g;
  g.inputs.push_back(input("X", {1, 3, 7, 7}));
  g.inputs.push_back(input("W", {5, 3, 3, 3}));
  g.nodes.push_back({"conv", "Conv", "", {"X", "W"}, {"c"}, {}});
  g.nodes.push_back({"act", "Relu", "", {"c"}, {"Y"}, {}});
  g.outputs.push_back(input("Y", {}));
  runtime::executor ex(g);
  EXPECT_EQ(ex.run_histogram().count("Conv+Relu"), 1u);
  at::manual_seed(9);
  const at::Tensor x = at::randn({1, 3, 7, 7}), w = at::randn({5, 3, 3, 3});
  EXPECT_LE(max_rel(ex.run(std::vector<at::Tensor>{x, w})[0], at::relu(at::conv2d(x, w))), 1e-5);
  // A 1-D convolution (rank-3 input) with a constant weight.
  runtime::graph g1;
  g1.inputs.push_back(input("X", {2, 3, 10}));
  const at::Tensor w1 = at::randn({4, 3, 3});
  g1.initializers["W"] = w1;
  g1.nodes.push_back({"conv", "Conv", "", {"X", "W"}, {"c"}, {}});
  g1.nodes.push_back({"act", "Sigmoid", "", {"c"}, {"Y"}, {}});
  g1.outputs.push_back(input("Y", {}));
  runtime::executor ex1(g1);
  const at::Tensor x1 = at::randn({2, 3, 10});
  EXPECT_LE(max_rel(ex1.run(std::vector<at::Tensor>{x1})[0], at::sigmoid(at::conv1d(x1, w1))), 1e-5);
}
