#pragma once
// Runs a runtime::graph on libtorch. Everything that can be decided once happens at construction:
// op support check, Conv+BatchNormalization folding, fusion of exported GELU chains (into Gelu)
// and of MatMul + bias (into one GEMM), topological order (cycles are errors), pruning to the
// requested outputs, constant folding of subgraphs whose inputs are constants, static shape
// inference that folds shape arithmetic even with a dynamic batch (Shape -> Gather -> Concat ->
// Reshape becomes a constant Reshape target), kernel preparation (weights laid out once, e.g.
// channels-last convolution weights) and the last reader of every value, so intermediate
// tensors are freed as early as possible. run() is const and may be called from several
// threads at once. It runs under c10::InferenceMode; its outputs are inference tensors
// (read them freely; do not modify them in place outside InferenceMode).

#include "runtime/graph.h"
#include "runtime/ops.h"

#include <ATen/ATen.h>

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

namespace acg2vec::runtime {

/// Wall time per op type, summed over the runs that were given it (see executor::run_profiled).
struct op_profile {
  struct entry {
    double ms = 0;
    std::int64_t calls = 0;
  };
  std::map<std::string, entry> by_op;
  /// Whole runs: their wall time and steps, so that the time outside the kernels (the executor's
  /// own dispatch: argument passing, output checks, releases) is the difference.
  double run_ms = 0;
  std::int64_t runs = 0;
  std::int64_t steps = 0;
};

class executor {
 public:
  /// @brief Prepares g for execution; outputs may name any value of the graph (default: the
  /// graph outputs). Throws acg2vec::error (bad_parameter) for unsupported ops, cycles,
  /// dangling value names and kernels that reject their attributes.
  explicit executor(graph g, std::vector<std::string> outputs = {});

  /// @brief Runs on inputs given in graph input order; returns outputs in requested order.
  [[nodiscard]] std::vector<at::Tensor> run(const std::vector<at::Tensor>& inputs) const;
  /// @brief As run(), adding each step's wall time to profile under its op type (fused kernels
  /// are named by their fused type). Timing every step costs a clock read per node.
  [[nodiscard]] std::vector<at::Tensor> run_profiled(const std::vector<at::Tensor>& inputs, op_profile& profile) const;
  /// @brief Runs on inputs given by name; every graph input must be supplied.
  [[nodiscard]] std::map<std::string, at::Tensor> run(const std::map<std::string, at::Tensor>& inputs) const;

  [[nodiscard]] const std::vector<value_info>& inputs() const noexcept { return inputs_; }
  [[nodiscard]] const std::vector<value_info>& outputs() const noexcept { return outputs_; }
  /// @brief Node count per op type of the graph as loaded (before any folding).
  [[nodiscard]] const std::map<std::string, int>& op_histogram() const noexcept { return histogram_; }
  /// @brief Number of nodes that remain to run per call after folding and pruning.
  [[nodiscard]] std::size_t step_count() const noexcept { return steps_.size(); }
  /// @brief Kernel count per op type of what runs per call (after folding and pruning).
  [[nodiscard]] std::map<std::string, int> run_histogram() const;
  [[nodiscard]] std::int64_t opset() const noexcept { return opset_; }

 private:
  struct step {
    kernel fn;
    std::string label;             // "name (OpType)" for error messages
    std::string op_type;
    std::vector<int> inputs;       // slot per node input, -1 when omitted
    std::vector<int> outputs;      // slot per node output, -1 when unused
    std::vector<int> release;      // slots whose last reader is this step
    std::vector<bool> hand_over;   // per input: moved into the call (last read, read once here)
  };

  // Construction, one step each, in the order the constructor calls them.
  struct load_state;
  void name_nodes_and_check_support(graph& g);
  static std::vector<std::string> check_wiring(const graph& g, std::vector<std::string> requested);
  static void rewrite_graph(graph& g, const std::set<std::string>& keep);
  static std::vector<std::size_t> topological_order(const graph& g);
  void seed_values(const graph& g, load_state& st);
  void build_steps(graph& g, const std::vector<std::size_t>& order, load_state& st);
  std::unordered_set<int> prune_dead_steps();
  void place_constants(const load_state& st, const std::unordered_set<int>& live);
  void plan_releases();
  void describe_outputs(const graph& g, const std::vector<std::string>& requested, const load_state& st);

  void check_inputs(const std::vector<at::Tensor>& inputs) const;
  std::vector<at::Tensor> execute(std::vector<at::Tensor> feeds, op_profile* profile) const;

  std::int64_t opset_ = 17;
  std::vector<value_info> inputs_;
  std::vector<value_info> outputs_;
  std::map<std::string, int> histogram_;
  std::vector<step> steps_;
  std::size_t slot_count_ = 0;
  std::vector<std::pair<int, at::Tensor>> constants_;  // slot, value
  std::vector<int> input_slots_;
  std::vector<int> output_slots_;
};

}  // namespace acg2vec::runtime
