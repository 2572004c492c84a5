#include "runtime/safetensors.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/files.h"
#include "core/error.h"

namespace acg2vec::runtime {

namespace {

// Upper bound on the JSON header; real headers of multi-GB checkpoints are well under 10 MB.
constexpr std::uint64_t max_header_bytes = 100u << 20;

struct dtype_info {
  at::ScalarType type;
  std::size_t size;
};

dtype_info dtype_from_name(const std::string& name, const std::string& origin, const std::string& tensor) {
  if (name == "F64") return {at::kDouble, 8};
  if (name == "F32") return {at::kFloat, 4};
  if (name == "F16") return {at::kHalf, 2};
  if (name == "BF16") return {at::kBFloat16, 2};
  if (name == "I64") return {at::kLong, 8};
  if (name == "I32") return {at::kInt, 4};
  if (name == "I16") return {at::kShort, 2};
  if (name == "I8") return {at::kChar, 1};
  if (name == "U8") return {at::kByte, 1};
  if (name == "BOOL") return {at::kBool, 1};
  fail(errc::bad_parameter, "{}: tensor {} has unsupported dtype {}", origin, tensor, name);
}

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return "F64";
    case at::kFloat: return "F32";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    case at::kLong: return "I64";
    case at::kInt: return "I32";
    case at::kShort: return "I16";
    case at::kChar: return "I8";
    case at::kByte: return "U8";
    case at::kBool: return "BOOL";
    default: fail(errc::bad_parameter, "dtype {} cannot be written to safetensors", c10::toString(t));
  }
}

}  // namespace

namespace {

// Read-only mapping of a whole file; safetensors data is copied out of it tensor by tensor, so peak memory
// stays at one copy of the weights.
class mapped_file {
 public:
  explicit mapped_file(const std::filesystem::path& path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail(errc::not_found, "cannot open checkpoint file {}", path.string());
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      ::close(fd_);
      fail(errc::internal, "cannot stat {}", path.string());
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      data_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (data_ == MAP_FAILED) {
        ::close(fd_);
        fail(errc::internal, "cannot map {}", path.string());
      }
    }
  }
  ~mapped_file() {
    if (data_ != nullptr && data_ != MAP_FAILED) ::munmap(data_, size_);
    if (fd_ >= 0) ::close(fd_);
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  [[nodiscard]] std::string_view view() const {
    return size_ == 0 ? std::string_view() : std::string_view(static_cast<const char*>(data_), size_);
  }

 private:
  int fd_ = -1;
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace

tensor_map parse_safetensors(std::string_view bytes, const std::string& origin) {
  if (bytes.size() < 8) fail(errc::bad_parameter, "{} is too short to be safetensors", origin);
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  if (header_len > max_header_bytes || header_len > bytes.size() - 8) {
    fail(errc::bad_parameter, "{}: safetensors header length {} is out of range", origin, header_len);
  }
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.substr(8, static_cast<std::size_t>(header_len)));
  } catch (const nlohmann::json::exception& e) {
    fail(errc::bad_parameter, "{}: safetensors header is not JSON: {}", origin, e.what());
  }
  if (!header.is_object()) fail(errc::bad_parameter, "{}: safetensors header is not an object", origin);
  const std::size_t data_start = 8 + static_cast<std::size_t>(header_len);
  const std::size_t data_size = bytes.size() - data_start;
  tensor_map out;
  std::vector<std::pair<std::size_t, std::size_t>> spans;
  try {
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") continue;
      if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets")) {
        fail(errc::bad_parameter, "{}: tensor {} lacks dtype/shape/data_offsets", origin, name);
      }
      const auto info = dtype_from_name(entry["dtype"].get<std::string>(), origin, name);
      std::vector<std::int64_t> shape;
      std::size_t numel = 1;
      for (const auto& d : entry["shape"]) {
        // Only integers: a float read as an integer is an undefined conversion in nlohmann::json.
        if (!d.is_number_integer()) fail(errc::bad_parameter, "{}: tensor {} has a non-integer dimension", origin, name);
        const auto v = d.get<std::int64_t>();
        if (v < 0) fail(errc::bad_parameter, "{}: tensor {} has a negative dimension", origin, name);
        shape.push_back(v);
      }
      // A wrapped-around product could match a small byte range: a non-empty shape may not hold
      // more elements than there are data bytes.
      if (std::find(shape.begin(), shape.end(), 0) != shape.end()) {
        numel = 0;
      } else {
        for (auto v : shape) {
          if (numel > data_size / static_cast<std::size_t>(v)) {
            fail(errc::bad_parameter, "{}: tensor {} has a shape larger than the {} data bytes", origin, name, data_size);
          }
          numel *= static_cast<std::size_t>(v);
        }
      }
      const auto& offsets = entry["data_offsets"];
      if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
          !offsets[1].is_number_unsigned()) {
        fail(errc::bad_parameter, "{}: tensor {} has bad data_offsets", origin, name);
      }
      const auto begin = offsets[0].get<std::uint64_t>();
      const auto end = offsets[1].get<std::uint64_t>();
      if (begin > end || end > data_size) {
        fail(errc::bad_parameter, "{}: tensor {} offsets [{}, {}) exceed the {} data bytes", origin, name, begin, end, data_size);
      }
      if (end - begin != numel * info.size) {
        fail(errc::bad_parameter, "{}: tensor {} has {} bytes for {} elements of {} bytes", origin, name, end - begin, numel,
             info.size);
      }
      spans.emplace_back(begin, end);
      at::Tensor t = at::empty(shape, at::TensorOptions().dtype(info.type));
      if (end > begin) std::memcpy(t.data_ptr(), bytes.data() + data_start + begin, end - begin);
      out.emplace(name, std::move(t));
    }
  } catch (const nlohmann::json::exception& e) {
    fail(errc::bad_parameter, "{}: malformed safetensors header entry: {}", origin, e.what());
  }
  std::sort(spans.begin(), spans.end());
  for (std::size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].first < spans[i - 1].second) fail(errc::bad_parameter, "{}: tensor data regions overlap", origin);
  }
  return out;
}

tensor_map load_safetensors(const std::filesystem::path& path) {
  const mapped_file file(path);
  return parse_safetensors(file.view(), path.string());
}

namespace {

tensor_map load_sharded(const std::filesystem::path& index_path,
                        tensor_map (*load_shard)(const std::filesystem::path&)) {
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(read_file(index_path, "checkpoint file"));
  } catch (const nlohmann::json::exception& e) {
    fail(errc::bad_parameter, "{} is not valid JSON: {}", index_path.string(), e.what());
  }
  if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
    fail(errc::bad_parameter, "{} has no weight_map", index_path.string());
  }
  std::set<std::string> shards;
  for (const auto& [name, file] : index["weight_map"].items()) {
    const auto shard = file.get<std::string>();
    if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos) {
      fail(errc::bad_parameter, "{}: shard name {} leaves the model folder", index_path.string(), shard);
    }
    shards.insert(shard);
  }
  tensor_map out;
  for (const auto& shard : shards) {
    for (auto& [name, t] : load_shard(index_path.parent_path() / shard)) out.insert_or_assign(name, std::move(t));
  }
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (out.count(name) == 0) fail(errc::bad_parameter, "{}: tensor {} is missing from {}", index_path.string(), name, file.get<std::string>());
  }
  return out;
}

}  // namespace

tensor_map load_safetensors_index(const std::filesystem::path& index_path) {
  return load_sharded(index_path, &load_safetensors);
}

tensor_map load_torch_state_dict_index(const std::filesystem::path& index_path) {
  return load_sharded(index_path, &load_torch_state_dict);
}

namespace {

// A reader for the pickle subset torch.save writes for a state dict (protocol 2): dicts/OrderedDicts,
// tuples, lists, scalars, strings, tensors rebuilt by torch._utils, storages as persistent ids. libtorch's
// own unpickler cannot read OrderedDict state dicts (pytorch/pytorch#100741), which is what HF saves.
struct py_value;
using py_ptr = std::shared_ptr<py_value>;
struct py_value {
  enum class kind { none, boolean, integer, real, string, tuple, list, dict, global, tensor };
  kind k = kind::none;
  std::int64_t i = 0;
  double d = 0;
  std::string s;                                   // string, or "module.name" of a global
  std::vector<py_ptr> items;                       // tuple, list
  std::vector<std::pair<py_ptr, py_ptr>> entries;  // dict
  at::Tensor t;
};

py_ptr make(py_value::kind k) {
  auto v = std::make_shared<py_value>();
  v->k = k;
  return v;
}

class state_dict_unpickler {
 public:
  state_dict_unpickler(caffe2::serialize::PyTorchStreamReader& reader, std::string origin)
      : reader_(reader), origin_(std::move(origin)) {}

  py_ptr run(const std::string& pickle) {
    data_ = &pickle;
    pos_ = 0;
    while (true) {
      const auto op = static_cast<unsigned char>(byte());
      switch (op) {
        case 0x80: byte(); break;                       // PROTO
        case 0x95: bytes(8); break;                     // FRAME
        case '.': return pop();                         // STOP
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case 'N': stack_.push_back(make(py_value::kind::none)); break;
        case 0x88: case 0x89: {                         // NEWTRUE / NEWFALSE
          auto v = make(py_value::kind::boolean);
          v->i = op == 0x88;
          stack_.push_back(v);
          break;
        }
        case 'K': push_int(static_cast<unsigned char>(byte())); break;  // BININT1
        case 'M': push_int(static_cast<std::int64_t>(le(2))); break;    // BININT2
        case 'J': push_int(static_cast<std::int32_t>(le(4))); break;    // BININT
        case 0x8a: {                                    // LONG1
          const auto n = static_cast<unsigned char>(byte());
          if (n > 8) fail(errc::bad_parameter, "{}: integer too large", origin_);
          std::uint64_t v = n ? le(n) : 0;
          if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~std::uint64_t{0} << (8 * n);
          push_int(static_cast<std::int64_t>(v));
          break;
        }
        case 'G': {                                     // BINFLOAT (big-endian)
          std::uint64_t bits = 0;
          for (char c : bytes(8)) bits = (bits << 8) | static_cast<unsigned char>(c);
          auto v = make(py_value::kind::real);
          std::memcpy(&v->d, &bits, 8);
          stack_.push_back(v);
          break;
        }
        case 'X': push_string(bytes(le(4))); break;     // BINUNICODE
        case 0x8c: push_string(bytes(static_cast<unsigned char>(byte()))); break;  // SHORT_BINUNICODE
        case 'U': push_string(bytes(static_cast<unsigned char>(byte()))); break;   // SHORT_BINSTRING
        case 'T': push_string(bytes(le(4))); break;     // BINSTRING
        case 'c': {                                     // GLOBAL
          auto v = make(py_value::kind::global);
          std::string module = line();  // two statements: operand evaluation order is unspecified
          v->s = module + "." + line();
          stack_.push_back(v);
          break;
        }
        case 'q': memo_[static_cast<unsigned char>(byte())] = top(); break;  // BINPUT
        case 'r': memo_[static_cast<std::uint32_t>(le(4))] = top(); break;   // LONG_BINPUT
        case 0x94: memo_[static_cast<std::uint32_t>(memo_.size())] = top(); break;  // MEMOIZE
        case 'h': stack_.push_back(memo(static_cast<unsigned char>(byte()))); break;  // BINGET
        case 'j': stack_.push_back(memo(static_cast<std::uint32_t>(le(4)))); break;   // LONG_BINGET
        case '}': stack_.push_back(make(py_value::kind::dict)); break;
        case ']': stack_.push_back(make(py_value::kind::list)); break;
        case ')': stack_.push_back(make(py_value::kind::tuple)); break;
        case 't': {
          auto v = make(py_value::kind::tuple);
          v->items = pop_to_mark();
          stack_.push_back(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {              // TUPLE1..3
          auto v = make(py_value::kind::tuple);
          v->items.resize(op - 0x84);
          for (auto it = v->items.rbegin(); it != v->items.rend(); ++it) *it = pop();
          stack_.push_back(v);
          break;
        }
        case 'a': {                                     // APPEND
          auto v = pop();
          expect(top(), py_value::kind::list)->items.push_back(v);
          break;
        }
        case 'e': {                                     // APPENDS
          auto vs = pop_to_mark();
          auto& l = expect(top(), py_value::kind::list)->items;
          l.insert(l.end(), vs.begin(), vs.end());
          break;
        }
        case 's': {                                     // SETITEM
          auto v = pop();
          auto k = pop();
          expect(top(), py_value::kind::dict)->entries.emplace_back(k, v);
          break;
        }
        case 'u': {                                     // SETITEMS
          auto vs = pop_to_mark();
          if (vs.size() % 2 != 0) fail(errc::bad_parameter, "{}: odd SETITEMS", origin_);
          auto d = expect(top(), py_value::kind::dict);
          for (std::size_t k = 0; k < vs.size(); k += 2) d->entries.emplace_back(vs[k], vs[k + 1]);
          break;
        }
        case 'b': pop(); break;  // BUILD: only OrderedDict attributes (_metadata) reach here; not needed
        case 'R': {              // REDUCE
          auto args = expect(pop(), py_value::kind::tuple);
          auto fn = expect(pop(), py_value::kind::global);
          stack_.push_back(reduce(fn->s, args->items));
          break;
        }
        case 'Q': stack_.push_back(storage(expect(pop(), py_value::kind::tuple)->items)); break;  // BINPERSID
        default:
          fail(errc::bad_parameter, "{}: unsupported pickle opcode 0x{:02x} at byte {}", origin_, op, pos_ - 1);
      }
    }
  }

 private:
  char byte() {
    if (pos_ >= data_->size()) fail(errc::bad_parameter, "{}: truncated pickle", origin_);
    return (*data_)[pos_++];
  }
  std::string bytes(std::size_t n) {
    if (n > data_->size() - pos_) fail(errc::bad_parameter, "{}: truncated pickle", origin_);
    std::string out = data_->substr(pos_, n);
    pos_ += n;
    return out;
  }
  std::uint64_t le(std::size_t n) {
    std::uint64_t v = 0;
    const std::string b = bytes(n);
    for (std::size_t k = n; k-- > 0;) v = (v << 8) | static_cast<unsigned char>(b[k]);
    return v;
  }
  std::string line() {
    const auto end = data_->find('\n', pos_);
    if (end == std::string::npos) fail(errc::bad_parameter, "{}: truncated pickle", origin_);
    std::string out = data_->substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }
  void push_int(std::int64_t x) {
    auto v = make(py_value::kind::integer);
    v->i = x;
    stack_.push_back(v);
  }
  void push_string(std::string s) {
    auto v = make(py_value::kind::string);
    v->s = std::move(s);
    stack_.push_back(v);
  }
  py_ptr top() {
    if (stack_.empty()) fail(errc::bad_parameter, "{}: pickle stack underflow", origin_);
    return stack_.back();
  }
  py_ptr pop() {
    auto v = top();
    stack_.pop_back();
    return v;
  }
  py_ptr memo(std::uint32_t id) {
    const auto it = memo_.find(id);
    if (it == memo_.end()) fail(errc::bad_parameter, "{}: pickle memo {} undefined", origin_, id);
    return it->second;
  }
  std::vector<py_ptr> pop_to_mark() {
    if (marks_.empty() || marks_.back() > stack_.size()) fail(errc::bad_parameter, "{}: pickle mark missing", origin_);
    std::vector<py_ptr> out(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return out;
  }
  py_ptr expect(py_ptr v, py_value::kind k) {
    if (!v || v->k != k) fail(errc::bad_parameter, "{}: unexpected value in pickle", origin_);
    return v;
  }
  std::int64_t as_int(const py_ptr& v) { return expect(v, py_value::kind::integer)->i; }
  std::vector<std::int64_t> as_ints(const py_ptr& v) {
    std::vector<std::int64_t> out;
    for (const auto& x : expect(v, py_value::kind::tuple)->items) out.push_back(as_int(x));
    return out;
  }

  py_ptr storage(const std::vector<py_ptr>& pid) {
    if (pid.size() < 5 || expect(pid[0], py_value::kind::string)->s != "storage") {
      fail(errc::bad_parameter, "{}: unsupported persistent id in pickle", origin_);
    }
    static const std::map<std::string, at::ScalarType> types{
        {"torch.FloatStorage", at::kFloat},  {"torch.DoubleStorage", at::kDouble}, {"torch.HalfStorage", at::kHalf},
        {"torch.BFloat16Storage", at::kBFloat16}, {"torch.LongStorage", at::kLong}, {"torch.IntStorage", at::kInt},
        {"torch.ShortStorage", at::kShort}, {"torch.CharStorage", at::kChar},  {"torch.ByteStorage", at::kByte},
        {"torch.BoolStorage", at::kBool}};
    const auto& type_name = expect(pid[1], py_value::kind::global)->s;
    const auto type = types.find(type_name);
    if (type == types.end()) fail(errc::not_implemented, "{}: storage type {} is not supported", origin_, type_name);
    const std::string key = expect(pid[2], py_value::kind::string)->s;
    const std::int64_t numel = as_int(pid[4]);
    auto& cached = storages_[key];
    if (!cached.defined()) {
      const std::string record = "data/" + key;
      if (!reader_.hasRecord(record)) fail(errc::bad_parameter, "{}: archive lacks {}", origin_, record);
      auto [ptr, size] = reader_.getRecord(record);
      cached = at::empty({numel}, at::TensorOptions().dtype(type->second));
      const std::size_t need = static_cast<std::size_t>(numel) * cached.element_size();
      if (size < need) fail(errc::bad_parameter, "{}: storage {} has {} bytes, needs {}", origin_, key, size, need);
      if (need > 0) std::memcpy(cached.data_ptr(), ptr.get(), need);
    }
    auto v = make(py_value::kind::tensor);
    v->t = cached;
    return v;
  }

  py_ptr reduce(const std::string& fn, const std::vector<py_ptr>& args) {
    if (fn == "collections.OrderedDict") return make(py_value::kind::dict);
    if (fn == "torch._utils._rebuild_tensor_v2" || fn == "torch._utils._rebuild_tensor") {
      if (args.size() < 4) fail(errc::bad_parameter, "{}: short tensor record", origin_);
      const at::Tensor& storage = expect(args[0], py_value::kind::tensor)->t;
      const auto offset = as_int(args[1]);
      const auto size = as_ints(args[2]);
      const auto stride = as_ints(args[3]);
      std::int64_t last = offset;
      for (std::size_t k = 0; k < size.size() && k < stride.size(); ++k) {
        if (size[k] == 0) last = -1;
        if (last >= 0) last += (size[k] - 1) * stride[k];
      }
      if (size.size() != stride.size() || offset < 0 || last >= storage.numel()) {
        fail(errc::bad_parameter, "{}: tensor view exceeds its storage", origin_);
      }
      auto v = make(py_value::kind::tensor);
      v->t = storage.as_strided(size, stride, offset).clone(at::MemoryFormat::Contiguous);
      return v;
    }
    if (fn == "torch._utils._rebuild_parameter" || fn == "torch._utils._rebuild_parameter_with_state") {
      if (args.empty()) fail(errc::bad_parameter, "{}: short parameter record", origin_);
      return expect(args[0], py_value::kind::tensor);
    }
    fail(errc::not_implemented, "{}: pickle calls {}, which a state dict does not need", origin_, fn);
  }

  caffe2::serialize::PyTorchStreamReader& reader_;
  std::string origin_;
  const std::string* data_ = nullptr;
  std::size_t pos_ = 0;
  std::vector<py_ptr> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint32_t, py_ptr> memo_;
  std::map<std::string, at::Tensor> storages_;
};

}  // namespace

tensor_map load_torch_state_dict(const std::filesystem::path& path) {
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) fail(errc::not_found, "cannot open checkpoint file {}", path.string());
    char magic[2] = {0, 0};
    probe.read(magic, 2);
    if (magic[0] != 'P' || magic[1] != 'K') {
      fail(errc::bad_parameter, "{} is not a torch zip archive (the legacy torch.save format is not supported)", path.string());
    }
  }
  py_ptr root;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path.string());
    auto [ptr, size] = reader.getRecord("data.pkl");
    const std::string pickle(static_cast<const char*>(ptr.get()), size);
    root = state_dict_unpickler(reader, path.string()).run(pickle);
  } catch (const c10::Error& e) {
    fail(errc::bad_parameter, "{} cannot be read as a torch archive: {}", path.string(), e.what_without_backtrace());
  }
  if (!root || root->k != py_value::kind::dict) fail(errc::bad_parameter, "{} does not hold a dict of tensors", path.string());
  tensor_map out;
  for (const auto& [k, v] : root->entries) {
    // Non-tensor entries (metadata, nested dicts of optimiser state) carry no weights.
    if (k->k == py_value::kind::string && v->k == py_value::kind::tensor) out.insert_or_assign(k->s, v->t);
  }
  if (out.empty()) fail(errc::bad_parameter, "{} holds no tensors", path.string());
  return out;
}

tensor_map load_checkpoint(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (fs::exists(dir / "model.safetensors")) return load_safetensors(dir / "model.safetensors");
  if (fs::exists(dir / "model.safetensors.index.json")) return load_safetensors_index(dir / "model.safetensors.index.json");
  if (fs::exists(dir / "pytorch_model.bin")) return load_torch_state_dict(dir / "pytorch_model.bin");
  if (fs::exists(dir / "pytorch_model.bin.index.json")) return load_torch_state_dict_index(dir / "pytorch_model.bin.index.json");
  fail(errc::not_found, "no model.safetensors, pytorch_model.bin or their sharded indexes in {}", dir.string());
}

void save_safetensors(const std::filesystem::path& path, const tensor_map& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::size_t offset = 0;
  std::vector<at::Tensor> ordered;
  for (const auto& [name, t] : tensors) {
    at::Tensor c = t.contiguous().cpu();
    const std::size_t n = static_cast<std::size_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", dtype_name(c.scalar_type())}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    ordered.push_back(std::move(c));
  }
  std::string json = header.dump();
  while ((json.size() + 8) % 8 != 0) json.push_back(' ');
  std::ofstream out(path, std::ios::binary);
  if (!out) fail(errc::internal, "cannot write {}", path.string());
  const std::uint64_t len = json.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xFF));
  out << json;
  for (const auto& t : ordered) out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
  if (!out) fail(errc::internal, "cannot write {}", path.string());
}

}  // namespace acg2vec::runtime
