// The ncnn loader (.param text + .bin weights -> runtime IR): each layer type against the same
// computation written with ATen ops, every weight storage format, and the typed load errors.
// Real-CUGAN's real weights are exercised in upscaler_test.cpp and the PyTorch parity test.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/executor.h"
#include "runtime/ncnn_loader.h"

namespace acg2vec::runtime {
namespace {

// Builds a .bin the way ncnn's model writer lays it out.
struct bin_writer {
  std::string bytes;
  void u32(std::uint32_t v) { bytes.append(reinterpret_cast<const char*>(&v), 4); }
  void raw(const at::Tensor& t) {
    at::Tensor c = t.to(at::kFloat).contiguous();
    bytes.append(static_cast<const char*>(c.data_ptr()), static_cast<std::size_t>(c.numel()) * 4);
  }
  void fp32(const at::Tensor& t) { u32(0), raw(t); }
  void fp16(const at::Tensor& t) {
    u32(0x01306B47);
    at::Tensor h = t.to(at::kHalf).contiguous();
    bytes.append(static_cast<const char*>(h.data_ptr()), static_cast<std::size_t>(h.numel()) * 2);
    while (bytes.size() % 4) bytes.push_back('\0');
  }
  void int8(const at::Tensor& q) {
    u32(0x000D4B38);
    at::Tensor c = q.to(at::kChar).contiguous();
    bytes.append(static_cast<const char*>(c.data_ptr()), static_cast<std::size_t>(c.numel()));
    while (bytes.size() % 4) bytes.push_back('\0');
  }
  void table(const at::Tensor& values, const at::Tensor& indices) {
    u32(0x01010101);  // any tag whose bytes do not sum to 0 and is no other format
    raw(values);
    at::Tensor c = indices.to(at::kByte).contiguous();
    bytes.append(static_cast<const char*>(c.data_ptr()), static_cast<std::size_t>(c.numel()));
    while (bytes.size() % 4) bytes.push_back('\0');
  }
};

at::Tensor run1(const graph& g, const at::Tensor& x) {
  c10::InferenceMode guard;
  executor ex(g);
  return ex.run({x}).at(0);
}

void expect_close(const at::Tensor& a, const at::Tensor& b, double tol = 1e-5) {
  ASSERT_EQ(a.sizes(), b.sizes());
  const double diff = (a - b).abs().max().item<double>();
  EXPECT_LE(diff, tol * std::max(1.0, b.abs().max().item<double>())) << "max diff " << diff;
}

std::string expect_error(const std::string& param, const std::string& bin, errc code = errc::bad_parameter) {
  try {
    (void)load_ncnn_bytes(param, bin);
  } catch (const error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error for:\n" << param;
  return {};
}

TEST(NcnnLoader, ConvolutionWithLeakyReluAndPadding) {
  at::manual_seed(1);
  const at::Tensor w = at::randn({4, 3, 3, 3}), b = at::randn({4}), x = at::randn({1, 3, 9, 11});
  bin_writer bin;
  bin.fp32(w);
  bin.raw(b);
  const std::string param =
      "7767517\n2 2\nInput in0 0 1 in0\n"
      "Convolution conv 1 1 in0 out 0=4 1=3 3=2 4=1 5=1 6=108 9=2 -23310=1,2.000000e-01\n";
  const at::Tensor want = at::leaky_relu(at::conv2d(x, w, b, 2, 1), 0.2);
  expect_close(run1(load_ncnn_bytes(param, bin.bytes), x), want);
}

TEST(NcnnLoader, WeightStorageFormats) {
  at::manual_seed(2);
  const at::Tensor x = at::randn({1, 2, 6, 6});
  const std::string param =
      "7767517\n2 2\nInput in0 0 1 in0\nConvolution conv 1 1 in0 out 0=3 1=3 5=1 6=54\n";
  const at::Tensor w = at::randn({3, 2, 3, 3}), b = at::randn({3});
  {  // fp16: the weights as fp16 rounds them
    bin_writer bin;
    bin.fp16(w);
    bin.raw(b);
    expect_close(run1(load_ncnn_bytes(param, bin.bytes), x), at::conv2d(x, w.to(at::kHalf).to(at::kFloat), b));
  }
  {  // 8-bit indices into a 256-entry table
    const at::Tensor values = at::linspace(-1, 1, 256);
    const at::Tensor idx = at::randint(0, 256, {54}, at::kLong);
    bin_writer bin;
    bin.table(values, idx);
    bin.raw(b);
    expect_close(run1(load_ncnn_bytes(param, bin.bytes), x), at::conv2d(x, values.index_select(0, idx).reshape({3, 2, 3, 3}), b));
  }
  {  // int8 with per-output-channel scales: w = q / scale
    const at::Tensor q = at::randint(-127, 128, {3, 2, 3, 3}, at::kLong);
    const at::Tensor scales = at::tensor({50.f, 100.f, 25.f});
    bin_writer bin;
    bin.int8(q);
    bin.raw(b);
    bin.raw(scales);
    bin.raw(at::tensor({1.f}));  // input scale (ignored: fp32 arithmetic)
    const std::string p8 = "7767517\n2 2\nInput in0 0 1 in0\nConvolution conv 1 1 in0 out 0=3 1=3 5=1 6=54 8=1\n";
    const at::Tensor wd = q.to(at::kFloat) / scales.reshape({3, 1, 1, 1});
    expect_close(run1(load_ncnn_bytes(p8, bin.bytes), x), at::conv2d(x, wd, b));
  }
}

TEST(NcnnLoader, DeconvolutionAndDepthwise) {
  at::manual_seed(3);
  const at::Tensor x = at::randn({1, 4, 5, 7});
  const at::Tensor wd = at::randn({6, 4, 4, 4}), bd = at::randn({6});  // ncnn [out, in, kh, kw]
  const at::Tensor wg = at::randn({6, 1, 3, 3}), bg = at::randn({6});
  bin_writer bin;
  bin.fp32(wd);
  bin.raw(bd);
  bin.fp32(wg);
  bin.raw(bg);
  const std::string param =
      "7767517\n3 3\nInput in0 0 1 in0\n"
      "Deconvolution up 1 1 in0 a 0=6 1=4 3=2 4=3 5=1 6=384 9=1\n"
      "ConvolutionDepthWise dw 1 1 a out 0=6 1=3 4=1 5=1 6=54 7=6\n";
  at::Tensor y = at::relu(at::conv_transpose2d(x, wd.permute({1, 0, 2, 3}), bd, 2, 3));
  y = at::conv2d(y, wg, bg, 1, 1, 1, 6);
  expect_close(run1(load_ncnn_bytes(param, bin.bytes), x), y);
}

TEST(NcnnLoader, SqueezeExcitationBlockAndTensorLayers) {
  at::manual_seed(4);
  const at::Tensor x = at::randn({1, 8, 12, 12});
  const at::Tensor w1 = at::randn({2, 8}), b1 = at::randn({2}), w2 = at::randn({8, 2}), b2 = at::randn({8});
  bin_writer bin;
  bin.fp32(w1);
  bin.raw(b1);
  bin.fp32(w2);
  bin.raw(b2);
  const std::string param =
      "7767517\n16 22\n"
      "Input in0 0 1 in0\n"
      "Split sp 1 3 in0 s0 s1 s2\n"
      "Pooling gap 1 1 s0 g 0=1 4=1\n"
      "InnerProduct fc1 1 1 g f1 0=2 1=1 2=16 9=1\n"
      "InnerProduct fc2 1 1 f1 f2 0=8 1=1 2=16 9=4\n"
      "BinaryOp scale 2 1 s1 f2 se 0=2\n"
      "Crop crop 1 1 s2 c -23309=2,2,2 -23310=2,-2,-2 -23311=2,-2,-1\n"
      "Padding pad 1 1 c p 0=2 1=2 2=2 3=2 4=2\n"
      "Eltwise sum 2 1 se p e 0=1 -23301=2,1.0,-0.5\n"
      "ReLU lrelu 1 1 e r 0=1.000000e-01\n"
      "Pooling maxp 1 1 r m 0=0 1=2 2=2\n"
      "Interp up 1 1 m u 0=1 1=2.0 2=2.0\n"
      "Concat cat 2 1 u r k 0=0\n"
      "PixelShuffle ps 1 1 k q 0=2\n"
      "Sigmoid sig 1 1 q out\n"
      "Flatten flat 1 1 g flat_out\n";
  const graph g = load_ncnn_bytes(param, bin.bytes);
  ASSERT_EQ(g.outputs.size(), 2u);
  EXPECT_EQ(g.outputs[0].name, "out");
  EXPECT_EQ(g.outputs[1].name, "flat_out");
  c10::InferenceMode guard;
  executor ex(g);
  const auto outs = ex.run({x});
  using namespace at::indexing;
  const at::Tensor gap = x.mean({2, 3});
  const at::Tensor s = at::sigmoid(at::linear(at::relu(at::linear(gap, w1, b1)), w2, b2));
  const at::Tensor se = x * s.reshape({1, 8, 1, 1});
  const at::Tensor c = x.index({Slice(), Slice(), Slice(2, -2), Slice(2, -2)});
  const at::Tensor p = at::reflection_pad2d(c, {2, 2, 2, 2});
  const at::Tensor r = at::leaky_relu(se - 0.5 * p, 0.1);
  const at::Tensor m = at::max_pool2d(r, {2, 2}, {2, 2});
  const at::Tensor u = at::upsample_nearest2d(m, {12, 12});
  const at::Tensor k = at::cat({u, r}, 1);
  const at::Tensor q = at::pixel_shuffle(k, 2);
  expect_close(outs[0], at::sigmoid(q));
  expect_close(outs[1], gap);
}

TEST(NcnnLoader, ReshapeAndScalarBinaryOp) {
  const at::Tensor x = at::arange(24, at::kFloat).reshape({1, 2, 3, 4});
  const std::string param =
      "7767517\n4 4\nInput in0 0 1 in0\n"
      "Reshape r 1 1 in0 a 0=6 1=4\n"
      "BinaryOp sub 1 1 a b 0=7 1=1 2=1.0\n"
      "Reshape back 1 1 b out 0=4 1=3 2=2\n";
  expect_close(run1(load_ncnn_bytes(param, ""), x), 1.0 - x);
}

TEST(NcnnLoader, InterpToFixedSizePaddingAndEltwiseMaxProd) {
  at::manual_seed(5);
  const at::Tensor x = at::randn({1, 3, 5, 7});
  const std::string param =
      "7767517\n7 9\nInput in0 0 1 in0\nSplit sp 1 4 in0 a b c c2\n"
      "Interp up 1 1 a u 0=2 3=9 4=11\n"
      "Padding pad 1 1 b p 0=1 1=2 2=3 3=0 4=0 5=1.500000e+00\n"
      "Eltwise mx 2 1 c c2 m 0=2\n"
      "Split sp2 1 2 m m1 m2\n"
      "Eltwise prod 2 1 m1 m2 out 0=0\n";
  const graph g = load_ncnn_bytes(param, "");
  c10::InferenceMode guard;
  executor ex(g);
  const auto outs = ex.run({x});
  ASSERT_EQ(outs.size(), 3u);
  expect_close(outs[0], at::upsample_bilinear2d(x, {9, 11}, false));
  expect_close(outs[1], at::constant_pad_nd(x, {3, 0, 1, 2}, 1.5));
  expect_close(outs[2], x * x);
}

TEST(NcnnLoader, TypedErrors) {
  const std::string ok_head = "7767517\n2 2\nInput in0 0 1 in0\n";
  EXPECT_NE(expect_error("7767518\n1 1\nInput in0 0 1 in0\n", "").find("magic"), std::string::npos);
  EXPECT_NE(expect_error("", "").find("magic"), std::string::npos);
  // An unknown layer names its type and its name.
  auto msg = expect_error(ok_head + "Swish act0 1 1 in0 out\n", "");
  EXPECT_NE(msg.find("Swish"), std::string::npos) << msg;
  EXPECT_NE(msg.find("act0"), std::string::npos) << msg;
  // Truncated weights, and weights left over.
  const std::string conv = ok_head + "Convolution c 1 1 in0 out 0=2 1=1 5=0 6=6\n";
  bin_writer full;
  full.fp32(at::ones({6}));
  msg = expect_error(conv, full.bytes.substr(0, 20));
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  msg = expect_error(conv, full.bytes + "abcd");
  EXPECT_NE(msg.find("left"), std::string::npos) << msg;
  EXPECT_NO_THROW((void)load_ncnn_bytes(conv, full.bytes));
  // Structure.
  expect_error("7767517\n3 3\nInput in0 0 1 in0\n", "");                                   // fewer layers
  expect_error(ok_head + "ReLU r 1 1 nowhere out\n", "");                                    // dangling bottom
  expect_error("7767517\n2 2\nInput a 0 1 in0\nReLU a 1 1 in0 out\n", "");                   // duplicate name
  expect_error(ok_head + "Crop c 1 1 in0 out -23309=3,1,1\n", "");                           // array length
  expect_error(ok_head + "ReLU r 1 1 in0 out 0=abc\n", "");                                  // not a number
  expect_error(ok_head + "ReLU r 1 1 in0 out 0\n", "");                                      // not key=value
  expect_error(ok_head + "ReLU r 9 1 in0 out\n", "");                                        // counts vs line
  expect_error(ok_head + "Convolution c 1 1 in0 out 0=2 1=1 6=5\n", "");                     // weight size
  expect_error(ok_head + "Convolution c 1 1 in0 out 0=2 1=0 6=6\n", "");                     // kernel 0
  expect_error(ok_head + "BinaryOp b 1 1 in0 out 0=42 1=1\n", "");                           // op type
  expect_error("7767517\n99999999 1\n", "");                                                 // counts
  // A NaN weight is refused.
  bin_writer nan;
  nan.fp32(at::full({6}, NAN));
  expect_error(conv, nan.bytes);
  // Missing files are not_found.
  EXPECT_THROW((void)load_ncnn("/nonexistent/x.param", "/nonexistent/x.bin"), error);
}

}  // namespace
}  // namespace acg2vec::runtime
