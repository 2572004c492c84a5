#include "runtime/tfjs.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/log.h"

namespace acg2vec::runtime {

namespace {

using nlohmann::json;

// Appends a whole file to `out` (shards of one group are concatenated, tensors may span them).
void append_file(const std::filesystem::path& file, std::vector<char>& out) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(errc::not_found, "cannot open {}", file.string());
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  if (ec) fail(errc::not_found, "cannot stat {}", file.string());
  const auto offset = out.size();
  out.resize(offset + size);
  in.read(out.data() + offset, static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(in.gcount()) != size) fail(errc::bad_parameter, "short read from {}", file.string());
}

std::vector<char> read_bytes(const std::filesystem::path& file) {
  std::vector<char> out;
  append_file(file, out);
  return out;
}

json read_model_json(const std::filesystem::path& model_json) {
  if (!std::filesystem::is_regular_file(model_json)) {
    fail(errc::not_found, "TF.js model file {} does not exist", model_json.string());
  }
  auto bytes = read_bytes(model_json);
  json model;
  try {
    model = json::parse(bytes.begin(), bytes.end());
  } catch (const json::exception& e) {
    fail(errc::bad_parameter, "{}: not valid JSON: {}", model_json.filename().string(), e.what());
  }
  if (!model.is_object()) fail(errc::bad_parameter, "{}: not a JSON object", model_json.filename().string());
  return model;
}

// Shards are named in the manifest; converters and hosting setups differ on the ".bin" suffix.
std::filesystem::path shard_path(const std::filesystem::path& dir, const std::string& name, const std::string& source) {
  // Shards live next to model.json; a manifest must not point elsewhere on the machine.
  const std::filesystem::path rel(name);
  if (name.empty() || rel.is_absolute() || name.find('\0') != std::string::npos) {
    fail(errc::bad_parameter, "{}: weight shard path '{}' is not a file name next to the model", source, name);
  }
  for (const auto& part : rel) {
    if (part == "..") fail(errc::bad_parameter, "{}: weight shard path '{}' leaves the model folder", source, name);
  }
  std::filesystem::path p = dir / name;
  if (std::filesystem::is_regular_file(p)) return p;
  const bool has_bin = name.size() > 4 && name.compare(name.size() - 4, 4, ".bin") == 0;
  std::filesystem::path alt = has_bin ? dir / name.substr(0, name.size() - 4) : dir / (name + ".bin");
  if (std::filesystem::is_regular_file(alt)) return alt;
  fail(errc::not_found, "{}: weight shard '{}' not found next to the model", source, name);
}

std::size_t element_size(const std::string& dtype, const std::string& source, const std::string& weight) {
  if (dtype == "float32" || dtype == "int32") return 4;
  if (dtype == "float16" || dtype == "uint16") return 2;
  if (dtype == "uint8" || dtype == "bool") return 1;
  fail(errc::bad_parameter, "{}: weight '{}' has unsupported dtype '{}'", source, weight, dtype);
}

// Decodes one weight to float32 the way tfjs-core's io.decodeWeights does: quantised values map
// to min + scale * q (computed in double, stored as float32).
at::Tensor decode(const char* data, std::int64_t count, const std::vector<std::int64_t>& shape,
                  const std::string& dtype, const json* quant) {
  const std::string stored = quant ? quant->value("dtype", dtype) : dtype;
  auto raw = [&](std::int64_t bytes) {
    return at::from_blob(const_cast<char*>(data), {bytes}, at::kByte).clone();  // data is unaligned
  };
  // An empty weight may sit at the end of an empty shard (data == nullptr): nothing to copy.
  if (count == 0) return at::empty(shape, at::kFloat);
  at::Tensor t;
  if (stored == "float32") {
    t = at::empty({count}, at::kFloat);
    std::memcpy(t.data_ptr<float>(), data, static_cast<std::size_t>(count) * 4);
  } else if (stored == "int32") {
    t = at::empty({count}, at::kInt);
    std::memcpy(t.data_ptr<std::int32_t>(), data, static_cast<std::size_t>(count) * 4);
    t = t.to(at::kFloat);
  } else if (stored == "float16") {
    t = at::empty({count}, at::kHalf);
    std::memcpy(t.data_ptr(), data, static_cast<std::size_t>(count) * 2);
    t = t.to(at::kFloat);
  } else if (stored == "uint8" || stored == "bool") {
    t = raw(count).to(at::kDouble);
  } else {  // uint16: libtorch 1.13 has no uint16, read as int32 from little-endian pairs
    auto bytes = raw(count * 2).to(at::kInt).reshape({count, 2});
    t = (bytes.select(1, 0) + bytes.select(1, 1) * 256).to(at::kDouble);
  }
  if (quant && (stored == "uint8" || stored == "uint16")) {
    const double scale = quant->value("scale", 1.0);
    const double min = quant->value("min", 0.0);
    t = t * scale + min;
  }
  return t.to(at::kFloat).reshape(shape);
}

}  // namespace

keras_weights read_tfjs_weights(const std::filesystem::path& model_json) {
  const std::string source = model_json.filename().string();
  const json model = read_model_json(model_json);
  const auto dir = model_json.parent_path();
  keras_weights out;
  if (!model.contains("weightsManifest")) return out;
  check_json_numbers(model["weightsManifest"], source);
  try {
    for (const auto& group : model["weightsManifest"]) {
      std::vector<char> buffer;
      for (const auto& p : group.at("paths")) {
        append_file(shard_path(dir, p.get<std::string>(), source), buffer);
      }
      std::size_t offset = 0;
      for (const auto& w : group.at("weights")) {
        const auto name = w.at("name").get<std::string>();
        const auto shape = w.at("shape").get<std::vector<std::int64_t>>();
        const auto dtype = w.value("dtype", "float32");
        const json* quant = w.contains("quantization") ? &w["quantization"] : nullptr;
        const std::size_t esize = element_size(quant ? quant->value("dtype", dtype) : dtype, source, name);
        // The manifest is untrusted: the shape is checked against the shard bytes before any
        // allocation, without overflowing.
        std::int64_t count = 1;
        for (auto d : shape) {
          if (d < 0) fail(errc::bad_parameter, "{}: weight '{}' has a negative dimension {}", source, name, d);
          if (d != 0 && count > static_cast<std::int64_t>(buffer.size() / esize) / d) {
            fail(errc::bad_parameter, "{}: weight '{}' has a shape larger than its shards ({} bytes)", source, name,
                 buffer.size());
          }
          count *= d;
        }
        const std::size_t bytes = static_cast<std::size_t>(count) * esize;
        if (bytes > buffer.size() - offset) {
          fail(errc::bad_parameter, "{}: weight '{}' needs bytes {}..{} but the shards of its group hold {} (truncated?)",
               source, name, offset, offset + bytes, buffer.size());
        }
        auto owner = keras_weight_owner(name);
        out[owner.empty() ? name : owner].push_back(
            {keras_weight_short_name(name), decode(buffer.data() + offset, count, shape, dtype, quant)});
        offset += bytes;
      }
      if (offset != buffer.size()) {
        spdlog::warn("{}: weight shards hold {} bytes, the manifest uses {}", source, buffer.size(), offset);
      }
    }
  } catch (const json::exception& e) {
    fail(errc::bad_parameter, "{}: malformed weightsManifest: {}", source, e.what());
  } catch (const c10::Error& e) {
    fail(errc::bad_parameter, "{}: malformed weightsManifest: {}", source, e.what_without_backtrace());
  }
  return out;
}

graph load_tfjs_layers(const std::filesystem::path& model_json) {
  const std::string source = model_json.filename().string();
  const json model = read_model_json(model_json);
  if (model.value("format", "layers-model") == "graph-model") {
    fail(errc::not_implemented, "{}: TF.js graph-models are not supported, only layers-models", source);
  }
  if (!model.contains("modelTopology") || !model["modelTopology"].is_object()) {
    fail(errc::bad_parameter, "{}: no modelTopology", source);
  }
  const json& topology = model["modelTopology"];
  // Converted Keras files wrap the config in model_config; tfjs' own model.save() does not.
  const json& config = topology.contains("model_config") ? topology["model_config"] : topology;
  auto weights = read_tfjs_weights(model_json);
  return translate_keras_model(config, std::move(weights), source);
}

}  // namespace acg2vec::runtime
