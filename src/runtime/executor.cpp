#include "runtime/executor.h"

#include "core/error.h"
#include "runtime/block_cache.h"
#include "runtime/fused_conv.h"
#include "runtime/rewrites.h"
#include "runtime/shapes.h"

#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fmt/ranges.h>
#include <deque>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace acg2vec::runtime {
namespace {

std::string label_of(const node& n) { return fmt::format("'{}' ({})", n.name, n.op_type); }

std::string first_line(std::string_view s) {
  auto pos = s.find('\n');
  return std::string(pos == std::string_view::npos ? s : s.substr(0, pos));
}

// Runs f, turning libtorch and std exceptions into one-line acg2vec errors that name the node.
template <class F>
auto guarded(const std::string& label, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const error& e) {
    throw error(e.code(), fmt::format("node {}: {}", label, e.what()));
  } catch (const c10::Error& e) {
    throw error(errc::bad_parameter, fmt::format("node {}: {}", label, first_line(e.what_without_backtrace())));
  } catch (const std::bad_alloc&) {
    throw error(errc::too_large, fmt::format("node {}: out of memory", label));
  } catch (const std::exception& e) {
    throw error(errc::bad_parameter, fmt::format("node {}: {}", label, first_line(e.what())));
  }
}

}  // namespace

// What construction knows about every value while it builds the steps.
struct executor::load_state {
  std::unordered_map<std::string, at::Tensor> constant_values;  ///< initializers and folded values
  std::unordered_map<std::string, int> slot_of;                 ///< value -> run-time slot
  std::unordered_map<std::string, static_shape> shapes;         ///< static shapes, for folding
  std::unordered_map<std::string, partial_value> partials;      ///< partly known shape values
  int slot(const std::string& name) {
    auto [it, inserted] = slot_of.emplace(name, static_cast<int>(slot_of.size()));
    return it->second;
  }
};

executor::executor(graph g, std::vector<std::string> requested) : opset_(g.opset), inputs_(g.inputs) {
  c10::InferenceMode inference;
  install_block_cache();
  // Names and support first, so that the errors a user sees are about the model, not its wiring.
  name_nodes_and_check_support(g);
  requested = check_wiring(g, std::move(requested));
  const std::set<std::string> keep(requested.begin(), requested.end());
  rewrite_graph(g, keep);
  const std::vector<std::size_t> order = topological_order(g);
  load_state st;
  seed_values(g, st);
  build_steps(g, order, st);
  for (const auto& name : requested) output_slots_.push_back(st.slot(name));
  const std::unordered_set<int> live = prune_dead_steps();
  place_constants(st, live);
  plan_releases();
  describe_outputs(g, requested, st);
  spdlog::debug("runtime: graph '{}' has {} nodes, {} run per call", g.name, g.nodes.size(), steps_.size());
}

void executor::name_nodes_and_check_support(graph& g) {
  const kernel_registry& registry = kernels();
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    node& n = g.nodes[i];
    if (n.name.empty()) n.name = fmt::format("{}_{}", n.op_type, i);
    ++histogram_[n.op_type];
  }
  for (const node& n : g.nodes) {
    if (!is_default_domain(n.domain))
      fail(errc::bad_parameter, "unsupported operator {} (domain '{}') in node '{}' at opset {}", n.op_type, n.domain,
           n.name, g.opset);
    if (!registry.count(n.op_type))
      fail(errc::bad_parameter, "unsupported operator {} in node '{}' at opset {}", n.op_type, n.name, g.opset);
  }
}

std::vector<std::string> executor::check_wiring(const graph& g, std::vector<std::string> requested) {
  std::unordered_set<std::string> sources;
  for (const auto& v : g.inputs) {
    if (!sources.insert(v.name).second) fail(errc::bad_parameter, "graph input '{}' is declared twice", v.name);
  }
  for (const auto& [name, t] : g.initializers) {
    if (!t.defined()) fail(errc::bad_parameter, "initializer '{}' has no data", name);
    sources.insert(name);
  }
  std::unordered_map<std::string, std::size_t> producer;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& out : g.nodes[i].outputs) {
      if (out.empty()) continue;
      if (sources.count(out) || !producer.emplace(out, i).second)
        fail(errc::bad_parameter, "value '{}' is produced more than once (node '{}')", out, g.nodes[i].name);
    }
  }
  for (const node& n : g.nodes) {
    for (const auto& in : n.inputs) {
      if (!in.empty() && !sources.count(in) && !producer.count(in))
        fail(errc::bad_parameter, "node {} reads '{}', which no input, initializer or node provides", label_of(n), in);
    }
  }

  if (requested.empty())
    for (const auto& v : g.outputs) requested.push_back(v.name);
  if (requested.empty()) fail(errc::bad_parameter, "graph '{}' has no outputs", g.name);
  for (const auto& name : requested) {
    if (!sources.count(name) && !producer.count(name))
      fail(errc::bad_parameter, "requested output '{}' is not a value of the graph", name);
  }
  return requested;
}

// Rewrites that make fewer, larger steps; they see only what the requested values need.
void executor::rewrite_graph(graph& g, const std::set<std::string>& keep) {
  // Graph inputs override initializers of the same name (ONNX IR < 4 lists weights as inputs).
  for (const auto& v : g.inputs) g.initializers.erase(v.name);
  // Only the nodes a kept value depends on run. This comes before anything counts readers: a
  // converter may give every layer a named view (the Keras loader's NHWC Transposes) that nothing
  // runs, and such a reader would stop a BatchNormalization from folding into its convolution.
  drop_unneeded(g, keep);
  fold_batch_norms(g, keep);
  fold_pads(g, keep);
  fuse_layer_norms(g, keep);
  fuse_patterns(g, keep);
  fuse_gemm_activations(g, keep);
  fuse_attention(g, keep);
  fuse_convolutions(g, keep);
  drop_unneeded(g, keep);  // e.g. a Constant node that only a fused chain read
}

// Kahn's algorithm over node dependencies; whatever remains unsorted sits on a cycle.
std::vector<std::size_t> executor::topological_order(const graph& g) {
  std::unordered_map<std::string, std::size_t> producer;
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& out : g.nodes[i].outputs)
      if (!out.empty()) producer.emplace(out, i);
  const std::size_t count = g.nodes.size();
  std::vector<int> pending(count, 0);
  std::vector<std::vector<std::size_t>> dependents(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::set<std::size_t> deps;
    for (const auto& in : g.nodes[i].inputs) {
      auto it = producer.find(in);
      if (!in.empty() && it != producer.end()) deps.insert(it->second);
    }
    for (std::size_t d : deps) dependents[d].push_back(i);
    pending[i] = static_cast<int>(deps.size());
  }
  std::deque<std::size_t> ready;
  for (std::size_t i = 0; i < count; ++i)
    if (pending[i] == 0) ready.push_back(i);
  std::vector<std::size_t> order;
  while (!ready.empty()) {
    const std::size_t i = ready.front();
    ready.pop_front();
    order.push_back(i);
    for (std::size_t d : dependents[i])
      if (--pending[d] == 0) ready.push_back(d);
  }
  if (order.size() != count) {
    for (std::size_t i = 0; i < count; ++i)
      if (pending[i] > 0) fail(errc::bad_parameter, "the graph has a cycle through node {}", label_of(g.nodes[i]));
  }
  return order;
}

// Graph inputs and constants: their slots, and the static shapes that folding starts from.
void executor::seed_values(const graph& g, load_state& st) {
  // Slots: one per value that exists at run time. Constants are values known now.
  st.constant_values.insert(g.initializers.begin(), g.initializers.end());
  for (const auto& v : g.inputs) input_slots_.push_back(st.slot(v.name));

  // What is known statically about every value, for folding shape arithmetic.
  std::int64_t next_symbol = -2;
  std::unordered_map<std::string, std::int64_t> named_symbols;
  for (const auto& v : g.inputs) {
    static_shape s{v.rank_known, v.shape};
    for (std::size_t d = 0; d < s.dims.size(); ++d) {
      if (s.dims[d] >= 0) continue;
      // Dimensions that share a name share a symbol (run() checks they agree); others get their own.
      const std::string dim_name = d < v.dim_names.size() ? v.dim_names[d] : "";
      if (dim_name.empty()) {
        s.dims[d] = next_symbol--;
      } else {
        auto [it, inserted] = named_symbols.emplace(dim_name, next_symbol);
        if (inserted) --next_symbol;
        s.dims[d] = it->second;
      }
    }
    st.shapes[v.name] = s;
  }
  for (const auto& [name, t] : st.constant_values) st.shapes[name] = static_shape::of(t);
}

// Builds each node's kernel in order, folding what is known at load into constants.
void executor::build_steps(graph& g, const std::vector<std::size_t>& order, load_state& st) {
  const kernel_registry& registry = kernels();
  for (std::size_t i : order) {
    node& n = g.nodes[i];
    const std::string label = label_of(n);
    build_context ctx{n, g.opset, {}};
    bool all_constant = true;
    for (const auto& in : n.inputs) {
      auto it = in.empty() ? st.constant_values.end() : st.constant_values.find(in);
      ctx.constants.push_back(it == st.constant_values.end() ? nullptr : &it->second);
      if (!in.empty() && it == st.constant_values.end()) all_constant = false;
    }
    std::vector<static_shape> in_shapes;
    std::vector<const partial_value*> in_partials;
    std::optional<static_shape> reshape_shape;
    if (!all_constant) {
      for (const auto& in : n.inputs) {
        auto s = st.shapes.find(in);
        in_shapes.push_back(s == st.shapes.end() ? static_shape{} : s->second);
        auto p = st.partials.find(in);
        in_partials.push_back(p == st.partials.end() ? nullptr : &p->second);
      }
      // Shape arithmetic over known dimensions becomes a constant even with a dynamic batch.
      std::optional<partial_value> pv =
          guarded(label, [&] { return infer_partial(n, g.opset, in_shapes, in_partials, ctx.constants); });
      if (pv && n.outputs.size() == 1 && !n.outputs[0].empty()) {
        if (pv->fully_known()) {
          at::Tensor t = pv->to_tensor();
          st.shapes[n.outputs[0]] = static_shape::of(t);
          st.constant_values[n.outputs[0]] = t;
          continue;
        }
        st.partials[n.outputs[0]] = *pv;
      }
      // A Reshape target with a single unknown entry (the batch) is that entry as -1.
      if (n.op_type == "Reshape" && g.opset >= 5 && n.inputs.size() > 1 && !ctx.constants[1]) {
        auto p = st.partials.find(n.inputs[1]);
        if (p != st.partials.end() && !p->second.scalar) {
          auto target = static_reshape_target(in_shapes[0], p->second, attr_int(n, "allowzero", 0) != 0);
          if (target) {
            const std::string name = n.name + "::static_shape";
            st.constant_values[name] = at::tensor(*target, at::kLong);
            st.shapes[name] = static_shape::of(st.constant_values[name]);
            n.inputs[1] = name;
            ctx.constants[1] = &st.constant_values[name];
            in_shapes[1] = st.shapes[name];
            // The output keeps the symbols of the dynamic entries.
            std::vector<std::int64_t> dims;
            for (std::size_t k = 0; k < target->size(); ++k) {
              const auto& e = p->second.values[k];
              if (e.value && *e.value != -1) dims.push_back(*e.value);
              else if (e.value) dims.push_back((*target)[k] > 0 ? (*target)[k] : -1);
              else dims.push_back(e.symbol <= -2 ? e.symbol : -1);
            }
            reshape_shape = resolve_reshape(in_shapes[0], dims);
          }
        }
      }
    }
    const kernel_registry& table = n.domain != fused_domain               ? registry
                                   : fused_conv_kernels().count(n.op_type) ? fused_conv_kernels()
                                                                           : fused_kernels();
    kernel fn = guarded(label, [&] { return table.find(n.op_type)->second(ctx); });
    if (all_constant) {
      tensor_list args;
      for (std::size_t k = 0; k < n.inputs.size(); ++k) args.push_back(ctx.constants[k] ? *ctx.constants[k] : at::Tensor());
      tensor_list results = guarded(label, [&] { return fn(args); });
      for (std::size_t k = 0; k < n.outputs.size(); ++k) {
        if (n.outputs[k].empty()) continue;
        if (k >= results.size() || !results[k].defined())
          fail(errc::bad_parameter, "node {} does not produce output {}", label, k);
        // Folded values are read on every run; views of weights (Transpose, Reshape) are
        // materialised once here instead of being re-strided per call.
        st.constant_values[n.outputs[k]] = results[k].contiguous();
        st.shapes[n.outputs[k]] = static_shape::of(results[k]);
      }
      continue;
    }
    std::vector<static_shape> out_shapes = infer_shapes(n, g.opset, in_shapes, ctx.constants, in_partials);
    if (reshape_shape) out_shapes = {*reshape_shape};
    for (std::size_t k = 0; k < out_shapes.size() && k < n.outputs.size(); ++k)
      if (!n.outputs[k].empty()) st.shapes[n.outputs[k]] = out_shapes[k];
    if (spdlog::should_log(spdlog::level::trace)) {
      std::string ins;
      for (auto& s2 : in_shapes) ins += fmt::format("[{}]{} ", fmt::join(s2.dims, ","), s2.rank_known ? "" : "?");
      std::string outs;
      for (auto& s2 : out_shapes) outs += fmt::format("[{}]{} ", fmt::join(s2.dims, ","), s2.rank_known ? "" : "?");
      std::string parts;
      for (auto* pp : in_partials) parts += pp ? "P" : "-";
      spdlog::trace("runtime: {} in {} {} out {}", label, ins, parts, outs);
    }
    step s;
    s.fn = std::move(fn);
    s.label = label;
    s.op_type = n.domain == fused_domain ? attr_string(n, "fused_label", n.op_type) : n.op_type;
    for (const auto& in : n.inputs) s.inputs.push_back(in.empty() ? -1 : st.slot(in));
    for (const auto& out : n.outputs) s.outputs.push_back(out.empty() ? -1 : st.slot(out));
    steps_.push_back(std::move(s));
  }
}

// Folding can leave steps whose results nothing reads any more (e.g. the producer of a
// tensor whose only reader was a Shape node): drop them, last to first. Returns the live slots.
std::unordered_set<int> executor::prune_dead_steps() {
  std::unordered_set<int> live(output_slots_.begin(), output_slots_.end());
  std::vector<step> kept;
  for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
    if (std::none_of(it->outputs.begin(), it->outputs.end(), [&](int o) { return o >= 0 && live.count(o); })) continue;
    for (int in : it->inputs)
      if (in >= 0) live.insert(in);
    kept.push_back(std::move(*it));
  }
  steps_.assign(std::make_move_iterator(kept.rbegin()), std::make_move_iterator(kept.rend()));
  return live;
}

// Constants that anything reads at run time are placed in their slots at the start of a run.
void executor::place_constants(const load_state& st, const std::unordered_set<int>& live) {
  for (const auto& [name, index] : st.slot_of) {
    auto it = st.constant_values.find(name);
    if (it != st.constant_values.end() && live.count(index)) constants_.emplace_back(index, it->second);
  }
  slot_count_ = st.slot_of.size();
}

// Release each slot after its last reader, unless it is an output.
void executor::plan_releases() {
  std::vector<int> last_reader(slot_count_, -1);
  for (std::size_t k = 0; k < steps_.size(); ++k)
    for (int in : steps_[k].inputs)
      if (in >= 0) last_reader[static_cast<std::size_t>(in)] = static_cast<int>(k);
  std::unordered_set<int> out_set(output_slots_.begin(), output_slots_.end());
  for (std::size_t s = 0; s < slot_count_; ++s) {
    if (last_reader[s] >= 0 && !out_set.count(static_cast<int>(s)))
      steps_[static_cast<std::size_t>(last_reader[s])].release.push_back(static_cast<int>(s));
  }
  // A value read for the last time, and only once by that step, is moved into the call: an
  // element-wise kernel can then write its result into it instead of allocating (see reusable()).
  for (step& st : steps_) {
    st.hand_over.assign(st.inputs.size(), false);
    for (std::size_t k = 0; k < st.inputs.size(); ++k) {
      const int in = st.inputs[k];
      if (in < 0 || std::find(st.release.begin(), st.release.end(), in) == st.release.end()) continue;
      st.hand_over[k] = std::count(st.inputs.begin(), st.inputs.end(), in) == 1;
    }
  }
}

// The declared description of each requested value, or what is known of it.
void executor::describe_outputs(const graph& g, const std::vector<std::string>& requested, const load_state& st) {
  std::unordered_map<std::string, const value_info*> declared;
  for (const auto& v : g.outputs) declared[v.name] = &v;
  for (const auto& v : g.inputs) declared[v.name] = &v;
  for (const auto& name : requested) {
    auto it = declared.find(name);
    if (it != declared.end()) {
      outputs_.push_back(*it->second);
    } else {
      value_info v;
      v.name = name;
      v.rank_known = false;
      auto c = st.constant_values.find(name);
      if (c != st.constant_values.end()) v.dtype = c->second.scalar_type();
      outputs_.push_back(v);
    }
  }
}

std::map<std::string, int> executor::run_histogram() const {
  std::map<std::string, int> h;
  for (const step& s : steps_) ++h[s.op_type];
  return h;
}

std::vector<at::Tensor> executor::run(const std::vector<at::Tensor>& inputs) const {
  check_inputs(inputs);
  return execute(inputs, nullptr);
}

std::vector<at::Tensor> executor::run_profiled(const std::vector<at::Tensor>& inputs, op_profile& profile) const {
  check_inputs(inputs);
  return execute(inputs, &profile);
}

void executor::check_inputs(const std::vector<at::Tensor>& inputs) const {
  if (inputs.size() != inputs_.size())
    fail(errc::bad_parameter, "the model takes {} inputs, got {}", inputs_.size(), inputs.size());
  std::map<std::string_view, std::int64_t> named_sizes;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const value_info& v = inputs_[i];
    const at::Tensor& t = inputs[i];
    if (!t.defined()) fail(errc::bad_parameter, "input '{}' is missing", v.name);
    if (t.scalar_type() != v.dtype)
      fail(errc::bad_parameter, "input '{}' must be {}, got {}", v.name, c10::toString(v.dtype),
           c10::toString(t.scalar_type()));
    if (!v.rank_known) continue;
    if (t.dim() != static_cast<std::int64_t>(v.shape.size()))
      fail(errc::bad_parameter, "input '{}' must have rank {}, got {}", v.name, v.shape.size(), t.dim());
    for (std::size_t d = 0; d < v.shape.size(); ++d) {
      const std::int64_t size = t.size(static_cast<std::int64_t>(d));
      if (v.shape[d] >= 0 && size != v.shape[d])
        fail(errc::bad_parameter, "input '{}' dimension {} must be {}, got {}", v.name, d, v.shape[d], size);
      if (v.shape[d] < 0 && d < v.dim_names.size() && !v.dim_names[d].empty()) {
        auto [it, inserted] = named_sizes.emplace(v.dim_names[d], size);
        if (!inserted && it->second != size)
          fail(errc::bad_parameter, "input '{}' dimension {} ('{}') is {}, but another input has {} for it", v.name, d,
               v.dim_names[d], size, it->second);
      }
    }
  }
}

std::map<std::string, at::Tensor> executor::run(const std::map<std::string, at::Tensor>& inputs) const {
  std::vector<at::Tensor> ordered;
  for (const auto& v : inputs_) {
    auto it = inputs.find(v.name);
    if (it == inputs.end()) fail(errc::bad_parameter, "input '{}' is missing", v.name);
    ordered.push_back(it->second);
  }
  for (const auto& [name, t] : inputs) {
    if (std::none_of(inputs_.begin(), inputs_.end(), [&](const value_info& v) { return v.name == name; }))
      fail(errc::bad_parameter, "the model has no input named '{}'", name);
  }
  std::vector<at::Tensor> results = run(ordered);
  std::map<std::string, at::Tensor> named;
  for (std::size_t i = 0; i < results.size(); ++i) named[outputs_[i].name] = results[i];
  return named;
}

std::vector<at::Tensor> executor::execute(std::vector<at::Tensor> feeds, op_profile* profile) const {
  c10::InferenceMode inference;
  const auto run_started = profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  std::vector<at::Tensor> slots(slot_count_);
  for (const auto& [index, value] : constants_) slots[static_cast<std::size_t>(index)] = value;
  for (std::size_t i = 0; i < feeds.size(); ++i)
    slots[static_cast<std::size_t>(input_slots_[i])] = std::move(feeds[i]);
  tensor_list args;
  for (const step& s : steps_) {
    args.clear();
    for (std::size_t k = 0; k < s.inputs.size(); ++k) {
      const int in = s.inputs[k];
      if (in < 0) args.emplace_back();
      else if (s.hand_over[k]) args.push_back(std::move(slots[static_cast<std::size_t>(in)]));
      else args.push_back(slots[static_cast<std::size_t>(in)]);
    }
    const auto started = profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    tensor_list results = guarded(s.label, [&] { return s.fn(args); });
    if (profile) {
      auto& e = profile->by_op[s.op_type];
      e.ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
      ++e.calls;
    }
    args.clear();
    for (std::size_t k = 0; k < s.outputs.size(); ++k) {
      if (s.outputs[k] < 0) continue;
      if (k >= results.size() || !results[k].defined())
        fail(errc::bad_parameter, "node {} does not produce output {}", s.label, k);
      slots[static_cast<std::size_t>(s.outputs[k])] = std::move(results[k]);
    }
    for (int r : s.release) slots[static_cast<std::size_t>(r)].reset();
  }
  std::vector<at::Tensor> outputs;
  for (int o : output_slots_) {
    const at::Tensor& t = slots[static_cast<std::size_t>(o)];
    if (!t.defined()) fail(errc::internal, "an output was not computed");
    outputs.push_back(t.contiguous());
  }
  if (profile) {
    profile->run_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - run_started).count();
    ++profile->runs;
    profile->steps += static_cast<std::int64_t>(steps_.size());
  }
  return outputs;
}

}  // namespace acg2vec::runtime
