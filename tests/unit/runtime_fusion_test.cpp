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

namespace {

bool has_step(const runtime::executor& ex, const std::string& op) { return ex.run_histogram().count(op) > 0; }

runtime::value_info any_output(const std::string& name) {
  runtime::value_info v = input(name, {});
  v.rank_known = false;
  return v;
}

// Q [b, h, m, d], K [b, h, n, d], V [b, h, n, dv] ->
//   [Mul(Q, q_scale) ->] MatMul(., Transpose(K)) -> [Mul/Div by s_scale] -> Softmax -> MatMul(., V) -> "Y"
struct attention_case {
  std::int64_t b, h, m, n, d, dv;
  double q_scale = 0;         // 0: no Mul on Q
  std::string score_op;       // "", "Mul" or "Div"
  double score_scale = 1;
  std::int64_t axis = -1;
  bool transposed_q = false;  // Q arrives as [b, m, h, d] and is transposed to [b, h, m, d]
};

runtime::graph attention_graph(const attention_case& c) {
  runtime::graph g;
  g.opset = 17;
  g.inputs.push_back(input("Q", c.transposed_q ? std::vector<std::int64_t>{c.b, c.m, c.h, c.d}
                                               : std::vector<std::int64_t>{c.b, c.h, c.m, c.d}));
  g.inputs.push_back(input("K", {c.b, c.h, c.n, c.d}));
  g.inputs.push_back(input("V", {c.b, c.h, c.n, c.dv}));
  std::string q = "Q";
  if (c.transposed_q) {
    g.nodes.push_back({"tq", "Transpose", "", {q}, {"qt"}, {{"perm", std::vector<std::int64_t>{0, 2, 1, 3}}}});
    q = "qt";
  }
  if (c.q_scale != 0) {
    g.initializers["qs"] = at::scalar_tensor(c.q_scale, at::kFloat);
    g.nodes.push_back({"mq", "Mul", "", {q, "qs"}, {"q_scaled"}, {}});
    q = "q_scaled";
  }
  g.nodes.push_back({"tk", "Transpose", "", {"K"}, {"kt"}, {{"perm", std::vector<std::int64_t>{0, 1, 3, 2}}}});
  g.nodes.push_back({"qk", "MatMul", "", {q, "kt"}, {"s"}, {}});
  std::string s = "s";
  if (!c.score_op.empty()) {
    g.initializers["ss"] = at::scalar_tensor(c.score_scale, at::kFloat);
    g.nodes.push_back({"ms", c.score_op, "", {s, "ss"}, {"s_scaled"}, {}});
    s = "s_scaled";
  }
  g.nodes.push_back({"sm", "Softmax", "", {s}, {"p"}, {{"axis", c.axis}}});
  g.nodes.push_back({"pv", "MatMul", "", {"p", "V"}, {"Y"}, {}});
  g.outputs.push_back(any_output("Y"));
  return g;
}

}  // namespace

TEST(RuntimeFusion, AttentionChainsRunAsOneStepWithTheUnfusedResult) {
  // Small and multi-block shapes (the kernel takes 32768 / n rows per block), power-of-two and
  // other scales, Q as a strided view; 1e-5 relative to the unfused graph: the scale moves into
  // the GEMM (one rounding instead of two) and the blocks' GEMMs may sum in another order.
  const std::vector<attention_case> cases{
      {1, 4, 20, 20, 16, 16, 0.25, "", 1, -1, false},
      {2, 3, 37, 29, 8, 5, 0, "Div", 2.8284271, -1, false},
      {2, 2, 150, 700, 16, 16, 0, "Mul", 0.3, -1, true},
      {1, 12, 197, 197, 64, 64, 0.125, "", 1, -1, true},
  };
  at::manual_seed(21);
  for (const attention_case& c : cases) {
    SCOPED_TRACE("m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) + " " + c.score_op);
    const runtime::graph g = attention_graph(c);
    runtime::executor fused(g);
    runtime::executor unfused(g, {"Y", "s"});
    EXPECT_TRUE(has_step(fused, "Attention"));
    EXPECT_FALSE(has_step(fused, "Softmax"));
    EXPECT_FALSE(has_step(fused, "MatMul"));
    EXPECT_EQ(has_step(fused, "Mul"), false);
    EXPECT_TRUE(has_step(unfused, "Softmax"));
    EXPECT_FALSE(has_step(unfused, "Attention"));
    const std::vector<at::Tensor> in{at::randn(g.inputs[0].shape), at::randn(g.inputs[1].shape),
                                     at::randn(g.inputs[2].shape)};
    const at::Tensor y = fused.run(in)[0];
    const at::Tensor y_unfused = unfused.run(in)[0];
    // Independent reference: libtorch ops on the inputs.
    at::Tensor q = c.transposed_q ? in[0].transpose(1, 2) : in[0];
    if (c.q_scale != 0) q = q * c.q_scale;
    at::Tensor s = at::matmul(q, in[1].transpose(-2, -1));
    if (c.score_op == "Mul") s = s * c.score_scale;
    if (c.score_op == "Div") s = s / c.score_scale;
    const at::Tensor ref = at::matmul(at::softmax(s, -1), in[2]);
    ASSERT_EQ(y.sizes(), ref.sizes());
    EXPECT_LE(max_rel(y, y_unfused), 1e-5);
    EXPECT_LE(max_rel(y, ref), 1e-5);
  }
}

TEST(RuntimeFusion, AttentionWithBroadcastBatchOrDoubleTakesThePlainPath) {
  // K shared by every head ([b, 1, n, d]): the blocked kernel wants equal batch dimensions and
  // falls back to libtorch's matmul / softmax inside the fused step.
  runtime::graph g = attention_graph({2, 3, 9, 11, 4, 4, 0, "", 1, -1, false});
  g.inputs[1].shape = {2, 1, 11, 4};
  runtime::executor ex(g);
  EXPECT_TRUE(has_step(ex, "Attention"));
  at::manual_seed(22);
  const at::Tensor q = at::randn({2, 3, 9, 4}), k = at::randn({2, 1, 11, 4}), v = at::randn({2, 3, 11, 4});
  const at::Tensor ref = at::matmul(at::softmax(at::matmul(q, k.transpose(-2, -1)), -1), v);
  EXPECT_LE(max_rel(ex.run(std::vector<at::Tensor>{q, k, v})[0], ref), 1e-5);
  runtime::graph gd = g;
  for (auto& in : gd.inputs) in.dtype = at::kDouble;
  runtime::executor exd(gd);
  EXPECT_TRUE(has_step(exd, "Attention"));
  const std::vector<at::Tensor> d{q.to(at::kDouble), k.to(at::kDouble), v.to(at::kDouble)};
  EXPECT_LE(max_rel(exd.run(d)[0], ref.to(at::kDouble)), 1e-5);
}

TEST(RuntimeFusion, AttentionNearMissesAreLeftAlone) {
  auto base = [] { return attention_case{1, 2, 6, 7, 4, 4, 0, "", 1, -1, false}; };
  {  // Softmax over another axis.
    attention_case c = base();
    c.axis = 2;
    runtime::executor ex(attention_graph(c));
    EXPECT_FALSE(has_step(ex, "Attention"));
    EXPECT_TRUE(has_step(ex, "Softmax"));
  }
  {  // Scores scaled by a tensor, not a scalar (a mask would look like this).
    runtime::graph g = attention_graph(base());
    g.initializers["mask"] = at::rand({7});
    g.nodes.insert(g.nodes.begin() + 2, runtime::node{"mask", "Mul", "", {"s", "mask"}, {"s_masked"}, {}});
    g.nodes[3].inputs[0] = "s_masked";
    runtime::executor ex(g);
    EXPECT_FALSE(has_step(ex, "Attention"));
    EXPECT_TRUE(has_step(ex, "Softmax"));
  }
  {  // An additive bias between the GEMM and the softmax.
    runtime::graph g = attention_graph(base());
    g.inputs.push_back(input("B", {1, 2, 6, 7}));
    g.nodes.insert(g.nodes.begin() + 2, runtime::node{"bias", "Add", "", {"s", "B"}, {"s_biased"}, {}});
    g.nodes[3].inputs[0] = "s_biased";
    runtime::executor ex(g);
    EXPECT_FALSE(has_step(ex, "Attention"));
  }
  {  // The probabilities have a second reader.
    runtime::graph g = attention_graph(base());
    g.nodes.push_back({"extra", "ReduceSum", "", {"p"}, {"P_sum"}, {}});
    g.outputs.push_back(any_output("P_sum"));
    runtime::executor ex(g);
    EXPECT_FALSE(has_step(ex, "Attention"));
  }
  {  // The probabilities are the second MatMul's right operand.
    runtime::graph g = attention_graph(base());
    g.nodes.back().inputs = {"V", "p"};
    g.inputs[2].shape = {1, 2, 4, 6};
    runtime::executor ex(g);
    EXPECT_FALSE(has_step(ex, "Attention"));
  }
}

TEST(RuntimeFusion, GemmActivationsRunInPlaceOnTheGemmResult) {
  at::manual_seed(23);
  const at::Tensor w = at::randn({16, 24}) * 0.3, b = at::randn({24});
  for (const std::string act : {"Relu", "Gelu", "GeluTanh", "Sigmoid"}) {
    SCOPED_TRACE(act);
    runtime::graph g;
    g.inputs.push_back(input("X", {2, 5, 16}));
    g.initializers["W"] = w;
    g.initializers["B"] = b;
    g.nodes.push_back({"mm", "MatMul", "", {"X", "W"}, {"m"}, {}});
    g.nodes.push_back({"add", "Add", "", {"m", "B"}, {"a"}, {}});
    std::map<std::string, runtime::attribute> attrs;
    if (act == "GeluTanh") attrs["approximate"] = std::string("tanh");
    g.nodes.push_back({"act", act == "GeluTanh" ? "Gelu" : act, "", {"a"}, {"Y"}, attrs});
    g.outputs.push_back(any_output("Y"));
    runtime::executor fused(g);
    runtime::executor unfused(g, {"Y", "a"});
    const std::string op = act == "GeluTanh" ? "Gelu" : act;
    if (act == "Sigmoid") {  // not absorbed: stays a step of its own
      EXPECT_TRUE(has_step(fused, "MatMulAdd"));
      EXPECT_TRUE(has_step(fused, "Sigmoid"));
    } else {
      EXPECT_EQ(fused.run_histogram().size(), 1u);
      EXPECT_TRUE(has_step(fused, "MatMulAdd+" + op));
    }
    EXPECT_FALSE(has_step(unfused, "MatMulAdd+" + op));
    const at::Tensor x = at::randn({2, 5, 16});
    const at::Tensor y = fused.run(std::vector<at::Tensor>{x})[0];
    const at::Tensor pre = at::matmul(x, w) + b;
    const at::Tensor ref = act == "Relu"       ? at::relu(pre)
                           : act == "Gelu"     ? at::gelu(pre)
                           : act == "GeluTanh" ? at::gelu(pre, "tanh")
                                               : at::sigmoid(pre);
    EXPECT_LE(max_rel(y, unfused.run(std::vector<at::Tensor>{x})[0]), 1e-6);
    EXPECT_LE(max_rel(y, ref), 1e-5);
  }
  {  // The GEMM result has a second reader: nothing is absorbed.
    runtime::graph g;
    g.inputs.push_back(input("X", {3, 16}));
    g.initializers["W"] = w;
    g.initializers["B"] = b;
    g.nodes.push_back({"mm", "MatMul", "", {"X", "W"}, {"m"}, {}});
    g.nodes.push_back({"add", "Add", "", {"m", "B"}, {"a"}, {}});
    g.nodes.push_back({"act", "Relu", "", {"a"}, {"r"}, {}});
    g.nodes.push_back({"sum", "Add", "", {"a", "r"}, {"Y"}, {}});
    g.outputs.push_back(any_output("Y"));
    runtime::executor ex(g);
    EXPECT_TRUE(has_step(ex, "MatMulAdd"));
    EXPECT_TRUE(has_step(ex, "Relu"));
    const at::Tensor x = at::randn({3, 16});
    const at::Tensor a = at::addmm(b, x, w);
    EXPECT_LE(max_rel(ex.run(std::vector<at::Tensor>{x})[0], a + at::relu(a)), 1e-5);
  }
}

namespace {

// torch.onnx's LayerNorm before opset 17: X [2, 7, 24] -> ... -> "Y"; `tweak` makes near misses.
runtime::graph decomposed_layer_norm(const at::Tensor& gamma, const at::Tensor& beta, double eps,
                                     const std::string& tweak = "") {
  runtime::graph g;
  g.opset = 13;
  g.inputs.push_back(input("X", {2, 7, 24}));
  g.initializers["two"] = at::scalar_tensor(tweak == "pow3" ? 3.0 : 2.0, at::kFloat);
  g.initializers["eps"] = at::scalar_tensor(eps, at::kFloat);
  g.initializers["gamma"] = gamma;
  g.initializers["beta"] = beta;
  const std::vector<std::int64_t> axes{tweak == "axis1" ? 1 : -1};
  g.nodes.push_back({"mean", "ReduceMean", "", {"X"}, {"m"}, {{"axes", axes}}});
  g.nodes.push_back({"sub", "Sub", "", {"X", "m"}, {"d"}, {}});
  g.nodes.push_back({"pow", "Pow", "", {"d", "two"}, {"p"}, {}});
  g.nodes.push_back({"var", "ReduceMean", "", {"p"}, {"v"}, {{"axes", std::vector<std::int64_t>{-1}}}});
  g.nodes.push_back({"addeps", "Add", "", {"v", "eps"}, {"ve"}, {}});
  g.nodes.push_back({"sqrt", "Sqrt", "", {"ve"}, {"s"}, {}});
  g.nodes.push_back({"div", "Div", "", {"d", "s"}, {"n"}, {}});
  g.nodes.push_back({"mul", "Mul", "", {"n", "gamma"}, {"scaled"}, {}});
  g.nodes.push_back({"add", "Add", "", {"beta", "scaled"}, {"Y"}, {}});
  g.outputs.push_back(any_output("Y"));
  if (tweak == "d_read_twice") {
    g.nodes.push_back({"extra", "Abs", "", {"d"}, {"D"}, {}});
    g.outputs.push_back(any_output("D"));
  }
  return g;
}

}  // namespace

TEST(RuntimeFusion, DecomposedLayerNormBecomesOneStep) {
  at::manual_seed(24);
  const at::Tensor gamma = at::randn({24}), beta = at::randn({24});
  const runtime::graph g = decomposed_layer_norm(gamma, beta, 1e-6);
  runtime::executor fused(g);
  runtime::executor unfused(g, {"Y", "d"});
  EXPECT_EQ(fused.run_histogram().size(), 1u);
  EXPECT_TRUE(has_step(fused, "LayerNormalization"));
  EXPECT_FALSE(has_step(unfused, "LayerNormalization"));
  const at::Tensor x = at::randn({2, 7, 24}) * 3 + 1;
  const at::Tensor y = fused.run(std::vector<at::Tensor>{x})[0];
  // 1e-5: libtorch's layer_norm computes the variance in one pass (Welford), the chain in two.
  EXPECT_LE(max_rel(y, unfused.run(std::vector<at::Tensor>{x})[0]), 1e-5);
  EXPECT_LE(max_rel(y, at::layer_norm(x, {24}, gamma, beta, 1e-6)), 1e-5);
  for (const std::string tweak : {"pow3", "axis1", "d_read_twice"}) {
    SCOPED_TRACE(tweak);
    runtime::executor near_miss(decomposed_layer_norm(gamma, beta, 1e-6, tweak));
    EXPECT_FALSE(has_step(near_miss, "LayerNormalization"));
    EXPECT_TRUE(has_step(near_miss, "Sqrt"));
  }
}
