// Loader and executor robustness: malformed ONNX files must end in acg2vec::error at load (or,
// for inputs that do not fit the model, at run), never in a crash. Models are built here with
// the ONNX protobuf API directly so that the loader is not used to make its own test inputs.

#include "core/error.h"
#include "runtime/executor.h"
#include "runtime/onnx_loader.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <fstream>
#include <string>
#include <thread>

namespace fs = std::filesystem;
using namespace acg2vec;

namespace {

void add_value(onnx::ValueInfoProto* v, const std::string& name, std::vector<std::int64_t> dims,
               int type = onnx::TensorProto::FLOAT) {
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(type);
  auto* shape = tt->mutable_shape();
  for (auto d : dims) {
    if (d < 0) shape->add_dim()->set_dim_param("batch");
    else shape->add_dim()->set_dim_value(d);
  }
}

onnx::NodeProto* add_node(onnx::GraphProto* g, const std::string& op, std::vector<std::string> in,
                          std::vector<std::string> out, const std::string& name = "") {
  auto* n = g->add_node();
  n->set_op_type(op);
  n->set_name(name.empty() ? op + "_" + std::to_string(g->node_size()) : name);
  for (auto& i : in) n->add_input(i);
  for (auto& o : out) n->add_output(o);
  return n;
}

onnx::TensorProto* add_float_init(onnx::GraphProto* g, const std::string& name, std::vector<std::int64_t> dims,
                                  float fill) {
  auto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  std::int64_t n = 1;
  for (auto d : dims) {
    t->add_dims(d);
    n *= d;
  }
  std::string raw(static_cast<std::size_t>(n) * 4, '\0');
  for (std::int64_t i = 0; i < n; ++i) std::memcpy(raw.data() + i * 4, &fill, 4);
  t->set_raw_data(raw);
  return t;
}

// A small valid model: Y = Relu(Conv(X, W, B)) with X [N,2,5,5], W [3,2,3,3].
onnx::ModelProto conv_model() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("conv");
  add_value(g->add_input(), "X", {-1, 2, 5, 5});
  add_value(g->add_output(), "Y", {-1, 3, 5, 5});
  add_float_init(g, "W", {3, 2, 3, 3}, 0.1f);
  add_float_init(g, "B", {3}, 0.5f);
  auto* conv = add_node(g, "Conv", {"X", "W", "B"}, {"C"}, "conv1");
  auto* pads = conv->add_attribute();
  pads->set_name("pads");
  pads->set_type(onnx::AttributeProto::INTS);
  for (int i = 0; i < 4; ++i) pads->add_ints(1);
  add_node(g, "Relu", {"C"}, {"Y"}, "relu1");
  return m;
}

std::string bytes_of(const onnx::ModelProto& m) { return m.SerializeAsString(); }

runtime::graph load(const onnx::ModelProto& m) { return runtime::load_onnx_bytes(bytes_of(m)); }

// Loads and prepares; the first failing stage must throw acg2vec::error.
void expect_load_error(const onnx::ModelProto& m, const std::string& fragment) {
  try {
    runtime::executor ex(load(m));
    ADD_FAILURE() << "expected a load error mentioning '" << fragment << "'";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

fs::path scratch(const std::string& name) {
  fs::path dir = fs::path(ACG2VEC_TEST_WORK) / "onnx_loader" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace

TEST(RuntimeOnnxLoader, ValidModelRunsAndMatchesTorch) {
  runtime::executor ex(load(conv_model()));
  ASSERT_EQ(ex.inputs().size(), 1u);
  EXPECT_EQ(ex.inputs()[0].shape, (std::vector<std::int64_t>{-1, 2, 5, 5}));
  EXPECT_EQ(ex.op_histogram().at("Conv"), 1);
  at::Tensor x = at::randn({3, 2, 5, 5});
  at::Tensor ref = at::relu(at::conv2d(x, at::full({3, 2, 3, 3}, 0.1f), at::full({3}, 0.5f), 1, 1));
  auto out = ex.run(std::vector<at::Tensor>{x});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(at::allclose(out[0], ref, 1e-5, 1e-6));
}

TEST(RuntimeOnnxLoader, TruncatedFileIsALoadError) {
  const std::string bytes = bytes_of(conv_model());
  for (std::size_t cut : {bytes.size() / 2, bytes.size() - 3, std::size_t{7}, std::size_t{0}}) {
    EXPECT_THROW(
        {
          runtime::executor ex(runtime::load_onnx_bytes(std::string_view(bytes).substr(0, cut)));
        },
        error)
        << "cut at " << cut;
  }
  EXPECT_THROW(runtime::load_onnx_bytes("this is not a protobuf at all \xff\xff\xff"), error);
  const fs::path dir = scratch("truncated");
  { std::ofstream(dir / "model.onnx", std::ios::binary) << bytes.substr(0, bytes.size() / 3); }
  EXPECT_THROW(runtime::load_onnx(dir / "model.onnx"), error);
  EXPECT_THROW(runtime::load_onnx(dir / "does_not_exist.onnx"), error);
}

TEST(RuntimeOnnxLoader, CorruptedBytesFailCleanly) {
  // Deterministic byte corruption of a valid file: every outcome is a clean load, a clean run or
  // an acg2vec::error; anything else (other exceptions, sanitizer reports) fails.
  const std::string good = bytes_of(conv_model());
  std::uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  int errors = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(next() % 4);
    for (int f = 0; f < flips; ++f) bytes[next() % bytes.size()] = static_cast<char>(next() & 0xff);
    try {
      runtime::executor ex(runtime::load_onnx_bytes(bytes));
      if (ex.inputs().size() == 1 && ex.inputs()[0].dtype == at::kFloat)
        (void)ex.run(std::vector<at::Tensor>{at::randn({1, 2, 5, 5})});
    } catch (const error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 0);
}

TEST(RuntimeOnnxLoader, MissingInitializerIsALoadError) {
  onnx::ModelProto m = conv_model();
  m.mutable_graph()->mutable_initializer()->RemoveLast();  // B
  expect_load_error(m, "'B'");
}

TEST(RuntimeOnnxLoader, WrongDimsAreErrors) {
  {  // raw data shorter than the declared shape
    onnx::ModelProto m = conv_model();
    m.mutable_graph()->mutable_initializer(0)->set_dims(0, 4);
    expect_load_error(m, "raw data holds");
  }
  {  // typed data count differs from the shape
    onnx::ModelProto m = conv_model();
    auto* b = m.mutable_graph()->mutable_initializer(1);
    b->clear_raw_data();
    b->add_float_data(1.0f);
    expect_load_error(m, "has 1 values");
  }
  {  // negative dimension
    onnx::ModelProto m = conv_model();
    m.mutable_graph()->mutable_initializer(1)->set_dims(0, -3);
    expect_load_error(m, "negative dimension");
  }
  {  // consistent tensors whose shapes do not fit the op: a run-time error, not a crash
    onnx::ModelProto m = conv_model();
    auto* w = m.mutable_graph()->mutable_initializer(0);
    w->set_dims(1, 4);
    w->set_raw_data(std::string(3 * 4 * 3 * 3 * 4, '\0'));
    runtime::executor ex(load(m));
    EXPECT_THROW(ex.run(std::vector<at::Tensor>{at::randn({1, 2, 5, 5})}), error);
  }
}

TEST(RuntimeOnnxLoader, CycleIsALoadError) {
  onnx::ModelProto m;
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  add_value(g->add_input(), "X", {1, 4});
  add_value(g->add_output(), "Y", {1, 4});
  add_node(g, "Add", {"X", "B"}, {"A"});
  add_node(g, "Relu", {"A"}, {"B"}, "loop_back");
  add_node(g, "Neg", {"A"}, {"Y"});
  expect_load_error(m, "cycle");
}

TEST(RuntimeOnnxLoader, UnknownOperatorNamesOpNodeAndOpset) {
  onnx::ModelProto m = conv_model();
  add_node(m.mutable_graph(), "FrobnicateV2", {"Y"}, {"Z"}, "frob");
  *m.mutable_graph()->mutable_output(0)->mutable_name() = "Z";
  try {
    runtime::executor ex(load(m));
    FAIL() << "expected an error";
  } catch (const error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.code(), errc::bad_parameter);
    EXPECT_NE(what.find("FrobnicateV2"), std::string::npos) << what;
    EXPECT_NE(what.find("frob"), std::string::npos) << what;
    EXPECT_NE(what.find("13"), std::string::npos) << what;
  }
  onnx::ModelProto ms = conv_model();
  ms.mutable_graph()->mutable_node(1)->set_domain("com.microsoft");
  expect_load_error(ms, "com.microsoft");
  onnx::ModelProto sub = conv_model();  // subgraph attributes (If/Loop) are refused at load
  auto* a = sub.mutable_graph()->mutable_node(1)->add_attribute();
  a->set_name("then_branch");
  a->set_type(onnx::AttributeProto::GRAPH);
  a->mutable_g()->set_name("g");
  expect_load_error(sub, "subgraph");
}

TEST(RuntimeOnnxLoader, HugeDeclaredShapesAreRefusedBeforeAllocation) {
  {  // an initializer declaring ~10^24 elements with no data
    onnx::ModelProto m = conv_model();
    auto* t = m.mutable_graph()->add_initializer();
    t->set_name("huge");
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(std::int64_t{1} << 40);
    t->add_dims(std::int64_t{1} << 40);
    expect_load_error(m, "huge");
  }
  {  // a constant shape that would make ConstantOfShape allocate terabytes while folding
    onnx::ModelProto m;
    m.add_opset_import()->set_version(13);
    auto* g = m.mutable_graph();
    add_value(g->add_input(), "X", {1});
    add_value(g->add_output(), "Y", {-1});
    auto* s = g->add_initializer();
    s->set_name("shape");
    s->set_data_type(onnx::TensorProto::INT64);
    s->add_dims(3);
    for (int i = 0; i < 3; ++i) s->add_int64_data(std::int64_t{1} << 20);
    add_node(g, "ConstantOfShape", {"shape"}, {"C"});
    add_node(g, "Add", {"C", "X"}, {"Y"});
    expect_load_error(m, "elements");
  }
  {  // the same through Expand at run time
    onnx::ModelProto m;
    m.add_opset_import()->set_version(13);
    auto* g = m.mutable_graph();
    add_value(g->add_input(), "X", {1});
    add_value(g->add_input(), "S", {2}, onnx::TensorProto::INT64);
    add_value(g->add_output(), "Y", {-1, -1});
    add_node(g, "Expand", {"X", "S"}, {"Y"});
    runtime::executor ex(load(m));
    at::Tensor shape = at::tensor(std::vector<std::int64_t>{std::int64_t{1} << 30, std::int64_t{1} << 30}, at::kLong);
    EXPECT_THROW(ex.run(std::vector<at::Tensor>{at::ones({1}), shape}), error);
  }
}

TEST(RuntimeOnnxLoader, ExternalDataIsConfinedToTheModelDirectory) {
  const fs::path dir = scratch("external");
  const std::vector<float> weights(3 * 2 * 3 * 3, 0.1f);
  {
    std::ofstream out(dir / "weights.bin", std::ios::binary);
    out.write("PAD!", 4);
    out.write(reinterpret_cast<const char*>(weights.data()), static_cast<std::streamsize>(weights.size() * 4));
  }
  auto with_external = [&](const std::string& location, const std::string& offset, const std::string& length) {
    onnx::ModelProto m = conv_model();
    auto* w = m.mutable_graph()->mutable_initializer(0);
    w->clear_raw_data();
    w->set_data_location(onnx::TensorProto::EXTERNAL);
    auto add = [&](const char* k, const std::string& v) {
      if (v.empty()) return;
      auto* e = w->add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    add("location", location);
    add("offset", offset);
    add("length", length);
    std::ofstream(dir / "model.onnx", std::ios::binary) << m.SerializeAsString();
    return dir / "model.onnx";
  };
  {
    runtime::executor ex(runtime::load_onnx(with_external("weights.bin", "4", "216")));
    at::Tensor x = at::randn({1, 2, 5, 5});
    at::Tensor ref = at::relu(at::conv2d(x, at::full({3, 2, 3, 3}, 0.1f), at::full({3}, 0.5f), 1, 1));
    EXPECT_TRUE(at::allclose(ex.run(std::vector<at::Tensor>{x})[0], ref, 1e-5, 1e-6));
  }
  EXPECT_THROW(runtime::load_onnx(with_external("weights.bin", "100", "216")), error);   // past the end
  EXPECT_THROW(runtime::load_onnx(with_external("weights.bin", "4", "100")), error);     // wrong length
  EXPECT_THROW(runtime::load_onnx(with_external("weights.bin", "99999999999", "")), error);
  EXPECT_THROW(runtime::load_onnx(with_external("weights.bin", "-1", "")), error);
  EXPECT_THROW(runtime::load_onnx(with_external("../external/weights.bin", "4", "216")), error);
  EXPECT_THROW(runtime::load_onnx(with_external("/etc/passwd", "", "")), error);
  EXPECT_THROW(runtime::load_onnx(with_external("missing.bin", "", "")), error);
  EXPECT_THROW(runtime::load_onnx(with_external("", "", "")), error);
  fs::create_symlink("/etc", dir / "escape");
  EXPECT_THROW(runtime::load_onnx(with_external("escape/passwd", "", "")), error);
  // From bytes there is no directory to resolve against.
  const fs::path good = with_external("weights.bin", "4", "216");
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THROW(runtime::load_onnx_bytes(bytes), error);
}

TEST(RuntimeOnnxLoader, Fp16WeightsAreUpcast) {
  onnx::ModelProto m = conv_model();
  auto* w = m.mutable_graph()->mutable_initializer(0);
  w->set_data_type(onnx::TensorProto::FLOAT16);
  const at::Tensor half = at::full({3, 2, 3, 3}, 0.1, at::kHalf);
  w->set_raw_data(std::string(static_cast<const char*>(half.data_ptr()), 54 * 2));
  runtime::graph g = load(m);
  EXPECT_EQ(g.initializers.at("W").scalar_type(), at::kFloat);
  runtime::executor ex(std::move(g));
  at::Tensor x = at::randn({2, 2, 5, 5});
  at::Tensor ref = at::relu(at::conv2d(x, half.to(at::kFloat), at::full({3}, 0.5f), 1, 1));
  EXPECT_TRUE(at::allclose(ex.run(std::vector<at::Tensor>{x})[0], ref, 1e-5, 1e-6));
}

TEST(RuntimeExecutor, ValidatesInputs) {
  runtime::executor ex(load(conv_model()));
  EXPECT_THROW(ex.run(std::vector<at::Tensor>{}), error);
  EXPECT_THROW(ex.run(std::vector<at::Tensor>{at::randn({1, 2, 5})}), error);              // rank
  EXPECT_THROW(ex.run(std::vector<at::Tensor>{at::randn({1, 3, 5, 5})}), error);           // static dim
  EXPECT_THROW(ex.run(std::vector<at::Tensor>{at::randn({1, 2, 5, 5}).to(at::kDouble)}), error);  // dtype
  EXPECT_THROW(ex.run(std::vector<at::Tensor>{at::Tensor()}), error);
  EXPECT_THROW(ex.run(std::map<std::string, at::Tensor>{{"x", at::randn({1, 2, 5, 5})}}), error);
  EXPECT_THROW(ex.run(std::map<std::string, at::Tensor>{{"X", at::randn({1, 2, 5, 5})}, {"extra", at::ones({1})}}),
               error);
  auto named = ex.run(std::map<std::string, at::Tensor>{{"X", at::randn({2, 2, 5, 5})}});
  EXPECT_EQ(named.at("Y").sizes(), (std::vector<std::int64_t>{2, 3, 5, 5}));
}

TEST(RuntimeExecutor, IntermediateValuesCanBeRequested) {
  runtime::executor ex(load(conv_model()), {"C"});
  ASSERT_EQ(ex.outputs().size(), 1u);
  EXPECT_EQ(ex.outputs()[0].name, "C");
  EXPECT_FALSE(ex.outputs()[0].rank_known);
  EXPECT_EQ(ex.step_count(), 1u);  // Relu is pruned
  at::Tensor x = at::randn({1, 2, 5, 5});
  at::Tensor ref = at::conv2d(x, at::full({3, 2, 3, 3}, 0.1f), at::full({3}, 0.5f), 1, 1);
  EXPECT_TRUE(at::allclose(ex.run(std::vector<at::Tensor>{x})[0], ref, 1e-5, 1e-6));
  EXPECT_THROW(runtime::executor(load(conv_model()), {"no_such_value"}), error);
}

TEST(RuntimeExecutor, ShapeArithmeticOnConstantsIsFoldedAtLoad) {
  // Reshape(X, Concat(Shape(init)[0:1], [-1])): everything but the Reshape is known at load.
  onnx::ModelProto m;
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  add_value(g->add_input(), "X", {6, 4});
  add_value(g->add_output(), "Y", {3, 8});
  add_float_init(g, "T", {3, 5}, 1.0f);
  auto* minus1 = g->add_initializer();
  minus1->set_name("minus1");
  minus1->set_data_type(onnx::TensorProto::INT64);
  minus1->add_dims(1);
  minus1->add_int64_data(-1);
  add_node(g, "Shape", {"T"}, {"s"});
  auto* starts = g->add_initializer();
  starts->set_name("zero");
  starts->set_data_type(onnx::TensorProto::INT64);
  starts->add_dims(1);
  starts->add_int64_data(0);
  auto* ends = g->add_initializer();
  ends->set_name("one");
  ends->set_data_type(onnx::TensorProto::INT64);
  ends->add_dims(1);
  ends->add_int64_data(1);
  add_node(g, "Slice", {"s", "zero", "one"}, {"s0"});
  auto* cat = add_node(g, "Concat", {"s0", "minus1"}, {"shape"});
  auto* axis = cat->add_attribute();
  axis->set_name("axis");
  axis->set_type(onnx::AttributeProto::INT);
  axis->set_i(0);
  add_node(g, "Reshape", {"X", "shape"}, {"Y"});
  runtime::executor ex(load(m));
  EXPECT_EQ(ex.step_count(), 1u);
  at::Tensor x = at::randn({6, 4});
  EXPECT_TRUE(at::equal(ex.run(std::vector<at::Tensor>{x})[0], x.reshape({3, 8})));
}

TEST(RuntimeExecutor, BatchDependentShapeChainsBecomeStaticReshapes) {
  // Y = Reshape(X, Concat(Unsqueeze(Gather(Shape(X), 0)), [24])) with a dynamic batch: the
  // chain folds to Reshape(X, [0, 24]) so that one kernel runs per call.
  onnx::ModelProto m;
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  add_value(g->add_input(), "X", {-1, 4, 6});
  add_value(g->add_output(), "Y", {-1, 24});
  auto int_init = [&](const std::string& name, std::vector<std::int64_t> v, bool scalar) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    if (!scalar) t->add_dims(static_cast<std::int64_t>(v.size()));
    for (auto x : v) t->add_int64_data(x);
  };
  int_init("zero", {0}, true);
  int_init("axes", {0}, false);
  int_init("rest", {24}, false);
  add_node(g, "Shape", {"X"}, {"s"});
  add_node(g, "Gather", {"s", "zero"}, {"b"});
  add_node(g, "Unsqueeze", {"b", "axes"}, {"b1"});
  auto* cat = add_node(g, "Concat", {"b1", "rest"}, {"shape"});
  auto* axis = cat->add_attribute();
  axis->set_name("axis");
  axis->set_type(onnx::AttributeProto::INT);
  axis->set_i(0);
  add_node(g, "Reshape", {"X", "shape"}, {"Y"});
  runtime::executor ex(load(m));
  EXPECT_EQ(ex.step_count(), 1u);
  for (std::int64_t batch : {1, 3}) {
    at::Tensor x = at::randn({batch, 4, 6});
    EXPECT_TRUE(at::equal(ex.run(std::vector<at::Tensor>{x})[0], x.reshape({batch, 24})));
  }
}

TEST(RuntimeExecutor, NamedDynamicDimensionsMustAgree) {
  onnx::ModelProto m;
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  add_value(g->add_input(), "A", {-1, 3});  // both dims named "batch" by add_value
  add_value(g->add_input(), "B", {-1, 3});
  add_value(g->add_output(), "Y", {-1, 3});
  add_node(g, "Add", {"A", "B"}, {"Y"});
  runtime::executor ex(load(m));
  EXPECT_NO_THROW(ex.run(std::vector<at::Tensor>{at::ones({2, 3}), at::ones({2, 3})}));
  EXPECT_THROW(ex.run(std::vector<at::Tensor>{at::ones({2, 3}), at::ones({1, 3})}), error);
}

TEST(RuntimeExecutor, GeluMatchesItsDefinition) {
  // Gelu (opset 20) has no case in libonnx-testdata 1.12; check it against the ONNX definition
  // evaluated element-wise in double precision with the C library.
  for (const std::string approximate : {"none", "tanh"}) {
    onnx::ModelProto m;
    m.add_opset_import()->set_version(20);
    auto* g = m.mutable_graph();
    add_value(g->add_input(), "X", {-1});
    add_value(g->add_output(), "Y", {-1});
    auto* n = add_node(g, "Gelu", {"X"}, {"Y"});
    auto* a = n->add_attribute();
    a->set_name("approximate");
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(approximate);
    runtime::executor ex(load(m));
    at::Tensor x = at::linspace(-6, 6, 241);
    at::Tensor y = ex.run(std::vector<at::Tensor>{x})[0];
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const double v = x[i].item<double>();
      const double expected = approximate == "none"
                                  ? 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)))
                                  : 0.5 * v * (1 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
      EXPECT_NEAR(y[i].item<double>(), expected, 1e-6 + 1e-5 * std::abs(expected)) << approximate << " at " << v;
    }
  }
}

TEST(RuntimeExecutor, ConcurrentRunsAgreeWithSequentialRuns) {
  runtime::executor ex(load(conv_model()));
  std::vector<at::Tensor> inputs, expected;
  for (int i = 0; i < 8; ++i) {
    inputs.push_back(at::randn({1 + i % 3, 2, 5, 5}));
    expected.push_back(ex.run(std::vector<at::Tensor>{inputs.back()})[0]);
  }
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 25; ++k) {
        const std::size_t i = static_cast<std::size_t>((t + k) % 8);
        if (!at::equal(ex.run(std::vector<at::Tensor>{inputs[i]})[0], expected[i])) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

namespace {

onnx::TensorProto* add_int64_init(onnx::GraphProto* g, const std::string& name, std::vector<std::int64_t> values) {
  auto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::INT64);
  t->add_dims(static_cast<std::int64_t>(values.size()));
  for (auto v : values) t->add_int64_data(v);
  return t;
}

}  // namespace

TEST(RuntimeExecutor, InPlaceKernelsNeverWriteIntoSharedValues) {
  // Values handed over at their last read may be overwritten, but never a graph input, a
  // constant, a value read twice by one node, or the storage of a view that is still live.
  onnx::ModelProto m;
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  add_value(g->add_input(), "X", {2, 4});
  for (const char* out : {"R", "V", "C", "S", "P", "Q"}) add_value(g->add_output(), out, {});
  add_float_init(g, "W", {4}, 0.25f);
  add_int64_init(g, "flat", {8});
  add_node(g, "Neg", {"X"}, {"A"});
  add_node(g, "Relu", {"X"}, {"R"});           // graph input: the caller's tensor
  add_node(g, "Reshape", {"A", "flat"}, {"V"});  // a view of A that stays live (an output)
  add_node(g, "Relu", {"A"}, {"B"});           // last read of A, but V shares its memory
  add_node(g, "Add", {"B", "B"}, {"C"});       // one node reading B twice
  add_node(g, "Neg", {"X"}, {"D"});
  add_node(g, "Sigmoid", {"D"}, {"S"});        // D is free: may be reused
  add_node(g, "Neg", {"X"}, {"E"});
  add_node(g, "Add", {"W", "E"}, {"P"});       // E is free, W a constant on the left
  add_node(g, "Neg", {"X"}, {"F"});
  add_node(g, "Mul", {"F", "W"}, {"Q"});       // F is free, W a constant on the right
  runtime::executor ex(load(m));
  const at::Tensor x = at::randn({2, 4});
  const at::Tensor x_before = x.clone();
  for (int run = 0; run < 2; ++run) {  // a second run sees the same constants
    auto out = ex.run(std::vector<at::Tensor>{x});
    ASSERT_EQ(out.size(), 6u);
    EXPECT_TRUE(at::equal(x, x_before));
    EXPECT_TRUE(at::equal(out[0], at::relu(x_before)));
    EXPECT_TRUE(at::equal(out[1], (-x_before).reshape({8})));
    EXPECT_TRUE(at::equal(out[2], 2 * at::relu(-x_before)));
    EXPECT_TRUE(at::allclose(out[3], at::sigmoid(-x_before)));
    EXPECT_TRUE(at::allclose(out[4], 0.25 - x_before));
    EXPECT_TRUE(at::allclose(out[5], -x_before * 0.25));
  }
}

TEST(RuntimeExecutor, ClipTakesScalarBoundsFromInputsOrAttributes) {
  for (int opset : {6, 13}) {
    onnx::ModelProto m;
    m.add_opset_import()->set_version(opset);
    auto* g = m.mutable_graph();
    add_value(g->add_input(), "X", {3, 5});
    add_value(g->add_output(), "Y", {3, 5});
    add_node(g, "Neg", {"X"}, {"N"});
    if (opset >= 11) {
      add_float_init(g, "lo", {}, -0.5f);
      add_float_init(g, "hi", {}, 0.75f);
      add_node(g, "Clip", {"N", "lo", "hi"}, {"Y"});
    } else {
      auto* clip = add_node(g, "Clip", {"N"}, {"Y"});
      for (auto [name, v] : {std::pair{"min", -0.5f}, std::pair{"max", 0.75f}}) {
        auto* a = clip->add_attribute();
        a->set_name(name);
        a->set_type(onnx::AttributeProto::FLOAT);
        a->set_f(v);
      }
    }
    runtime::executor ex(load(m));
    const at::Tensor x = at::randn({3, 5}) * 2;
    EXPECT_TRUE(at::equal(ex.run(std::vector<at::Tensor>{x})[0], at::clamp(-x, -0.5, 0.75))) << "opset " << opset;
  }
  // A bound with more than one value is not the scalar ONNX defines.
  onnx::ModelProto m;
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  add_value(g->add_input(), "X", {3});
  add_value(g->add_input(), "lo", {2});
  add_value(g->add_output(), "Y", {3});
  add_node(g, "Clip", {"X", "lo"}, {"Y"});
  runtime::executor ex(load(m));
  EXPECT_THROW(ex.run(std::vector<at::Tensor>{at::randn({3}), at::zeros({2})}), error);
}

TEST(RuntimeExecutor, BatchNormFoldsPastReadersThatNothingNeeds) {
  // The Keras loader gives each layer an NHWC view nobody runs; it must not block folding.
  onnx::ModelProto m = conv_model();
  auto* g = m.mutable_graph();
  g->mutable_node(1)->set_input(0, "BN");
  add_float_init(g, "scale", {3}, 2.0f);
  add_float_init(g, "shift", {3}, -0.25f);
  add_float_init(g, "mean", {3}, 0.125f);
  add_float_init(g, "var", {3}, 4.0f);
  add_node(g, "BatchNormalization", {"C", "scale", "shift", "mean", "var"}, {"BN"});
  auto* view = add_node(g, "Transpose", {"C"}, {"C_nhwc"});
  auto* perm = view->add_attribute();
  perm->set_name("perm");
  perm->set_type(onnx::AttributeProto::INTS);
  for (int p : {0, 2, 3, 1}) perm->add_ints(p);
  runtime::executor ex(load(m));
  EXPECT_EQ(ex.run_histogram().count("BatchNormalization"), 0u);
  const at::Tensor x = at::randn({2, 2, 5, 5});
  at::Tensor c = at::conv2d(x, at::full({3, 2, 3, 3}, 0.1f), at::full({3}, 0.5f), 1, 1);
  at::Tensor ref = at::relu((c - 0.125) / std::sqrt(4.0 + 1e-5) * 2.0 - 0.25);
  EXPECT_TRUE(at::allclose(ex.run(std::vector<at::Tensor>{x})[0], ref, 1e-5, 1e-5));
}

TEST(RuntimeExecutor, ConvolutionsWithWeightsLargerThanTheirInputMatchTorch) {
  // Small images under large weights take oneDNN's pre-reordered weights; large images the plain
  // path. Both, with strides, groups and asymmetric padding, must equal torch's convolution.
  struct conv_case {
    std::int64_t cin, cout, k, stride, group;
    std::vector<std::int64_t> pads;  // top, left, bottom, right
  };
  for (const conv_case& c : {conv_case{64, 128, 3, 1, 1, {1, 1, 1, 1}}, conv_case{64, 64, 3, 2, 4, {0, 0, 1, 1}},
                             conv_case{32, 256, 1, 1, 1, {0, 0, 0, 0}}}) {
    onnx::ModelProto m;
    m.add_opset_import()->set_version(13);
    auto* g = m.mutable_graph();
    add_value(g->add_input(), "X", {-1, c.cin, -1, -1});
    add_value(g->add_output(), "Y", {});
    at::manual_seed(7);
    const at::Tensor weight = at::randn({c.cout, c.cin / c.group, c.k, c.k});
    const at::Tensor bias = at::randn({c.cout});
    for (auto [name, t] : {std::pair{"W", weight}, std::pair{"B", bias}}) {
      auto* init = g->add_initializer();
      init->set_name(name);
      init->set_data_type(onnx::TensorProto::FLOAT);
      for (auto d : t.sizes()) init->add_dims(d);
      init->set_raw_data(std::string(static_cast<const char*>(t.data_ptr()), static_cast<std::size_t>(t.numel()) * 4));
    }
    auto* conv = add_node(g, "Conv", {"X", "W", "B"}, {"Y"});
    auto add_ints = [&](const char* name, std::vector<std::int64_t> v) {
      auto* a = conv->add_attribute();
      a->set_name(name);
      a->set_type(onnx::AttributeProto::INTS);
      for (auto x : v) a->add_ints(x);
    };
    add_ints("strides", {c.stride, c.stride});
    add_ints("pads", {c.pads[0], c.pads[1], c.pads[2], c.pads[3]});
    auto* group = conv->add_attribute();
    group->set_name("group");
    group->set_type(onnx::AttributeProto::INT);
    group->set_i(c.group);
    runtime::executor ex(load(m));
    for (std::int64_t side : {5, 6, 48, 5}) {  // small, small, large (plain path), small again
      const at::Tensor x = at::randn({side, c.cin, side, side});  // one symbolic size for batch, height, width
      const at::Tensor padded = at::constant_pad_nd(x, {c.pads[1], c.pads[3], c.pads[0], c.pads[2]}, 0);
      const std::vector<std::int64_t> stride{c.stride, c.stride}, zero{0, 0}, one{1, 1};
      const at::Tensor ref = at::conv2d(padded, weight, bias, stride, zero, one, c.group);
      const at::Tensor y = ex.run(std::vector<at::Tensor>{x})[0];
      ASSERT_EQ(y.sizes(), ref.sizes());
      EXPECT_TRUE(at::allclose(y, ref, 1e-4, 1e-4)) << "cin " << c.cin << " side " << side << " max diff "
                                                    << (y - ref).abs().max().item<float>();
    }
  }
}
