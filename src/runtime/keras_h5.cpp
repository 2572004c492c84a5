#include "runtime/keras_h5.h"

#include <hdf5.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/log.h"

namespace acg2vec::runtime {

namespace {

using nlohmann::json;

// Debian's libhdf5 is the serial build, which is not thread-safe: loads are serialised.
std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

// Owns one HDF5 identifier.
class handle {
 public:
  handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  handle(const handle&) = delete;
  handle& operator=(const handle&) = delete;
  ~handle() {
    if (id_ >= 0) close_(id_);
  }
  [[nodiscard]] hid_t get() const { return id_; }
  [[nodiscard]] bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// Silences HDF5's default error printing for the scope; failures become acg2vec::error instead.
class quiet_errors {
 public:
  quiet_errors() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  quiet_errors(const quiet_errors&) = delete;
  quiet_errors& operator=(const quiet_errors&) = delete;
  ~quiet_errors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

class h5_reader {
 public:
  explicit h5_reader(const std::filesystem::path& file)
      : source_(file.filename().string()), file_(open(file), H5Fclose) {}

  [[nodiscard]] const std::string& source() const { return source_; }

  std::optional<std::string> root_string(const char* name) {
    auto v = strings(file_.get(), name);
    if (!v) return std::nullopt;
    if (v->size() != 1) fail(errc::bad_parameter, "{}: attribute '{}' is not a single string", source_, name);
    return (*v)[0];
  }

  keras_weights weights(const std::set<std::string>& nested_models) {
    const bool full_model = H5Lexists(file_.get(), "model_weights", H5P_DEFAULT) > 0;
    handle root(H5Gopen2(file_.get(), full_model ? "model_weights" : "/", H5P_DEFAULT), H5Gclose);
    if (!root.ok()) fail(errc::bad_parameter, "{}: cannot open the weights group", source_);
    auto layers = strings(root.get(), "layer_names");
    if (!layers) fail(errc::bad_parameter, "{}: no 'layer_names' attribute on the weights group", source_);
    keras_weights out;
    for (const auto& layer : *layers) {
      handle group(H5Gopen2(root.get(), layer.c_str(), H5P_DEFAULT), H5Gclose);
      if (!group.ok()) fail(errc::bad_parameter, "{}: layer '{}': weight group missing", source_, layer);
      auto names = strings(group.get(), "weight_names");
      if (!names) fail(errc::bad_parameter, "{}: layer '{}': no 'weight_names' attribute", source_, layer);
      for (const auto& name : *names) {
        // A nested model's group holds its sub-layers' weights, scoped by sub-layer name.
        std::string owner = layer;
        if (nested_models.count(layer)) {
          owner = keras_weight_owner(name);
          if (owner.empty()) owner = layer;
        }
        out[owner].push_back({keras_weight_short_name(name), dataset(group.get(), layer, name)});
      }
    }
    return out;
  }

 private:
  std::string source_;
  handle file_;

  static hid_t open(const std::filesystem::path& file) {
    if (!std::filesystem::is_regular_file(file)) fail(errc::not_found, "Keras model file {} does not exist", file.string());
    if (H5Fis_hdf5(file.c_str()) <= 0) fail(errc::bad_parameter, "{} is not an HDF5 file", file.string());
    hid_t id = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (id < 0) fail(errc::bad_parameter, "{}: cannot open the HDF5 file", file.string());
    return id;
  }

  // Reads a string or string-array attribute; Keras splits long ones into name0, name1, ...
  std::optional<std::vector<std::string>> strings(hid_t object, const std::string& name) {
    if (H5Aexists(object, name.c_str()) > 0) return read_strings(object, name);
    if (H5Aexists(object, (name + "0").c_str()) <= 0) return std::nullopt;
    std::vector<std::string> all;
    for (int i = 0; H5Aexists(object, (name + std::to_string(i)).c_str()) > 0; ++i) {
      auto part = read_strings(object, name + std::to_string(i));
      all.insert(all.end(), part.begin(), part.end());
    }
    return all;
  }

  std::vector<std::string> read_strings(hid_t object, const std::string& name) {
    handle attr(H5Aopen(object, name.c_str(), H5P_DEFAULT), H5Aclose);
    handle type(H5Aget_type(attr.get()), H5Tclose);
    handle space(H5Aget_space(attr.get()), H5Sclose);
    if (!attr.ok() || !type.ok() || !space.ok()) fail(errc::bad_parameter, "{}: cannot read attribute '{}'", source_, name);
    const auto npoints = H5Sget_simple_extent_npoints(space.get());
    if (npoints < 0) fail(errc::bad_parameter, "{}: cannot read attribute '{}'", source_, name);
    const auto n = static_cast<std::size_t>(npoints);
    std::vector<std::string> out;
    if (n == 0) return out;  // an empty list may be stored with any element type
    if (H5Tget_class(type.get()) != H5T_STRING) {
      fail(errc::bad_parameter, "{}: attribute '{}' is not a string", source_, name);
    }
    // The element count comes from the file: it must be backed by the attribute's stored bytes
    // (a variable-length element takes 16 bytes in the file) before buffers are sized by it.
    const std::size_t stored_element = H5Tis_variable_str(type.get()) > 0 ? 16 : std::max<std::size_t>(1, H5Tget_size(type.get()));
    if (n > H5Aget_storage_size(attr.get()) / stored_element) {
      fail(errc::bad_parameter, "{}: attribute '{}' declares {} strings but stores fewer", source_, name, n);
    }
    if (H5Tis_variable_str(type.get()) > 0) {
      handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem.get(), H5T_VARIABLE);
      H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
      std::vector<char*> buf(n, nullptr);
      if (H5Aread(attr.get(), mem.get(), buf.data()) < 0) {
        fail(errc::bad_parameter, "{}: cannot read attribute '{}'", source_, name);
      }
      for (auto* p : buf) out.emplace_back(p ? p : "");
      H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, buf.data());
      return out;
    }
    const std::size_t size = H5Tget_size(type.get());
    std::vector<char> buf(n * size);
    if (H5Aread(attr.get(), type.get(), buf.data()) < 0) {
      fail(errc::bad_parameter, "{}: cannot read attribute '{}'", source_, name);
    }
    for (std::size_t i = 0; i < n; ++i) {
      std::string s(buf.data() + i * size, size);
      s.resize(std::min(s.find('\0'), s.size()));
      out.push_back(std::move(s));
    }
    return out;
  }

  // A few hundred bytes of HDF5 can declare a dataset of any size (unwritten chunks read as the fill
  // value), so the declared size must be backed by storage in the file before anything is allocated;
  // filtered (compressed) data may expand up to deflate's best ratio, about 1032:1.
  void check_backed_by_storage(hid_t set, const std::vector<hsize_t>& dims, const std::string& layer,
                               const std::string& name) {
    constexpr std::uint64_t max_elements = std::uint64_t{1} << 40;
    std::uint64_t elements = 1;
    for (auto d : dims) {
      if (d != 0 && elements > max_elements / d) {
        fail(errc::bad_parameter, "{}: layer '{}': weight '{}' declares an impossibly large shape", source_, layer, name);
      }
      elements *= d;
    }
    if (elements == 0) return;
    handle type(H5Dget_type(set), H5Tclose);
    handle plist(H5Dget_create_plist(set), H5Pclose);
    if (!type.ok() || !plist.ok()) fail(errc::bad_parameter, "{}: layer '{}': weight '{}' is unreadable", source_, layer, name);
    const std::uint64_t element_size = std::max<std::size_t>(1, H5Tget_size(type.get()));
    const std::uint64_t stored = H5Dget_storage_size(set);
    const std::uint64_t ratio = H5Pget_nfilters(plist.get()) > 0 ? 1032 : 1;
    if (elements > max_elements / element_size || elements * element_size > stored * ratio) {
      fail(errc::bad_parameter, "{}: layer '{}': weight '{}' declares {} values but the file holds {} bytes of them",
           source_, layer, name, elements, stored);
    }
  }

  at::Tensor dataset(hid_t group, const std::string& layer, const std::string& name) {
    if (H5Lexists(group, name.c_str(), H5P_DEFAULT) <= 0 && name.find('/') == std::string::npos) {
      fail(errc::bad_parameter, "{}: layer '{}': weight '{}' is listed but missing", source_, layer, name);
    }
    handle set(H5Dopen2(group, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!set.ok()) fail(errc::bad_parameter, "{}: layer '{}': weight '{}' is listed but missing", source_, layer, name);
    handle space(H5Dget_space(set.get()), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0) fail(errc::bad_parameter, "{}: layer '{}': weight '{}' has no readable shape", source_, layer, name);
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    check_backed_by_storage(set.get(), dims, layer, name);
    std::vector<std::int64_t> shape(dims.begin(), dims.end());
    auto t = at::empty(shape, at::kFloat);
    // HDF5 converts float16/float64 storage to float32 on read.
    if (t.numel() > 0 && H5Dread(set.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr<float>()) < 0) {
      fail(errc::bad_parameter, "{}: layer '{}': cannot read weight '{}'", source_, layer, name);
    }
    return t;
  }
};

std::set<std::string> nested_model_names(const json& model) {
  std::set<std::string> out;
  const auto& cfg = model.at("config");
  const json& layers = cfg.is_array() ? cfg : cfg.at("layers");
  for (const auto& l : layers) {
    const auto cls = l.value("class_name", "");
    if (cls == "Model" || cls == "Functional" || cls == "Sequential") {
      out.insert(l.contains("name") ? l["name"].get<std::string>() : l["config"].value("name", ""));
    }
  }
  return out;
}

}  // namespace

keras_weights read_keras_h5_weights(const std::filesystem::path& file) {
  std::lock_guard lock(hdf5_mutex());
  quiet_errors quiet;
  h5_reader reader(file);
  std::set<std::string> nested;
  if (auto config = reader.root_string("model_config")) {
    try {
      nested = nested_model_names(json::parse(*config));
    } catch (const json::exception& e) {
      fail(errc::bad_parameter, "{}: model_config is not valid JSON: {}", reader.source(), e.what());
    }
  }
  return reader.weights(nested);
}

graph load_keras_h5(const std::filesystem::path& file) {
  json config;
  keras_weights weights;
  std::string source;
  {
    std::lock_guard lock(hdf5_mutex());
    quiet_errors quiet;
    h5_reader reader(file);
    source = reader.source();
    auto text = reader.root_string("model_config");
    if (!text) fail(errc::bad_parameter, "{}: no model_config attribute (a weights-only file?)", source);
    try {
      config = json::parse(*text);
      weights = reader.weights(nested_model_names(config));
    } catch (const json::exception& e) {
      fail(errc::bad_parameter, "{}: model_config is not a valid Keras model config: {}", source, e.what());
    }
    spdlog::debug("{}: Keras {} model with {} weighted layers", source,
                  reader.root_string("keras_version").value_or("?"), weights.size());
  }
  return translate_keras_model(config, std::move(weights), source);
}

}  // namespace acg2vec::runtime
