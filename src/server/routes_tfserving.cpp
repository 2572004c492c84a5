// TensorFlow Serving REST compatibility: /v1/models/{name}[/versions/{v}]:predict, status and
// metadata. Errors use TF-Serving's body {"error": "..."} instead of our envelope.
#include "core/base64.h"
#include "image/decode.h"
#include "models/postprocess.h"
#include "models/registry.h"
#include "server/request_parsing.h"
#include "server/routes.h"

namespace acg2vec::server {

using json = nlohmann::json;

namespace {

// Runs a handler and answers errors the way TF-Serving does.
http_handler tf_style(std::function<void(const http_request&, http_response&)> fn) {
  return [fn = std::move(fn)](const http_request& req, http_response& res) {
    try {
      fn(req, res);
    } catch (const error& e) {
      // TF-Serving reports an undecodable image as a bad argument (400), not 415.
      int status = e.code() == errc::unsupported_media ? 400 : http_status(e.code());
      reply_json(res, json{{"error", e.what()}}, status);
    } catch (const json::exception& e) {
      reply_json(res, json{{"error", std::string("invalid JSON value: ") + e.what()}}, 400);
    }
  };
}

std::string tf_output_name(const models::model_entry& e, std::size_t i) {
  if (i < e.manifest.outputs.size()) return e.manifest.outputs[i].tf_name;
  return e.graph->output_names().at(i);
}

// Text packs take token ids (acgvoc2vec: {"input_ids", "attention_mask"} per instance; dclip_text:
// a list of ids per instance); CLIP image packs take b64 images. Answers follow the row/columnar form.
json predict_other(const models::model_entry& e, const json& items, bool row, const model_route_context& ctx) {
  std::vector<at::Tensor> outs;
  if (e.clip_image) {
    for (const auto& inst : items) {
      auto bytes = tf_instance_image_bytes(inst);
      outs.push_back(e.clip_image->embed(image::decode_image(bytes, decode_limits_of(ctx))));
    }
  } else {
    std::vector<at::Tensor> ids, masks;
    for (const auto& inst : items) {
      if (inst.is_object()) {
        if (!inst.contains("input_ids")) fail(errc::bad_parameter, "instance is missing 'input_ids'");
        ids.push_back(models::tensor_from_json(inst["input_ids"], at::kLong));
        if (inst.contains("attention_mask")) masks.push_back(models::tensor_from_json(inst["attention_mask"], at::kLong));
      } else {
        ids.push_back(models::tensor_from_json(inst, at::kLong));
      }
      if (ids.back().dim() != 1) fail(errc::bad_parameter, "token ids must be a flat list per instance");
      if (static_cast<std::size_t>(ids.back().size(0)) > e.text->max_length()) {
        fail(errc::bad_parameter, "at most {} token ids per instance", e.text->max_length());
      }
    }
    // Ragged instances would reach at::stack, whose message carries a backtrace: say it plainly.
    for (std::size_t i = 1; i < ids.size(); ++i) {
      if (ids[i].size(0) != ids[0].size(0)) {
        fail(errc::bad_parameter, "every instance needs the same number of token ids (instance 0 has {}, instance {} has {}); pad them",
             ids[0].size(0), i, ids[i].size(0));
      }
    }
    at::Tensor mask;
    if (!masks.empty()) {
      if (masks.size() != ids.size()) fail(errc::bad_parameter, "give attention_mask for every instance or none");
      for (std::size_t i = 0; i < masks.size(); ++i) {
        if (masks[i].dim() != 1 || masks[i].size(0) != ids[i].size(0)) {
          fail(errc::bad_parameter, "attention_mask of instance {} must be a flat list as long as its input_ids", i);
        }
      }
      mask = at::stack(masks);
    }
    auto batch = at::stack(ids);
    auto v = e.text->embed_ids(batch, mask);
    for (std::int64_t i = 0; i < v.size(0); ++i) outs.push_back(v[i]);
  }
  if (row) {
    json predictions = json::array();
    for (const auto& o : outs) predictions.push_back(models::to_nested_json(o));
    return {{"predictions", predictions}};
  }
  return {{"outputs", models::to_nested_json(at::stack(outs))}};
}

}  // namespace

void check_input_shape(const runtime::value_info& info, const at::Tensor& t, std::size_t instance) {
  if (info.rank_known && t.dim() != static_cast<std::int64_t>(info.shape.size())) {
    fail(errc::bad_parameter, "instance {}: input '{}' must have rank {} (batch included), got {}", instance, info.name,
         info.shape.size(), t.dim());
  }
  if (!info.rank_known) return;
  for (std::size_t d = 1; d < info.shape.size(); ++d) {
    if (info.shape[d] > 0 && info.shape[d] != t.size(static_cast<std::int64_t>(d))) {
      fail(errc::bad_parameter, "instance {}: input '{}' dimension {} must be {}, got {}", instance, info.name, d,
           info.shape[d], t.size(static_cast<std::int64_t>(d)));
    }
  }
}

void register_tfserving_routes(http_server& server, model_route_context ctx) {
  auto& reg = *ctx.registry;
  const std::string name_re = R"(([A-Za-z0-9_.\-]+))";

  server.add("POST", "/v1/models/" + name_re + R"((?:/versions/(\d+))?:predict)", "tfserving.predict",
             tf_style([&reg, ctx](const http_request& req, http_response& res) {
               auto e = reg.get(req.matches[1].str());
               auto body = parse_json_body(req);
               auto [row, items] = parse_tf_predict_body(body);
               if (items.size() > ctx.max_instances) {
                 fail(errc::too_large, "{} instances in one request; the limit is {} (--max-instances)", items.size(),
                      ctx.max_instances);
               }

               if (e->text || e->clip_image) {
                 reply_json(res, predict_other(*e, items, row, ctx));
                 return;
               }
               if (!e->graph) fail(errc::bad_parameter, "model '{}' cannot be called through predict", e->manifest.name);
               const auto& model = *e->graph;
               // Instances are run in passes of the pack's max_batch: memory follows the pass, not
               // the request (512 tiny PNGs as one tensor took the process from 0.75 to 6 GB).
               std::size_t pass = static_cast<std::size_t>(std::max(1, e->manifest.max_batch));
               std::vector<std::vector<at::Tensor>> parts;  // per output, one tensor per pass
               std::vector<std::int64_t> row_shape;
               for (std::size_t start = 0; start < items.size(); start += pass) {
                 std::vector<at::Tensor> rows;
                 for (std::size_t i = start; i < std::min(items.size(), start + pass); ++i) {
                   const json& inst = items[i];
                   if (model.takes_images()) {
                     auto bytes = tf_instance_image_bytes(inst);
                     if (bytes.size() > ctx.max_upload_bytes) fail(errc::too_large, "image is larger than the upload limit");
                     rows.push_back(model.image_tensor(image::decode_image(bytes, decode_limits_of(ctx))));
                   } else {
                     const auto& info = model.executor().inputs().at(0);
                     const json& v = inst.is_object() && inst.size() == 1 ? inst.begin().value() : inst;
                     auto t = models::tensor_from_json(v, info.dtype).unsqueeze(0);
                     check_input_shape(info, t, i);
                     if (row_shape.empty()) row_shape = t.sizes().vec();
                     if (t.sizes().vec() != row_shape) {
                       fail(errc::bad_parameter, "instance {} has a different shape from instance 0", i);
                     }
                     rows.push_back(std::move(t));
                   }
                 }
                 auto outs = model.run_batch(at::cat(rows, 0));
                 if (parts.empty()) parts.resize(outs.size());
                 for (std::size_t o = 0; o < outs.size(); ++o) parts[o].push_back(std::move(outs[o]));
               }
               std::vector<at::Tensor> outputs;
               for (auto& p : parts) outputs.push_back(at::cat(p, 0));
               json answer;
               if (row) {
                 json predictions = json::array();
                 for (std::int64_t i = 0; i < static_cast<std::int64_t>(items.size()); ++i) {
                   if (outputs.size() == 1) {
                     predictions.push_back(models::to_nested_json(outputs[0][i]));
                   } else {
                     json obj = json::object();
                     for (std::size_t o = 0; o < outputs.size(); ++o) obj[tf_output_name(*e, o)] = models::to_nested_json(outputs[o][i]);
                     predictions.push_back(obj);
                   }
                 }
                 answer = {{"predictions", predictions}};
               } else if (outputs.size() == 1) {
                 answer = {{"outputs", models::to_nested_json(outputs[0])}};
               } else {
                 json obj = json::object();
                 for (std::size_t o = 0; o < outputs.size(); ++o) obj[tf_output_name(*e, o)] = models::to_nested_json(outputs[o]);
                 answer = {{"outputs", obj}};
               }
               reply_json(res, answer);
             }), route_access::read);

  server.add("GET", "/v1/models/" + name_re + R"((?:/versions/(\d+))?)", "tfserving.status",
             tf_style([&reg](const http_request& req, http_response& res) {
               std::string state = "AVAILABLE";
               json status{{"error_code", "OK"}, {"error_message", ""}};
               try {
                 reg.get(req.matches[1].str());
               } catch (const error& err) {
                 if (err.code() == errc::not_found) throw;
                 state = "LOADING";
                 status = {{"error_code", "UNAVAILABLE"}, {"error_message", err.what()}};
               }
               reply_json(res, json{{"model_version_status",
                                     json::array({{{"version", "1"}, {"state", state}, {"status", status}}})}});
             }), route_access::read);

  server.add("GET", "/v1/models/" + name_re + R"((?:/versions/(\d+))?/metadata)", "tfserving.metadata",
             tf_style([&reg](const http_request& req, http_response& res) {
               auto e = reg.get(req.matches[1].str());
               if (e->text) {
                 json inputs = json::object();
                 auto ids_info = json{{"dtype", "DT_INT32"}, {"tensor_shape", {{"dim", json::array({{{"size", "-1"}}, {{"size", std::to_string(e->text->max_length())}}})}}}};
                 if (e->text->uses_mask()) {
                   inputs["input_ids"] = ids_info;
                   inputs["attention_mask"] = ids_info;
                 } else {
                   inputs["text"] = ids_info;
                 }
                 json sig{{"inputs", inputs},
                          {"outputs", {{"output_0", {{"dtype", "DT_FLOAT"}, {"tensor_shape", {{"dim", json::array({{{"size", "-1"}}, {{"size", std::to_string(e->text->dim())}}})}}}}}}},
                          {"method_name", "tensorflow/serving/predict"}};
                 reply_json(res, json{{"model_spec", {{"name", req.matches[1].str()}, {"signature_name", ""}, {"version", "1"}}},
                                      {"metadata", {{"signature_def", {{"signature_def", {{"serving_default", sig}}}}}}}});
                 return;
               }
               if (!e->graph) fail(errc::bad_parameter, "model '{}' has no signature", e->manifest.name);
               auto tensor_info = [](const std::string& name, at::ScalarType dtype, const std::vector<std::int64_t>& shape) {
                 json dims = json::array();
                 for (auto d : shape) dims.push_back({{"size", std::to_string(d)}, {"name", ""}});
                 std::string dt = dtype == at::kFloat ? "DT_FLOAT" : dtype == at::kLong ? "DT_INT64"
                                  : dtype == at::kInt  ? "DT_INT32" : "DT_STRING";
                 return json{{"dtype", dt}, {"tensor_shape", {{"dim", dims}, {"unknown_rank", false}}}, {"name", name}};
               };
               json inputs = json::object();
               if (e->graph->takes_images()) {
                 inputs["b64_input_bytes"] = tensor_info("b64_input_bytes:0", at::kByte, {-1});
                 inputs["b64_input_bytes"]["dtype"] = "DT_STRING";
               } else {
                 for (const auto& i : e->graph->executor().inputs()) inputs[i.name] = tensor_info(i.name, i.dtype, i.shape);
               }
               json outputs = json::object();
               for (std::size_t i = 0; i < e->graph->output_names().size(); ++i) {
                 outputs[tf_output_name(*e, i)] = tensor_info(e->graph->output_names()[i], at::kFloat, {-1, -1});
               }
               json sig{{"inputs", inputs}, {"outputs", outputs}, {"method_name", "tensorflow/serving/predict"}};
               reply_json(res, json{{"model_spec", {{"name", req.matches[1].str()}, {"signature_name", ""}, {"version", "1"}}},
                                    {"metadata", {{"signature_def", {{"signature_def", {{"serving_default", sig}}}}}}}});
             }), route_access::read);
}

}  // namespace acg2vec::server