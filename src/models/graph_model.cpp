#include "models/graph_model.h"

#include <c10/core/InferenceMode.h>

#include "core/error.h"
#include "runtime/compute.h"
#include "runtime/keras_layers.h"

namespace acg2vec::models {

graph_model::graph_model(model_manifest manifest, const runtime::graph& graph, batcher::observer_fn observer,
                         std::vector<companion_output> companions)
    : manifest_(std::move(manifest)), companions_(std::move(companions)) {
  std::vector<std::string> requested;
  runtime::graph g = graph;  // shallow: tensors are shared
  bool keras = manifest_.format == model_format::keras_h5 || manifest_.format == model_format::tfjs_layers;
  auto request_cut = [&](const cut_spec& cut) {
    if (keras && cut.pool == "gap") {
      // Keras layer values are NHWC views; the translator pools the layer's NCHW value for us.
      requested.push_back(runtime::append_keras_gap(g, cut.layer));
      pooled_in_graph_.push_back(true);
    } else {
      requested.push_back(cut.layer);
      pooled_in_graph_.push_back(false);
    }
  };
  if (manifest_.cut) {
    request_cut(*manifest_.cut);
  } else {
    for (const auto& o : manifest_.outputs) {
      if (!o.value.empty()) requested.push_back(o.value);
    }
    // Either every output names its value or none does (then the graph's own outputs are used).
    if (!requested.empty() && requested.size() != manifest_.outputs.size()) {
      fail(errc::bad_parameter, "pack '{}': give a 'value' for every output or for none", manifest_.name);
    }
    if (requested.empty() && !companions_.empty()) {
      for (const auto& o : g.outputs) requested.push_back(o.name);
    }
    pooled_in_graph_.assign(requested.empty() ? g.outputs.size() : requested.size(), false);
  }
  const std::size_t own = requested.empty() ? g.outputs.size() : requested.size();
  for (const auto& c : companions_) request_cut(c.cut);
  executor_ = std::make_unique<runtime::executor>(std::move(g), requested);
  for (std::size_t i = 0; i < own; ++i) output_names_.push_back(executor_->outputs().at(i).name);
  if (!manifest_.outputs.empty() && manifest_.outputs.size() != output_names_.size()) {
    fail(errc::bad_parameter, "pack '{}': manifest lists {} outputs but the graph has {}", manifest_.name,
         manifest_.outputs.size(), output_names_.size());
  }
  takes_images_ = !manifest_.input.empty() && manifest_.input.contains("size");
  if (takes_images_) preprocess_ = image::parse_preprocess_spec(manifest_.input);

  // A label list must match the scores it names: a mismatched pack fails now, not per request.
  if (!manifest_.labels.empty() && takes_images_) {
    auto probe = executor_->run({image_tensor(image::image_rgb8{8, 8, std::vector<std::uint8_t>(8 * 8 * 3, 128)})});
    const auto& out = probe.at(0);
    auto n = out.numel();
    if (static_cast<std::size_t>(n) != manifest_.labels.size()) {
      fail(errc::bad_parameter, "pack '{}': the label list has {} entries but the model outputs {} values",
           manifest_.name, manifest_.labels.size(), n);
    }
  }
  batcher_ = std::make_unique<batcher>([this](const at::Tensor& b) { return forward(b); }, manifest_.max_batch,
                                       std::chrono::milliseconds(manifest_.max_wait_ms), std::move(observer));
}

at::Tensor graph_model::image_tensor(const image::image_rgb8& image) const {
  // Preprocessing runs on request, ingest and decode threads: it must not start OpenMP teams.
  runtime::single_openmp_thread();
  if (!takes_images_) fail(errc::bad_parameter, "model '{}' does not take images", manifest_.name);
  image::float_image f = image::preprocess(image, preprocess_);
  std::vector<std::int64_t> shape = f.nchw ? std::vector<std::int64_t>{1, f.channels, f.height, f.width}
                                           : std::vector<std::int64_t>{1, f.height, f.width, f.channels};
  return at::from_blob(f.data.data(), shape, at::kFloat).clone();
}

std::vector<at::Tensor> graph_model::forward(const at::Tensor& batch) const {
  c10::InferenceMode guard;
  // Inputs are checked before they get here (preprocessing, or the shape checks of predict/infer),
  // so a failure inside the graph is the engine's fault, whatever code the op threw: a 500 with a
  // request id for clients, never a 400 that would blame their request.
  std::vector<at::Tensor> outputs;
  try {
    outputs = executor_->run({batch});
  } catch (const error& e) {
    if (e.code() == errc::internal || e.code() == errc::unavailable || e.code() == errc::timeout) throw;
    fail(errc::internal, "pack '{}' failed while running: {}", manifest_.name, e.what());
  } catch (const c10::Error& e) {
    fail(errc::internal, "pack '{}' failed while running: {}", manifest_.name, e.what_without_backtrace());
  }
  const std::size_t own = output_names_.size();
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const cut_spec* cut = i < own ? (manifest_.cut ? &*manifest_.cut : nullptr) : &companions_[i - own].cut;
    auto& v = outputs[i];
    // ONNX graphs are NCHW: pool over the two spatial dimensions.
    if (cut != nullptr && cut->pool == "gap" && !pooled_in_graph_[i] && v.dim() == 4) v = v.mean({2, 3});
    if (cut != nullptr && v.dim() > 2) v = v.flatten(1);
    v = v.contiguous().to(at::kFloat);
  }
  return outputs;
}

std::vector<at::Tensor> graph_model::run_batch(const at::Tensor& input) const {
  runtime::single_openmp_thread();  // the caller merges inputs; the forward runs on the compute thread
  // The compute thread itself cannot wait for the batcher, which hands its passes to that thread.
  auto outputs = runtime::on_compute_thread_now() ? forward(input) : batcher_->submit(input).get();
  outputs.resize(output_names_.size());  // companions are for submit_image only
  return outputs;
}

std::vector<at::Tensor> graph_model::run_image(const image::image_rgb8& image) const {
  auto rows = run_batch(image_tensor(image));
  for (auto& r : rows) r = r.squeeze(0);
  return rows;
}

std::future<std::vector<at::Tensor>> graph_model::submit_image(const image::image_rgb8& image) const {
  return batcher_->submit(image_tensor(image));
}

nlohmann::json graph_model::describe() const {
  using json = nlohmann::json;
  auto dims = [](const std::vector<std::int64_t>& s) {
    json a = json::array();
    for (auto d : s) a.push_back(d);
    return a;
  };
  json inputs = json::array();
  for (const auto& i : executor_->inputs()) {
    inputs.push_back({{"name", i.name}, {"dtype", std::string(c10::toString(i.dtype))}, {"shape", dims(i.shape)}});
  }
  json outputs = json::array();
  for (std::size_t i = 0; i < output_names_.size(); ++i) {
    json o{{"name", i < manifest_.outputs.size() ? manifest_.outputs[i].name : output_names_[i]},
           {"value", output_names_[i]}};
    outputs.push_back(o);
  }
  json ops = json::object();
  for (const auto& [op, n] : executor_->op_histogram()) ops[op] = n;
  return {{"name", manifest_.name},
          {"task", to_string(manifest_.task)},
          {"format", to_string(manifest_.format)},
          {"inputs", inputs},
          {"outputs", outputs},
          {"ops", ops},
          {"labels", manifest_.labels.size()}};
}

}  // namespace acg2vec::models