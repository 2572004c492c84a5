#include "runtime/onnx_loader.h"

#include "core/files.h"
#include "core/error.h"
#include "runtime/ops.h"

#include <onnx/onnx_pb.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <fstream>
#include <limits>
#include <set>

namespace acg2vec::runtime {
namespace {

namespace fs = std::filesystem;

// The largest tensor a model file may declare (elements * bytes); anything above is treated as
// a corrupt header rather than allocated.
constexpr std::uint64_t max_tensor_bytes = std::uint64_t{16} << 30;

// protobuf parses at most 2 GiB in one message: larger weights must live in external data files.
std::string read_model_file(const fs::path& file, std::string_view what) {
  return read_file(file, what, static_cast<std::uintmax_t>(std::numeric_limits<int>::max()));
}

std::size_t element_size(int type) {
  switch (type) {
    case onnx::TensorProto::FLOAT: case onnx::TensorProto::INT32: case onnx::TensorProto::UINT32: return 4;
    case onnx::TensorProto::UINT8: case onnx::TensorProto::INT8: case onnx::TensorProto::BOOL: return 1;
    case onnx::TensorProto::UINT16: case onnx::TensorProto::INT16: case onnx::TensorProto::FLOAT16:
    case onnx::TensorProto::BFLOAT16: return 2;
    case onnx::TensorProto::INT64: case onnx::TensorProto::DOUBLE: case onnx::TensorProto::UINT64: return 8;
    default: return 0;
  }
}

// Reads the external-data bytes of a tensor, refusing locations that leave the model directory.
std::string read_external(const onnx::TensorProto& t, const fs::path& base_dir, std::uint64_t expected) {
  std::string location;
  std::uint64_t offset = 0;
  std::optional<std::uint64_t> length;
  for (const auto& kv : t.external_data()) {
    try {
      if (kv.key() == "location") location = kv.value();
      else if (kv.key() == "offset") offset = std::stoull(kv.value());
      else if (kv.key() == "length") length = std::stoull(kv.value());
    } catch (const std::exception&) {
      fail(errc::bad_parameter, "tensor '{}': invalid external data {} '{}'", t.name(), kv.key(), kv.value());
    }
  }
  if (base_dir.empty()) fail(errc::bad_parameter, "tensor '{}' uses external data but the model has no directory", t.name());
  if (location.empty()) fail(errc::bad_parameter, "tensor '{}': external data without a location", t.name());
  const fs::path rel(location);
  if (rel.is_absolute()) fail(errc::bad_parameter, "tensor '{}': external data path '{}' is absolute", t.name(), location);
  for (const auto& part : rel)
    if (part == "..") fail(errc::bad_parameter, "tensor '{}': external data path '{}' leaves the model directory", t.name(), location);
  std::error_code ec;
  const fs::path base = fs::weakly_canonical(base_dir, ec);
  const fs::path full = fs::weakly_canonical(base_dir / rel, ec);
  if (ec) fail(errc::not_found, "tensor '{}': cannot resolve external data '{}'", t.name(), location);
  auto [b_end, f_it] = std::mismatch(base.begin(), base.end(), full.begin(), full.end());
  if (b_end != base.end())
    fail(errc::bad_parameter, "tensor '{}': external data '{}' resolves outside the model directory", t.name(), location);
  const auto size = fs::file_size(full, ec);
  if (ec) fail(errc::not_found, "tensor '{}': external data file '{}' is missing", t.name(), location);
  const std::uint64_t len = length.value_or(size >= offset ? size - offset : 0);
  if (offset > size || len > size - offset)
    fail(errc::bad_parameter, "tensor '{}': external data range [{}, +{}) exceeds '{}' ({} bytes)", t.name(), offset,
         len, location, size);
  if (len != expected)
    fail(errc::bad_parameter, "tensor '{}': external data holds {} bytes, its shape needs {}", t.name(), len, expected);
  std::ifstream in(full, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::string bytes(len, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(len));
  if (!in) fail(errc::bad_parameter, "tensor '{}': cannot read external data '{}'", t.name(), location);
  return bytes;
}

template <class Src>
at::Tensor from_values(const Src& values, std::vector<std::int64_t> shape, at::ScalarType dtype) {
  using value_t = typename Src::value_type;
  std::vector<value_t> copy(values.begin(), values.end());
  at::Tensor t;
  if constexpr (std::is_same_v<value_t, float>) t = at::tensor(copy, at::kFloat);
  else if constexpr (std::is_same_v<value_t, double>) t = at::tensor(copy, at::kDouble);
  else if constexpr (std::is_same_v<value_t, std::int32_t>) t = at::tensor(copy, at::kInt);
  else if constexpr (std::is_same_v<value_t, std::int64_t>) t = at::tensor(copy, at::kLong);
  else t = at::tensor(std::vector<std::int64_t>(copy.begin(), copy.end()), at::kLong);
  return t.reshape(shape).to(dtype);
}

at::Tensor tensor_from_proto(const onnx::TensorProto& t, const fs::path& base_dir, bool upcast_fp16) {
  const int type = t.data_type();
  if (type == onnx::TensorProto::STRING) fail(errc::bad_parameter, "tensor '{}': string tensors are not supported", t.name());
  const std::size_t esize = element_size(type);
  if (esize == 0) fail(errc::bad_parameter, "tensor '{}': data type {} is not supported", t.name(), type);
  if (t.has_segment()) fail(errc::bad_parameter, "tensor '{}': segmented tensors are not supported", t.name());
  std::vector<std::int64_t> shape;
  std::uint64_t numel = 1;
  for (std::int64_t d : t.dims()) {
    if (d < 0) fail(errc::bad_parameter, "tensor '{}': negative dimension {}", t.name(), d);
    const auto ud = static_cast<std::uint64_t>(d);
    // Checked on its own too: after a zero dimension the product stays 0 whatever follows, but
    // libtorch refuses sizes it cannot represent.
    if (ud > max_tensor_bytes)
      fail(errc::too_large, "tensor '{}': dimension {} is larger than {}", t.name(), d, max_tensor_bytes);
    if (ud != 0 && numel > max_tensor_bytes / esize / ud)
      fail(errc::too_large, "tensor '{}': declared shape is larger than {} bytes", t.name(), max_tensor_bytes);
    numel *= ud;
    shape.push_back(d);
  }
  const std::uint64_t nbytes = numel * esize;
  const at::ScalarType dtype = dtype_from_onnx(type);

  std::string external;
  const std::string* raw = nullptr;
  if (t.data_location() == onnx::TensorProto::EXTERNAL) {
    external = read_external(t, base_dir, nbytes);
    raw = &external;
  } else if (t.has_raw_data()) {
    raw = &t.raw_data();
    if (raw->size() != nbytes)
      fail(errc::bad_parameter, "tensor '{}': raw data holds {} bytes, its shape needs {}", t.name(), raw->size(), nbytes);
  }

  at::Tensor out;
  if (raw) {
    auto bytes_as = [&](at::ScalarType st) {
      at::Tensor r = at::empty(shape, at::TensorOptions().dtype(st));
      if (nbytes) std::memcpy(r.data_ptr(), raw->data(), nbytes);
      return r;
    };
    switch (type) {
      case onnx::TensorProto::UINT16: {
        at::Tensor r = at::empty(shape, at::kInt);
        auto* p = r.data_ptr<std::int32_t>();
        for (std::uint64_t i = 0; i < numel; ++i) {
          std::uint16_t v;
          std::memcpy(&v, raw->data() + i * 2, 2);
          p[i] = v;
        }
        out = r;
        break;
      }
      case onnx::TensorProto::UINT32: {
        at::Tensor r = at::empty(shape, at::kLong);
        auto* p = r.data_ptr<std::int64_t>();
        for (std::uint64_t i = 0; i < numel; ++i) {
          std::uint32_t v;
          std::memcpy(&v, raw->data() + i * 4, 4);
          p[i] = v;
        }
        out = r;
        break;
      }
      case onnx::TensorProto::BOOL: out = bytes_as(at::kByte).ne(0); break;
      default: out = bytes_as(dtype); break;
    }
  } else {
    auto expect = [&](int n) {
      if (static_cast<std::uint64_t>(n) != numel)
        fail(errc::bad_parameter, "tensor '{}': has {} values, its shape needs {}", t.name(), n, numel);
    };
    switch (type) {
      case onnx::TensorProto::FLOAT: expect(t.float_data_size()); out = from_values(t.float_data(), shape, dtype); break;
      case onnx::TensorProto::DOUBLE: expect(t.double_data_size()); out = from_values(t.double_data(), shape, dtype); break;
      case onnx::TensorProto::INT64: expect(t.int64_data_size()); out = from_values(t.int64_data(), shape, dtype); break;
      case onnx::TensorProto::UINT32:
      case onnx::TensorProto::UINT64: expect(t.uint64_data_size()); out = from_values(t.uint64_data(), shape, dtype); break;
      case onnx::TensorProto::FLOAT16:
      case onnx::TensorProto::BFLOAT16: {
        expect(t.int32_data_size());
        at::Tensor r = at::empty(shape, at::TensorOptions().dtype(dtype));
        auto* p = static_cast<std::uint16_t*>(r.data_ptr());
        for (int i = 0; i < t.int32_data_size(); ++i) p[i] = static_cast<std::uint16_t>(t.int32_data(i));
        out = r;
        break;
      }
      default: expect(t.int32_data_size()); out = from_values(t.int32_data(), shape, dtype); break;
    }
  }
  if (upcast_fp16 && out.scalar_type() == at::kHalf) out = out.to(at::kFloat);
  return out;
}

value_info value_from_proto(const onnx::ValueInfoProto& v, bool upcast_fp16) {
  value_info info;
  info.name = v.name();
  if (!v.type().has_tensor_type())
    fail(errc::bad_parameter, "graph value '{}' is not a tensor (sequences and maps are not supported)", v.name());
  const auto& tt = v.type().tensor_type();
  info.dtype = dtype_from_onnx(tt.elem_type());
  if (upcast_fp16 && info.dtype == at::kHalf) info.dtype = at::kFloat;
  if (!tt.has_shape()) {
    info.rank_known = false;
    return info;
  }
  bool named = false;
  for (const auto& d : tt.shape().dim()) {
    const bool known = d.has_dim_value() && d.dim_value() >= 0;
    info.shape.push_back(known ? d.dim_value() : -1);
    info.dim_names.push_back(!known && d.has_dim_param() ? d.dim_param() : "");
    named = named || !info.dim_names.back().empty();
  }
  if (!named) info.dim_names.clear();
  return info;
}

attribute attribute_from_proto(const onnx::AttributeProto& a, const onnx::NodeProto& n, const fs::path& base_dir,
                               bool upcast_fp16) {
  using A = onnx::AttributeProto;
  int type = a.type();
  if (type == A::UNDEFINED) {  // some old exporters leave the type out
    if (a.has_f()) type = A::FLOAT;
    else if (a.has_i()) type = A::INT;
    else if (a.has_s()) type = A::STRING;
    else if (a.has_t()) type = A::TENSOR;
    else if (a.floats_size()) type = A::FLOATS;
    else if (a.ints_size()) type = A::INTS;
    else if (a.strings_size()) type = A::STRINGS;
  }
  switch (type) {
    case A::FLOAT: return static_cast<double>(a.f());
    case A::INT: return static_cast<std::int64_t>(a.i());
    case A::STRING: return a.s();
    case A::TENSOR: return tensor_from_proto(a.t(), base_dir, upcast_fp16);
    case A::FLOATS: return std::vector<double>(a.floats().begin(), a.floats().end());
    case A::INTS: return std::vector<std::int64_t>(a.ints().begin(), a.ints().end());
    case A::STRINGS: return std::vector<std::string>(a.strings().begin(), a.strings().end());
    default:
      fail(errc::bad_parameter, "unsupported operator {} in node '{}': attribute '{}' holds a subgraph or other type {}",
           n.op_type(), n.name(), a.name(), type);
  }
}

graph graph_from_model(const onnx::ModelProto& model, const fs::path& base_dir, const onnx_load_options& options) {
  if (!model.has_graph()) fail(errc::bad_parameter, "the ONNX model has no graph");
  graph g;
  bool found_opset = false;
  for (const auto& op : model.opset_import()) {
    if (op.domain().empty() || op.domain() == "ai.onnx") {
      g.opset = op.version();
      found_opset = true;
    }
  }
  if (!found_opset) fail(errc::bad_parameter, "the ONNX model imports no default-domain opset");
  // Opsets 19-21 changed little among the supported ops (new Cast types, AveragePool
  // dilations, Resize modes), and those variants are rejected by the kernels themselves.
  if (g.opset > 21) fail(errc::bad_parameter, "ONNX opset {} is newer than this runtime supports (up to 21)", g.opset);
  if (g.opset < 11 || g.opset > 17) spdlog::debug("onnx: opset {} is outside the tested range 11-17", g.opset);

  const auto& gp = model.graph();
  g.name = gp.name();
  const bool up = options.upcast_fp16;
  std::set<std::string> init_names;
  for (const auto& t : gp.initializer()) {
    if (t.name().empty()) fail(errc::bad_parameter, "an initializer has no name");
    if (!init_names.insert(t.name()).second) fail(errc::bad_parameter, "initializer '{}' is declared twice", t.name());
    g.initializers[t.name()] = tensor_from_proto(t, base_dir, up);
  }
  if (gp.sparse_initializer_size() > 0) fail(errc::bad_parameter, "sparse initializers are not supported");
  for (const auto& v : gp.input()) {
    if (init_names.count(v.name())) continue;  // a weight listed as input (IR < 4)
    g.inputs.push_back(value_from_proto(v, up));
  }
  for (const auto& v : gp.output()) g.outputs.push_back(value_from_proto(v, up));

  std::set<std::string> known(init_names);
  for (const auto& v : g.inputs) known.insert(v.name);
  for (const auto& np : gp.node())
    for (const auto& o : np.output()) known.insert(o);

  for (int i = 0; i < gp.node_size(); ++i) {
    const auto& np = gp.node(i);
    node n;
    n.name = np.name().empty() ? fmt::format("{}_{}", np.op_type(), i) : np.name();
    n.op_type = np.op_type();
    n.domain = np.domain();
    n.inputs.assign(np.input().begin(), np.input().end());
    n.outputs.assign(np.output().begin(), np.output().end());
    for (const auto& in : n.inputs)
      if (!in.empty() && !known.count(in))
        fail(errc::bad_parameter, "node '{}' ({}) reads '{}', which is neither an input, an initializer nor a node output",
             n.name, n.op_type, in);
    for (const auto& a : np.attribute()) {
      if (!a.ref_attr_name().empty()) continue;
      n.attributes[a.name()] = attribute_from_proto(a, np, base_dir, up);
    }
    if (up && n.op_type == "Cast" && attr_int(n, "to", 1) == onnx::TensorProto::FLOAT16)
      n.attributes["to"] = std::int64_t{onnx::TensorProto::FLOAT};
    g.nodes.push_back(std::move(n));
  }
  for (const auto& v : g.outputs)
    if (!known.count(v.name)) fail(errc::bad_parameter, "graph output '{}' is not produced by any node", v.name);
  return g;
}

}  // namespace

graph load_onnx_bytes(std::string_view bytes, const fs::path& base_dir, const onnx_load_options& options) {
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    fail(errc::too_large, "ONNX model of {} bytes exceeds the 2 GiB protobuf limit", bytes.size());
  onnx::ModelProto model;
  if (bytes.empty() || !model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    fail(errc::bad_parameter, "not a valid ONNX model (protobuf parse failed; truncated or corrupt file?)");
  try {
    return graph_from_model(model, base_dir, options);
  } catch (const c10::Error& e) {
    // A libtorch check on a malformed tensor (e.g. a shape libtorch cannot represent).
    fail(errc::bad_parameter, "malformed ONNX model: {}", e.what_without_backtrace());
  }
}

graph load_onnx(const fs::path& file, const onnx_load_options& options) {
  const std::string bytes = read_model_file(file, "ONNX model");
  try {
    return load_onnx_bytes(bytes, file.parent_path().empty() ? fs::path(".") : file.parent_path(), options);
  } catch (const error& e) {
    throw error(e.code(), fmt::format("{}: {}", file.filename().string(), e.what()));
  } catch (const c10::Error& e) {
    throw error(errc::bad_parameter, fmt::format("{}: {}", file.filename().string(), e.what_without_backtrace()));
  }
}

at::Tensor load_onnx_tensor(const fs::path& file) {
  const std::string bytes = read_model_file(file, "tensor file");
  onnx::TensorProto t;
  if (!t.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    fail(errc::bad_parameter, "'{}' is not a serialized TensorProto", file.string());
  return tensor_from_proto(t, file.parent_path(), false);
}

}  // namespace acg2vec::runtime
