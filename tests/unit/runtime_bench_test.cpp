// Manual timing of one ONNX file (not part of the suite; the product benchmark lives elsewhere):
//   ACG2VEC_BENCH_ONNX=model.onnx ACG2VEC_BENCH_BATCH=1 acg2vec_tests \
//     --gtest_also_run_disabled_tests --gtest_filter=RuntimeBench.*
#include "runtime/executor.h"
#include "runtime/onnx_loader.h"
#include "runtime/threads.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <iostream>

using namespace acg2vec;

TEST(RuntimeBench, DISABLED_OnnxFile) {
  const char* file = std::getenv("ACG2VEC_BENCH_ONNX");
  if (!file) GTEST_SKIP() << "set ACG2VEC_BENCH_ONNX";
  const int batch = std::getenv("ACG2VEC_BENCH_BATCH") ? std::atoi(std::getenv("ACG2VEC_BENCH_BATCH")) : 1;
  const int runs = std::getenv("ACG2VEC_BENCH_RUNS") ? std::atoi(std::getenv("ACG2VEC_BENCH_RUNS")) : 10;
  runtime::configure_threads(std::getenv("ACG2VEC_BENCH_THREADS") ? std::atoi(std::getenv("ACG2VEC_BENCH_THREADS")) : 0);
  auto t0 = std::chrono::steady_clock::now();
  runtime::executor ex(runtime::load_onnx(file));
  auto t1 = std::chrono::steady_clock::now();
  std::vector<at::Tensor> inputs;
  for (const auto& v : ex.inputs()) {
    std::vector<std::int64_t> shape = v.shape;
    for (auto& d : shape) d = d < 0 ? batch : d;
    inputs.push_back(v.dtype == at::kFloat ? at::randn(shape) : at::zeros(shape, v.dtype));
  }
  (void)ex.run(inputs);
  auto t2 = std::chrono::steady_clock::now();
  for (int i = 0; i < runs; ++i) (void)ex.run(inputs);
  auto t3 = std::chrono::steady_clock::now();
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  std::cout << "load " << ms(t0, t1) << " ms, first run " << ms(t1, t2) << " ms, " << ms(t2, t3) / runs
            << " ms/run at batch " << batch << " (" << 1000.0 * batch * runs / ms(t2, t3) << " items/s)\n";
}
