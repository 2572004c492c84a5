// Runs the official ONNX per-operator test cases (Debian's libonnx-testdata: model.onnx plus
// input_N.pb / output_N.pb produced by the ONNX reference implementation) for every operator the
// runtime claims. A case is run when all of its nodes use claimed operators; any mismatch or
// error fails the test, except for the variants excluded below with a reason.
//
// Tolerance: |ours - expected| <= 1e-6 + 1e-4 * |expected| element-wise, ten times tighter than ONNX's
// own backend test runner (rtol 1e-3); the absolute term covers values that are exactly zero in the
// reference but carry float32 rounding here. The few cases that need more are listed in
// looser_cases() with the bound they get and why. Every case prints the smallest rtol it would pass
// with when it exceeds 1e-5, so the bound can be seen to be earned. Shapes and dtypes must match
// exactly.

#include "core/error.h"
#include "runtime/executor.h"
#include "runtime/onnx_loader.h"
#include "runtime/ops.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace fs = std::filesystem;
using namespace acg2vec;

namespace {

fs::path testdata_dir() {
  if (const char* env = std::getenv("ACG2VEC_ONNX_TESTDATA")) return env;
  return "/usr/share/libonnx-testdata/data";
}

// Variants of claimed operators that the runtime deliberately does not implement.
const std::map<std::string, std::string>& excluded_cases() {
  static const std::map<std::string, std::string> cases = {
      {"test_cast_FLOAT_to_STRING", "string tensors are not supported"},
      {"test_cast_STRING_to_FLOAT", "string tensors are not supported"},
      {"test_castlike_FLOAT_to_STRING", "string tensors are not supported"},
      {"test_castlike_STRING_to_FLOAT", "string tensors are not supported"},
      {"test_castlike_FLOAT_to_STRING_expanded", "string tensors are not supported"},
      {"test_castlike_STRING_to_FLOAT_expanded", "string tensors are not supported"},
      {"test_cast_BFLOAT16_to_FLOAT", "the test data stores bfloat16 values as uint16 tensors"},
      {"test_cast_FLOAT_to_BFLOAT16", "the test data stores bfloat16 values as uint16 tensors"},
      {"test_castlike_BFLOAT16_to_FLOAT", "the test data stores bfloat16 values as uint16 tensors"},
      {"test_castlike_BFLOAT16_to_FLOAT_expanded", "the test data stores bfloat16 values as uint16 tensors"},
      {"test_castlike_FLOAT_to_BFLOAT16", "the test data stores bfloat16 values as uint16 tensors"},
      {"test_castlike_FLOAT_to_BFLOAT16_expanded", "the test data stores bfloat16 values as uint16 tensors"},
      {"test_identity_opt", "optional-typed values are not supported"},
      {"test_identity_sequence", "sequence-typed values are not supported"},
      {"test_batchnorm_epsilon_training_mode", "training mode (running statistics update) is not supported"},
      {"test_batchnorm_example_training_mode", "training mode (running statistics update) is not supported"},
      {"test_training_dropout", "training-mode dropout is random"},
      {"test_training_dropout_default", "training-mode dropout is random"},
      {"test_training_dropout_default_mask", "training-mode dropout is random"},
      {"test_training_dropout_mask", "training-mode dropout is random"},
      {"test_training_dropout_zero_ratio", "training-mode dropout is not supported"},
      {"test_training_dropout_zero_ratio_mask", "training-mode dropout is not supported"},
  };
  return cases;
}

constexpr double abs_tol = 1e-6;
constexpr double rel_tol = 1e-4;

// Cases whose reference values the runtime reproduces only to a looser relative bound, with why.
const std::map<std::string, std::pair<double, std::string>>& looser_cases() {
  static const std::string window_cancellation =
      "the expanded graph sums O(1) cosine terms in float32; near the window's ends the result is a small "
      "difference, so float32 cancellation (~6e-8 absolute) is large relative to it (measured up to 5.6e-4 "
      "relative; the window operators themselves are not claimed, only the Cos/Mul/Sub graph)";
  static const std::map<std::string, std::pair<double, std::string>> cases = {
      {"test_blackmanwindow_expanded", {1e-3, window_cancellation}},
      {"test_blackmanwindow_symmetric_expanded", {1e-3, window_cancellation}},
      {"test_hammingwindow_expanded", {1e-3, window_cancellation}},
      {"test_hammingwindow_symmetric_expanded", {1e-3, window_cancellation}},
      {"test_hannwindow_expanded", {1e-3, window_cancellation}},
      {"test_hannwindow_symmetric_expanded", {1e-3, window_cancellation}},
  };
  return cases;
}

std::vector<fs::path> numbered(const fs::path& dir, const std::string& prefix) {
  std::vector<std::pair<int, fs::path>> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && e.path().extension() == ".pb")
      found.emplace_back(std::stoi(name.substr(prefix.size())), e.path());
  }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> out;
  for (auto& [i, p] : found) out.push_back(p);
  return out;
}

std::string compare(const at::Tensor& ours, const at::Tensor& expected, double rtol, double* needed_rtol) {
  if (ours.scalar_type() != expected.scalar_type())
    return fmt::format("dtype {} != expected {}", c10::toString(ours.scalar_type()), c10::toString(expected.scalar_type()));
  if (ours.sizes() != expected.sizes())
    return fmt::format("shape [{}] != expected [{}]", fmt::join(ours.sizes(), ","), fmt::join(expected.sizes(), ","));
  if (expected.numel() == 0) return {};
  if (at::isFloatingType(expected.scalar_type())) {
    at::Tensor a = ours.to(at::kDouble), b = expected.to(at::kDouble);
    at::Tensor both_nan = at::isnan(a) & at::isnan(b);
    at::Tensor same_inf = at::isinf(b) & (a == b);
    at::Tensor close = (a - b).abs() <= (abs_tol + rtol * b.abs());
    at::Tensor ok = both_nan | same_inf | close;
    at::Tensor finite = at::isfinite(a) & at::isfinite(b);
    if (finite.any().item<bool>()) {
      // The relative bound this output needs: max over finite elements of (|a-b| - abs_tol) / |b|.
      at::Tensor need = ((a - b).abs() - abs_tol).clamp_min(0) / b.abs().clamp_min(1e-30);
      *needed_rtol = std::max(*needed_rtol, at::where(finite, need, at::zeros_like(need)).max().item<double>());
    }
    if (!ok.all().item<bool>()) {
      at::Tensor diff = at::where(ok, at::zeros_like(a), (a - b).abs());
      return fmt::format("max abs diff {} (at {} of {})", diff.max().item<double>(), diff.argmax().item<std::int64_t>(),
                         expected.numel());
    }
    return {};
  }
  if (!at::equal(ours, expected)) return "integer/bool values differ";
  return {};
}

// Runs every case directory under root (one suite of libonnx-testdata) and reports per operator.
int run_suite(const fs::path& root) {
  if (!fs::is_directory(root)) {
    ADD_FAILURE() << "libonnx-testdata not found at " << root
                  << " (install the Debian package or set ACG2VEC_ONNX_TESTDATA)";
    return 0;
  }
  const auto claimed_list = runtime::supported_ops();
  const std::set<std::string> claimed(claimed_list.begin(), claimed_list.end());

  std::vector<fs::path> cases;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) cases.push_back(e.path());
  std::sort(cases.begin(), cases.end());

  std::map<std::string, int> passed_per_op;
  std::map<std::string, int> unclaimed_ops;
  std::vector<std::string> failures;
  int passed = 0, excluded = 0, unclaimed = 0;
  for (const auto& dir : cases) {
    const std::string name = dir.filename().string();
    if (auto it = excluded_cases().find(name); it != excluded_cases().end()) {
      ++excluded;
      std::cout << "excluded " << name << ": " << it->second << "\n";
      continue;
    }
    onnx::ModelProto proto;
    {
      std::ifstream in(dir / "model.onnx", std::ios::binary);
      if (!proto.ParseFromIstream(&in)) {
        failures.push_back(name + ": model.onnx does not parse");
        continue;
      }
    }
    std::set<std::string> ops;
    bool all_claimed = true;
    for (const auto& n : proto.graph().node()) {
      ops.insert(n.op_type());
      const bool default_domain = n.domain().empty() || n.domain() == "ai.onnx";
      if (!default_domain || !claimed.count(n.op_type())) {
        all_claimed = false;
        ++unclaimed_ops[n.op_type()];
      }
    }
    if (!all_claimed) {
      ++unclaimed;
      continue;
    }
    const bool expanded = name.size() > 9 && name.substr(name.size() - 9) == "_expanded";
    const std::string credit = expanded || ops.size() != 1 ? "(multi-op/expanded)" : *ops.begin();
    try {
      runtime::onnx_load_options options;
      options.upcast_fp16 = false;
      runtime::executor ex(runtime::load_onnx(dir / "model.onnx", options));
      bool ok = true;
      double rtol = rel_tol;
      if (auto it = looser_cases().find(name); it != looser_cases().end()) rtol = it->second.first;
      double needed = 0;
      for (const auto& e : fs::directory_iterator(dir)) {
        if (!e.is_directory() || e.path().filename().string().rfind("test_data_set_", 0) != 0) continue;
        std::vector<at::Tensor> inputs;
        for (const auto& p : numbered(e.path(), "input_")) inputs.push_back(runtime::load_onnx_tensor(p));
        std::vector<at::Tensor> expected;
        for (const auto& p : numbered(e.path(), "output_")) expected.push_back(runtime::load_onnx_tensor(p));
        std::vector<at::Tensor> outputs = ex.run(inputs);
        if (outputs.size() != expected.size()) {
          failures.push_back(fmt::format("{}: {} outputs, expected {}", name, outputs.size(), expected.size()));
          ok = false;
          break;
        }
        for (std::size_t i = 0; i < outputs.size(); ++i) {
          std::string why = compare(outputs[i], expected[i], rtol, &needed);
          if (!why.empty()) {
            failures.push_back(fmt::format("{} ({}): output {}: {}", name, e.path().filename().string(), i, why));
            ok = false;
          }
        }
      }
      if (needed > 1e-5) std::cout << fmt::format("rtol needed by {}: {:.2e} (allowed {:.0e})\n", name, needed, rtol);
      if (ok) {
        ++passed;
        ++passed_per_op[credit];
      }
    } catch (const std::exception& e) {
      failures.push_back(fmt::format("{}: {}", name, e.what()));
    }
  }

  std::cout << "libonnx-testdata node cases passed per operator:\n";
  for (const auto& [op, n] : passed_per_op) std::cout << "  " << op << ": " << n << "\n";
  std::cout << fmt::format("total: {} passed, {} failed, {} excluded, {} not run (use unclaimed operators)\n", passed,
                           failures.size(), excluded, unclaimed);
  std::ostringstream un;
  for (const auto& [op, n] : unclaimed_ops) un << op << " ";
  std::cout << "unclaimed operators seen: " << un.str() << "\n";
  for (const auto& f : failures) ADD_FAILURE() << root.filename().string() << "/" << f;
  return passed;
}

}  // namespace

TEST(RuntimeOnnxNode, EveryCaseOfEveryClaimedOpPasses) {
  std::cout << "suite node (operator cases from the ONNX reference implementation)\n";
  EXPECT_GT(run_suite(testdata_dir() / "node"), 600);
}

TEST(RuntimeOnnxNode, PytorchExportedCasesPass) {
  // Graphs exported by torch.onnx from torch.nn modules and functional operators.
  std::cout << "suite pytorch-operator\n";
  EXPECT_GT(run_suite(testdata_dir() / "pytorch-operator"), 20);
  std::cout << "suite pytorch-converted\n";
  EXPECT_GT(run_suite(testdata_dir() / "pytorch-converted"), 50);
  std::cout << "suite simple\n";
  EXPECT_GT(run_suite(testdata_dir() / "simple"), 5);
}
