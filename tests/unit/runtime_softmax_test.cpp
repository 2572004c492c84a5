// The row softmax (runtime/softmax.h) against libtorch's at::softmax, an independent
// implementation (Sleef exp, its own passes), for every variant this CPU can run: scalar always,
// AVX2+FMA and AVX-512 where the CPU has them (a variant the CPU lacks is not called, and the
// test says which ran).
//
// Tolerance: |ours - libtorch| <= 2e-6 * max(|libtorch|, FLT_MIN) per output. That is 2e-6
// relative for every normal output; an output in the denormal range (exp(x - max) / sum below
// 1.2e-38) has only the absolute slack 2e-6 * FLT_MIN = 2.4e-44, about 17 denormal steps. NaN
// must be NaN exactly where libtorch's is; -inf inputs of rows with a finite max must give 0.
// Rows longer than a few thousand are compared with libtorch in double (double_reference): its
// float sum drifts.
#include "runtime/executor.h"
#include "runtime/softmax.h"
#include "runtime/softmax_kernels.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cfloat>
#include <cstdio>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace acg2vec;
namespace sd = acg2vec::runtime::softmax_detail;

namespace {

constexpr double tolerance = 2e-6;
const float inf = std::numeric_limits<float>::infinity();

struct variant {
  std::string name;
  sd::rows_fn fn;
};

std::vector<variant> available_variants() {
  std::vector<variant> v{{"scalar", sd::rows_scalar}};
  if (sd::cpu_has_avx2_fma()) v.push_back({"avx2", sd::rows_avx2});
  if (sd::cpu_has_avx512()) v.push_back({"avx512", sd::rows_avx512});
  v.push_back({std::string("dispatched(") + runtime::softmax_kernel_name() + ")", runtime::softmax_rows});
  return v;
}

// Rows of n floats, row-major.
at::Tensor reference(const at::Tensor& x) { return at::softmax(x, -1); }

// libtorch's softmax in double of the float differences x - max: what a float softmax would give
// with exact exp, sum and division. (The differences themselves are rounded to float in every
// float implementation, libtorch's included: 6e-8 of a difference of 30 is 2e-6 of its exp.)
at::Tensor double_reference(const at::Tensor& x) { return at::softmax((x - x.amax(-1, true)).to(at::kDouble), -1); }

// Worst |ours - ref| / max(|ref|, FLT_MIN) over the finite outputs; NaN-ness must agree.
double check_against_libtorch(const variant& v, const at::Tensor& x, const std::string& what) {
  const at::Tensor in = x.contiguous();
  const std::int64_t n = in.size(-1), rows = in.numel() / n;
  at::Tensor out = at::full_like(in, 12345.0F);  // stale values must not survive
  v.fn(in.data_ptr<float>(), out.data_ptr<float>(), rows, n);
  const at::Tensor ref = reference(in);
  const float* o = out.data_ptr<float>();
  const float* r = ref.data_ptr<float>();
  const float* xi = in.data_ptr<float>();
  double worst = 0;
  int reported = 0;
  for (std::int64_t i = 0; i < in.numel(); ++i) {
    if (std::isnan(r[i]) || std::isnan(o[i])) {
      EXPECT_EQ(std::isnan(r[i]), std::isnan(o[i]))
          << v.name << " " << what << " element " << i << ": ours " << o[i] << ", libtorch " << r[i];
      continue;
    }
    const double err = std::abs(static_cast<double>(o[i]) - r[i]) / std::max(std::abs(r[i]), FLT_MIN);
    worst = std::max(worst, err);
    if (err > tolerance && reported++ < 5)
      ADD_FAILURE() << v.name << " " << what << " n=" << n << " element " << i << " (x=" << xi[i] << "): ours "
                    << o[i] << ", libtorch " << r[i] << ", relative error " << err;
    if (xi[i] == -inf && !std::isnan(r[i])) EXPECT_EQ(o[i], 0.0F) << v.name << " " << what << " element " << i;
  }
  return worst;
}

const std::vector<std::int64_t> lengths{1, 2, 7, 15, 16, 17, 31, 33, 64, 577, 1000};

}  // namespace

TEST(RuntimeSoftmax, VariantsTheCpuHasMatchLibtorchOnRandomRows) {
  at::manual_seed(31);
  for (const variant& v : available_variants()) {
    double worst = 0;
    for (const std::int64_t n : lengths) {
      worst = std::max(worst, check_against_libtorch(v, at::randn({5, n}) * 3.0, "randn*3"));
      worst = std::max(worst, check_against_libtorch(v, at::rand({3, n}) * 20.0 - 10.0, "uniform(-10,10)"));
    }
    // Also shows which variants this machine ran.
    std::printf("[ softmax ] %-18s random rows: worst relative error %.3g\n", v.name.c_str(), worst);
    EXPECT_LE(worst, tolerance) << v.name;
  }
}

TEST(RuntimeSoftmax, LargeMagnitudesAndTheWholeExpRange) {
  at::manual_seed(32);
  for (const variant& v : available_variants()) {
    for (const std::int64_t n : lengths) {
      check_against_libtorch(v, at::randn({3, n}) * 80.0, "randn*80");
      check_against_libtorch(v, at::randn({3, n}) * 1e4, "randn*1e4");
      check_against_libtorch(v, at::rand({3, n}) * 160.0 + 1e4, "around +1e4");
      check_against_libtorch(v, at::rand({3, n}) * 160.0 - 1e4, "around -1e4");
    }
    // Differences to the max spread evenly over [-110, 0]: every exp argument the kernels see,
    // into the denormal outputs (below -87.3) and past the underflow to 0 (below -103.3).
    check_against_libtorch(v, at::linspace(-110.0, 0.0, 4099).reshape({1, 4099}), "linspace(-110,0)");
    check_against_libtorch(v, at::tensor({FLT_MAX, -FLT_MAX, 0.0F}).reshape({1, 3}), "+-FLT_MAX");
  }
}

TEST(RuntimeSoftmax, LongRowsAgainstLibtorchInDouble) {
  // Past a few thousand elements libtorch's own float row sum (one 16-lane accumulator) drifts by
  // 1e-6 relative and more, so long rows are held to the same 2e-6 against libtorch in double
  // (double_reference).
  at::manual_seed(37);
  for (const variant& v : available_variants()) {
    for (const std::int64_t n : {std::int64_t{4111}, std::int64_t{21349}, std::int64_t{100003}}) {
      const at::Tensor x = at::randn({2, n}) * 3.0;
      at::Tensor out = at::empty_like(x);
      v.fn(x.data_ptr<float>(), out.data_ptr<float>(), 2, n);
      const at::Tensor ref = double_reference(x);
      const double ours = ((out.to(at::kDouble) - ref).abs() / ref.abs().clamp_min(FLT_MIN)).max().item<double>();
      const double torch32 =
          ((at::softmax(x, -1).to(at::kDouble) - ref).abs() / ref.abs().clamp_min(FLT_MIN)).max().item<double>();
      std::printf("[ softmax ] %-18s n=%-6lld vs double: ours %.3g, libtorch float %.3g\n", v.name.c_str(),
                  static_cast<long long>(n), ours, torch32);
      EXPECT_LE(ours, tolerance) << v.name << " n=" << n;
    }
  }
}

TEST(RuntimeSoftmax, MaskedRowsGiveZerosAndAnAllMaskedRowIsNaNAsInLibtorch) {
  at::manual_seed(33);
  for (const variant& v : available_variants()) {
    for (const std::int64_t n : lengths) {
      at::Tensor x = at::randn({4, n}) * 4.0;
      x.masked_fill_(at::rand({4, n}) < 0.4, -inf);
      x[1].fill_(-inf);  // every element masked: libtorch gives NaN (max -inf, -inf - -inf)
      if (n > 1) x[2][n - 1] = -inf;  // the tail lanes
      check_against_libtorch(v, x, "masked");
      const at::Tensor in = x.contiguous();
      at::Tensor out = at::empty_like(in);
      v.fn(in.data_ptr<float>(), out.data_ptr<float>(), 4, n);
      EXPECT_TRUE(at::isnan(out[1]).all().item<bool>()) << v.name << " n=" << n;
      EXPECT_TRUE(at::isnan(reference(in)[1]).all().item<bool>()) << "libtorch changed its all -inf row; n=" << n;
    }
  }
}

TEST(RuntimeSoftmax, NaNAndPlusInfRowsMatchLibtorch) {
  at::manual_seed(34);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const variant& v : available_variants()) {
    for (const std::int64_t n : lengths) {
      for (const std::int64_t pos : {std::int64_t{0}, n / 2, n - 1}) {
        at::Tensor x = at::randn({3, n});
        x[0][pos] = nan;
        x[1][pos] = inf;
        x[2][pos] = -inf;
        x[2][n - 1 - pos] = nan;  // NaN beside -inf
        check_against_libtorch(v, x, "nan/inf at " + std::to_string(pos));
        // libtorch's answer for these rows is all NaN; so must ours be (not just where libtorch
        // agrees by chance).
        const at::Tensor in = x.contiguous();
        at::Tensor out = at::empty_like(in);
        v.fn(in.data_ptr<float>(), out.data_ptr<float>(), 3, n);
        EXPECT_TRUE(at::isnan(out).all().item<bool>()) << v.name << " n=" << n << " pos=" << pos;
      }
    }
  }
}

TEST(RuntimeSoftmax, InPlaceAndManyRows) {
  at::manual_seed(35);
  for (const variant& v : available_variants()) {
    const at::Tensor x = at::randn({300, 33}) * 5.0;
    const at::Tensor ref = reference(x);
    at::Tensor y = x.clone();
    v.fn(y.data_ptr<float>(), y.data_ptr<float>(), 300, 33);
    EXPECT_LE(((y - ref).abs() / ref.abs().clamp_min(FLT_MIN)).max().item<double>(), tolerance) << v.name;
    EXPECT_NEAR(y.sum(-1).sub(1).abs().max().item<double>(), 0.0, 1e-5) << v.name;
  }
}

namespace {

runtime::value_info input(const std::string& name, std::vector<std::int64_t> shape) {
  runtime::value_info v;
  v.name = name;
  v.shape = std::move(shape);
  return v;
}

runtime::graph softmax_graph(std::vector<std::int64_t> shape, std::int64_t axis, std::int64_t opset,
                             bool transpose_first) {
  runtime::graph g;
  g.opset = opset;
  g.inputs.push_back(input("X", shape));
  std::string x = "X";
  if (transpose_first) {  // a strided view reaches Softmax: libtorch's path
    g.nodes.push_back({"t", "Transpose", "", {x}, {"xt"}, {{"perm", std::vector<std::int64_t>{0, 2, 1}}}});
    x = "xt";
  }
  g.nodes.push_back({"sm", "Softmax", "", {x}, {"Y"}, {{"axis", axis}}});
  runtime::value_info y = input("Y", {});
  y.rank_known = false;
  g.outputs.push_back(y);
  return g;
}

}  // namespace

TEST(RuntimeSoftmax, SoftmaxOpOnTheLastAxisRunsTheRowKernelAndOtherAxesLibtorch) {
  at::manual_seed(36);
  const at::Tensor x = at::randn({2, 37, 577}) * 6.0;
  auto rel = [](const at::Tensor& a, const at::Tensor& b) {
    return ((a - b).abs() / b.abs().clamp_min(FLT_MIN)).max().item<double>();
  };
  {  // Last axis (-1 and 2 alike), contiguous float: the row kernel, bit for bit, parallel or not.
    for (const std::int64_t axis : {std::int64_t{-1}, std::int64_t{2}}) {
      runtime::executor ex(softmax_graph({2, 37, 577}, axis, 13, false));
      const at::Tensor y = ex.run(std::vector<at::Tensor>{x})[0];
      at::Tensor rows = at::empty_like(x);
      runtime::softmax_rows(x.data_ptr<float>(), rows.data_ptr<float>(), 2 * 37, 577);
      EXPECT_TRUE(at::equal(y, rows)) << "axis " << axis;
      EXPECT_LE(rel(y, at::softmax(x, -1)), tolerance);
    }
  }
  {  // Opset 11 coerces to 2-D at axis 1: [2, 37 * 577] rows, still the last axis.
    runtime::executor ex(softmax_graph({2, 37, 577}, 1, 11, false));
    const at::Tensor y = ex.run(std::vector<at::Tensor>{x})[0];
    // 21349-wide rows: against libtorch in double (see LongRowsAgainstLibtorchInDouble).
    const at::Tensor ref = double_reference(x.reshape({2, -1})).reshape(x.sizes());
    EXPECT_LE(rel(y.to(at::kDouble), ref), tolerance);
  }
  {  // Another axis, and a transposed (strided) input: libtorch's softmax.
    runtime::executor ex(softmax_graph({2, 37, 577}, 1, 13, false));
    EXPECT_LE(rel(ex.run(std::vector<at::Tensor>{x})[0], at::softmax(x, 1)), tolerance);
    runtime::executor ext(softmax_graph({2, 37, 577}, -1, 13, true));
    EXPECT_LE(rel(ext.run(std::vector<at::Tensor>{x})[0], at::softmax(x.transpose(1, 2), -1)), tolerance);
  }
  {  // Double stays on libtorch.
    runtime::graph gd = softmax_graph({2, 37, 577}, -1, 13, false);
    gd.inputs[0].dtype = at::kDouble;
    runtime::executor exd(gd);
    const at::Tensor xd = x.to(at::kDouble);
    EXPECT_LE(rel(exd.run(std::vector<at::Tensor>{xd})[0], at::softmax(xd, -1)), 1e-12);
  }
}
