// Loader-level tests for the Keras .h5 and TF.js layers-model loaders: file formats, weight
// decoding, layout translation and load-time errors. Numerical parity with TensorFlow.js is in
// keras_parity_test.cpp (driven by tests/parity/test_keras_parity.py).
#include <gtest/gtest.h>
#include <hdf5.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/executor.h"
#include "runtime/keras_h5.h"
#include "runtime/keras_layers.h"
#include "runtime/tfjs.h"

namespace acg2vec::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path work_dir(const std::string& name) {
  fs::path dir = fs::path(ACG2VEC_TEST_WORK) / "keras" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

json input_layer(const std::string& name, std::vector<json> shape) {
  json s = json::array({nullptr});
  for (auto& d : shape) s.push_back(d);
  return {{"name", name}, {"class_name", "InputLayer"}, {"config", {{"batch_input_shape", s}, {"name", name}}},
          {"inbound_nodes", json::array()}};
}

json layer(const std::string& name, const std::string& cls, json config, std::vector<std::string> inputs) {
  json refs = json::array();
  for (auto& i : inputs) refs.push_back(json::array({i, 0, 0, json::object()}));
  config["name"] = name;
  return {{"name", name}, {"class_name", cls}, {"config", config}, {"inbound_nodes", json::array({refs})}};
}

json functional(std::vector<json> layers, const std::string& in, const std::string& out) {
  return {{"class_name", "Model"},
          {"config",
           {{"name", "m"},
            {"layers", layers},
            {"input_layers", json::array({json::array({in, 0, 0})})},
            {"output_layers", json::array({json::array({out, 0, 0})})}}}};
}

const node* find_op(const graph& g, const std::string& op) {
  for (const auto& n : g.nodes) {
    if (n.op_type == op) return &n;
  }
  return nullptr;
}

const node* producer(const graph& g, const std::string& value) {
  for (const auto& n : g.nodes) {
    for (const auto& o : n.outputs) {
      if (o == value) return &n;
    }
  }
  return nullptr;
}

template <class F>
error expect_error(F&& f) {
  try {
    f();
  } catch (const error& e) {
    return e;
  }
  ADD_FAILURE() << "no acg2vec::error thrown";
  return error(errc::internal, "");
}

TEST(KerasLayers, WeightNames) {
  EXPECT_EQ(keras_weight_short_name("conv1/kernel:0"), "kernel");
  EXPECT_EQ(keras_weight_short_name("model/block/conv/moving_mean:0"), "moving_mean");
  EXPECT_EQ(keras_weight_short_name("Conv1/kernel"), "kernel");
  EXPECT_EQ(keras_weight_owner("model/block/conv/kernel:0"), "conv");
  EXPECT_EQ(keras_weight_owner("Conv1/kernel"), "Conv1");
  EXPECT_EQ(keras_weight_owner("kernel:0"), "");
}

// TF 'same' padding puts the odd extra row/column at the bottom/right; ONNX pads are
// [top, left, bottom, right]. A 3x3/2 conv on 8x6: out 4x3, total pad 1 (rows) and 2 (cols).
TEST(KerasLayers, SamePaddingIsAsymmetricAndKernelIsOihw) {
  auto kernel = at::arange(3 * 3 * 2 * 4, at::kFloat).reshape({3, 3, 2, 4});  // HWIO
  keras_weights w;
  w["conv"] = {{"kernel", kernel}, {"bias", at::zeros({4})}};
  auto g = translate_keras_model(
      functional({input_layer("in", {8, 6, 2}),
                  layer("conv", "Conv2D",
                        {{"filters", 4}, {"kernel_size", {3, 3}}, {"strides", {2, 2}}, {"padding", "same"}}, {"in"})},
                 "in", "conv"),
      w, "test");
  const node* conv = find_op(g, "Conv");
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(std::get<std::vector<std::int64_t>>(conv->attributes.at("pads")), (std::vector<std::int64_t>{0, 0, 1, 1}));
  const auto& oihw = g.initializers.at(conv->inputs[1]);
  ASSERT_EQ(oihw.sizes(), (at::IntArrayRef{4, 2, 3, 3}));
  EXPECT_EQ(oihw[3][1][2][0].item<float>(), kernel[2][0][1][3].item<float>());
  // The graph keeps the Keras NHWC input and output; the layer name is the NHWC view.
  ASSERT_EQ(g.inputs.size(), 1u);
  EXPECT_EQ(g.inputs[0].shape, (std::vector<std::int64_t>{-1, 8, 6, 2}));
  ASSERT_EQ(g.outputs.size(), 1u);
  EXPECT_EQ(g.outputs[0].name, "conv");
  EXPECT_EQ(g.outputs[0].shape, (std::vector<std::int64_t>{-1, 4, 3, 4}));
  const node* view = producer(g, "conv");
  ASSERT_NE(view, nullptr);
  EXPECT_EQ(view->op_type, "Transpose");
  EXPECT_EQ(view->inputs[0], "conv:nchw");
}

TEST(KerasLayers, DepthwiseKernelIsChannelMajor) {
  auto kernel = at::randn({3, 3, 3, 2});  // [kh, kw, cin, multiplier]
  keras_weights w;
  w["dw"] = {{"depthwise_kernel", kernel}, {"bias", at::zeros({6})}};
  auto g = translate_keras_model(
      functional({input_layer("in", {5, 5, 3}),
                  layer("dw", "DepthwiseConv2D",
                        {{"kernel_size", {3, 3}}, {"depth_multiplier", 2}, {"padding", "valid"}}, {"in"})},
                 "in", "dw"),
      w, "test");
  const node* conv = find_op(g, "Conv");
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(std::get<std::int64_t>(conv->attributes.at("group")), 3);
  const auto& k = g.initializers.at(conv->inputs[1]);
  ASSERT_EQ(k.sizes(), (at::IntArrayRef{6, 1, 3, 3}));
  // Output channel c*multiplier + m reads input channel c with multiplier slice m.
  EXPECT_EQ(k[2 * 2 + 1][0][1][2].item<float>(), kernel[1][2][2][1].item<float>());
}

TEST(KerasLayers, FlattenUsesKerasOrder) {
  auto g = translate_keras_model(
      functional({input_layer("in", {2, 3, 4}), layer("flat", "Flatten", json::object(), {"in"})}, "in", "flat"),
      {}, "test");
  const node* flat = producer(g, "flat");
  ASSERT_NE(flat, nullptr);
  EXPECT_EQ(flat->op_type, "Flatten");
  EXPECT_EQ(flat->inputs[0], "in");  // the NHWC graph input, not the NCHW transpose
  EXPECT_EQ(g.outputs[0].shape, (std::vector<std::int64_t>{-1, 24}));
}

TEST(KerasLayers, UnknownLayerClassNamesTheLayer) {
  auto e = expect_error([] {
    translate_keras_model(
        functional({input_layer("in", {4}), layer("mystery_7", "Lambda", json::object(), {"in"})}, "in", "mystery_7"),
        {}, "model.h5");
  });
  EXPECT_EQ(e.code(), errc::not_implemented);
  EXPECT_NE(std::string(e.what()).find("mystery_7"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("Lambda"), std::string::npos) << e.what();
}

TEST(KerasLayers, MissingAndMisshapedWeightsNameTheLayer) {
  auto model = functional({input_layer("in", {4}), layer("head", "Dense", {{"units", 3}}, {"in"})}, "in", "head");
  auto missing = expect_error([&] { translate_keras_model(model, {}, "model.h5"); });
  EXPECT_EQ(missing.code(), errc::bad_parameter);
  EXPECT_NE(std::string(missing.what()).find("'head'"), std::string::npos) << missing.what();
  EXPECT_NE(std::string(missing.what()).find("missing"), std::string::npos) << missing.what();

  keras_weights w;
  w["head"] = {{"kernel", at::zeros({5, 3})}, {"bias", at::zeros({3})}};
  auto shape = expect_error([&] { translate_keras_model(model, w, "model.h5"); });
  EXPECT_EQ(shape.code(), errc::bad_parameter);
  EXPECT_NE(std::string(shape.what()).find("'head'"), std::string::npos) << shape.what();
  EXPECT_NE(std::string(shape.what()).find("[5,3]"), std::string::npos) << shape.what();
}

TEST(KerasLayers, SelectOutputsKeepsOnlyWhatACutNeeds) {
  keras_weights w;
  w["head"] = {{"kernel", at::zeros({4, 3})}, {"bias", at::zeros({3})}};
  auto g = translate_keras_model(functional({input_layer("in", {4}), layer("act", "Activation", {{"activation", "relu"}}, {"in"}),
                                             layer("head", "Dense", {{"units", 3}}, {"act"})},
                                            "in", "head"),
                                 w, "test");
  select_outputs(g, {"act"});
  ASSERT_EQ(g.outputs.size(), 1u);
  EXPECT_EQ(g.outputs[0].name, "act");
  EXPECT_EQ(find_op(g, "Gemm"), nullptr);
  EXPECT_TRUE(g.initializers.empty());
  EXPECT_EQ(expect_error([&] { select_outputs(g, {"nope"}); }).code(), errc::not_found);
}

// A Keras application used as a layer (x = base(inputs)) is inlined; its output is also
// reachable under the nested model's name.
TEST(KerasLayers, NestedModelIsInlined) {
  auto base = functional({input_layer("base_in", {4}), layer("inner", "Dense", {{"units", 3}}, {"base_in"})},
                         "base_in", "inner");
  base["name"] = "backbone";
  base["config"]["name"] = "backbone";
  base["inbound_nodes"] = json::array({json::array({json::array({"in", 0, 0, json::object()})})});
  auto model = functional({input_layer("in", {4}), base, layer("head", "Dense", {{"units", 2}}, {"backbone"})}, "in", "head");
  keras_weights w;
  w["inner"] = {{"kernel", at::zeros({4, 3})}, {"bias", at::zeros({3})}};
  w["head"] = {{"kernel", at::zeros({3, 2})}, {"bias", at::zeros({2})}};
  auto g = translate_keras_model(model, w, "test");
  ASSERT_EQ(g.inputs.size(), 1u);
  EXPECT_EQ(g.inputs[0].name, "in");
  ASSERT_NE(producer(g, "inner"), nullptr);
  EXPECT_EQ(producer(g, "inner")->inputs[0], "in");
  ASSERT_NE(producer(g, "backbone"), nullptr);
  EXPECT_EQ(producer(g, "head")->inputs[0], "backbone");
}

// Keras 3 writes inbound nodes as {"args": [__keras_tensor__ ...], "kwargs": {}} and the input
// shape as batch_shape.
TEST(KerasLayers, Keras3ConfigFormat) {
  auto tensor_ref = [](const std::string& from) {
    return json{{"class_name", "__keras_tensor__"},
                {"config", {{"shape", {nullptr, 4}}, {"dtype", "float32"}, {"keras_history", {from, 0, 0}}}}};
  };
  json in = {{"name", "in"}, {"class_name", "InputLayer"},
             {"config", {{"batch_shape", {nullptr, 4}}, {"dtype", "float32"}, {"name", "in"}}}, {"inbound_nodes", json::array()}};
  json act = {{"name", "act"}, {"class_name", "Activation"}, {"config", {{"name", "act"}, {"activation", "tanh"}}},
              {"inbound_nodes", json::array({{{"args", json::array({tensor_ref("in")})}, {"kwargs", json::object()}}})}};
  json add = {{"name", "sum"}, {"class_name", "Add"}, {"config", {{"name", "sum"}}},
              {"inbound_nodes",
               json::array({{{"args", json::array({json::array({tensor_ref("in"), tensor_ref("act")})})}, {"kwargs", json::object()}}})}};
  json model = {{"class_name", "Functional"},
                {"config", {{"name", "k3"}, {"layers", {in, act, add}}, {"input_layers", {"in", 0, 0}}, {"output_layers", {"sum", 0, 0}}}}};
  auto g = translate_keras_model(model, {}, "test");
  const node* sum = producer(g, "sum");
  ASSERT_NE(sum, nullptr);
  EXPECT_EQ(sum->op_type, "Add");
  EXPECT_EQ(sum->inputs, (std::vector<std::string>{"in", "act"}));
}

// Keras 2 Sequential: the first layer carries batch_input_shape, there is no InputLayer.
TEST(KerasLayers, SequentialWithoutInputLayer) {
  json model = {{"class_name", "Sequential"},
                {"config",
                 {{"name", "seq"},
                  {"layers",
                   {{{"class_name", "Conv2D"},
                     {"config", {{"name", "c"}, {"filters", 2}, {"kernel_size", {1, 1}}, {"batch_input_shape", {nullptr, 3, 3, 1}}}}},
                    {{"class_name", "GlobalAveragePooling2D"}, {"config", {{"name", "gap"}}}}}}}}};
  keras_weights w;
  w["c"] = {{"kernel", at::zeros({1, 1, 1, 2})}, {"bias", at::zeros({2})}};
  auto g = translate_keras_model(model, w, "test");
  ASSERT_EQ(g.inputs.size(), 1u);
  EXPECT_EQ(g.inputs[0].shape, (std::vector<std::int64_t>{-1, 3, 3, 1}));
  ASSERT_EQ(g.outputs.size(), 1u);
  EXPECT_EQ(g.outputs[0].name, "gap");
  EXPECT_EQ(g.outputs[0].shape, (std::vector<std::int64_t>{-1, 2}));
}

// Keras ReLU: f(x) = max_value for x >= max_value, x for threshold <= x < max_value,
// negative_slope * (x - threshold) otherwise (keras.layers.ReLU documentation).
TEST(KerasLayers, ReluWithThresholdSlopeAndMax) {
  auto model = functional({input_layer("in", {5}), layer("r", "ReLU", {{"max_value", 6.0}, {"negative_slope", 0.1}, {"threshold", 1.0}}, {"in"})},
                          "in", "r");
  executor exec(translate_keras_model(model, {}, "test"));
  auto y = exec.run({at::tensor({-2.f, 0.5f, 1.5f, 3.f, 7.f}).reshape({1, 5})})[0];
  const float want[5] = {-0.3f, -0.05f, 1.5f, 3.f, 6.f};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(y[0][i].item<float>(), want[i], 1e-6) << i;
}

// ---- TF.js ------------------------------------------------------------------------------

json dense_model_json(json weights, json paths) {
  return {{"format", "layers-model"},
          {"modelTopology",
           {{"keras_version", "2.2.4"},
            {"model_config", functional({input_layer("in", {4}), layer("d", "Dense", {{"units", 2}}, {"in"})}, "in", "d")}}},
          {"weightsManifest", json::array({{{"paths", paths}, {"weights", weights}}})}};
}

TEST(Tfjs, Uint8WeightsAcrossShardsWithoutBinSuffix) {
  auto dir = work_dir("uint8");
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>(i * 30));  // kernel [4,2]
  bytes.push_back(static_cast<char>(255));                                   // bias [2]
  bytes.push_back(static_cast<char>(0));
  write_file(dir / "group1-shard1of2", bytes.substr(0, 5));  // split inside the kernel
  write_file(dir / "group1-shard2of2", bytes.substr(5));
  json weights = json::array(
      {{{"name", "d/kernel"}, {"shape", {4, 2}}, {"dtype", "float32"},
        {"quantization", {{"dtype", "uint8"}, {"min", -1.5}, {"scale", 0.01}}}},
       {{"name", "d/bias"}, {"shape", {2}}, {"dtype", "float32"}, {"quantization", {{"dtype", "uint8"}, {"min", 0.25}, {"scale", 0.5}}}}});
  write_file(dir / "model.json", dense_model_json(weights, {"group1-shard1of2", "group1-shard2of2"}).dump());
  auto w = read_tfjs_weights(dir / "model.json");
  ASSERT_EQ(w.at("d").size(), 2u);
  const auto& kernel = w.at("d")[0].value;
  ASSERT_EQ(kernel.sizes(), (at::IntArrayRef{4, 2}));
  // tfjs io.decodeWeights: value = min + scale * q
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(kernel.flatten()[i].item<float>(), static_cast<float>(-1.5 + 0.01 * (i * 30)));
  EXPECT_FLOAT_EQ(w.at("d")[1].value[0].item<float>(), 0.25f + 0.5f * 255);
  EXPECT_FLOAT_EQ(w.at("d")[1].value[1].item<float>(), 0.25f);
  auto g = load_tfjs_layers(dir / "model.json");
  EXPECT_NE(find_op(g, "Gemm"), nullptr);
}

TEST(Tfjs, Float16AndFloat32WeightsAndBinSuffix) {
  auto dir = work_dir("f16");
  std::string bytes;
  const std::uint16_t halves[8] = {0x3C00, 0xC000, 0x3800, 0x0000, 0x4200, 0xBC00, 0x3555, 0x7BFF};  // 1,-2,.5,0,3,-1,~1/3,65504
  bytes.append(reinterpret_cast<const char*>(halves), sizeof halves);
  const float bias[2] = {0.125f, -7.5f};
  bytes.append(reinterpret_cast<const char*>(bias), sizeof bias);
  write_file(dir / "weights.bin", bytes);  // the manifest names it without ".bin"
  json weights = json::array({{{"name", "d/kernel"}, {"shape", {4, 2}}, {"dtype", "float32"}, {"quantization", {{"dtype", "float16"}}}},
                              {{"name", "d/bias"}, {"shape", {2}}, {"dtype", "float32"}}});
  write_file(dir / "model.json", dense_model_json(weights, {"weights"}).dump());
  auto w = read_tfjs_weights(dir / "model.json");
  auto k = w.at("d")[0].value.flatten();
  const float want[8] = {1.f, -2.f, .5f, 0.f, 3.f, -1.f, 0.333251953125f, 65504.f};
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(k[i].item<float>(), want[i]);
  EXPECT_FLOAT_EQ(w.at("d")[1].value[1].item<float>(), -7.5f);
}

TEST(Tfjs, LoadErrorsNameTheCulprit) {
  auto dir = work_dir("errors");
  json weights = json::array({{{"name", "d/kernel"}, {"shape", {4, 2}}, {"dtype", "float32"}},
                              {{"name", "d/bias"}, {"shape", {2}}, {"dtype", "float32"}}});
  write_file(dir / "model.json", dense_model_json(weights, {"shard"}).dump());
  auto missing = expect_error([&] { load_tfjs_layers(dir / "model.json"); });
  EXPECT_EQ(missing.code(), errc::not_found);
  EXPECT_NE(std::string(missing.what()).find("shard"), std::string::npos) << missing.what();

  write_file(dir / "shard", std::string(8 * 4 + 4, '\0'));  // bias is 4 bytes short
  auto truncated = expect_error([&] { load_tfjs_layers(dir / "model.json"); });
  EXPECT_EQ(truncated.code(), errc::bad_parameter);
  EXPECT_NE(std::string(truncated.what()).find("d/bias"), std::string::npos) << truncated.what();

  write_file(dir / "bad.json", "{\"modelTopology\": ");
  EXPECT_EQ(expect_error([&] { load_tfjs_layers(dir / "bad.json"); }).code(), errc::bad_parameter);
  write_file(dir / "graph.json", R"({"format": "graph-model", "modelTopology": {}})");
  EXPECT_EQ(expect_error([&] { load_tfjs_layers(dir / "graph.json"); }).code(), errc::not_implemented);
  EXPECT_EQ(expect_error([&] { load_tfjs_layers(dir / "absent.json"); }).code(), errc::not_found);

  // A manifest whose weights do not fit the layer fails at load, naming the layer.
  write_file(dir / "shard", std::string(8 * 4 + 8, '\0'));
  json wrong = json::array({{{"name", "d/kernel"}, {"shape", {2, 4}}, {"dtype", "float32"}},
                            {{"name", "d/bias"}, {"shape", {2}}, {"dtype", "float32"}}});
  write_file(dir / "model.json", dense_model_json(wrong, {"shard"}).dump());
  auto mismatch = expect_error([&] { load_tfjs_layers(dir / "model.json"); });
  EXPECT_NE(std::string(mismatch.what()).find("layer 'd'"), std::string::npos) << mismatch.what();
}

// ---- Keras .h5 ----------------------------------------------------------------------------

// Minimal writer for the tf.keras 2.x HDF5 layout, enough to exercise the reader's string and
// dataset handling; the full layout is tested by the parity fixtures written with h5py.
class h5_writer {
 public:
  explicit h5_writer(const fs::path& p) : file_(H5Fcreate(p.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) {}
  ~h5_writer() { H5Fclose(file_); }
  hid_t group(const std::string& path) { return H5Gcreate2(file_, path.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT); }
  hid_t root() const { return file_; }

  static void vlen_string(hid_t obj, const char* name, const std::string& value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    const char* p = value.c_str();
    H5Awrite(attr, type, &p);
    H5Aclose(attr), H5Sclose(space), H5Tclose(type);
  }

  static void fixed_strings(hid_t obj, const char* name, const std::vector<std::string>& values) {
    std::size_t width = 1;
    for (const auto& v : values) width = std::max(width, v.size());
    std::string buf;
    for (const auto& v : values) buf += v + std::string(width - v.size(), '\0');
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, width);
    H5Tset_strpad(type, H5T_STR_NULLPAD);
    hsize_t n = values.size();
    hid_t space = H5Screate_simple(1, &n, nullptr);
    hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (n) H5Awrite(attr, type, buf.data());
    H5Aclose(attr), H5Sclose(space), H5Tclose(type);
  }

  void dataset(const std::string& path, const at::Tensor& t) {
    std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
    hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t set = H5Dcreate2(file_, path.c_str(), H5T_IEEE_F64LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    auto d = t.to(at::kDouble).contiguous();
    H5Dwrite(set, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d.data_ptr<double>());
    H5Dclose(set), H5Pclose(lcpl), H5Sclose(space);
  }

 private:
  hid_t file_;
};

void write_dense_h5(const fs::path& p, bool with_config, bool with_bias) {
  h5_writer h5(p);
  if (with_config) {
    auto cfg = functional({input_layer("in", {4}), layer("d", "Dense", {{"units", 2}}, {"in"})}, "in", "d");
    h5_writer::vlen_string(h5.root(), "model_config", cfg.dump());
  }
  hid_t mw = h5.group("model_weights");
  h5_writer::fixed_strings(mw, "layer_names", {"in", "d"});
  hid_t gi = h5.group("model_weights/in");
  h5_writer::fixed_strings(gi, "weight_names", {});
  hid_t gd = h5.group("model_weights/d");
  std::vector<std::string> names = {"d/kernel:0"};
  if (with_bias) names.push_back("d/bias:0");
  h5_writer::fixed_strings(gd, "weight_names", names);
  h5.dataset("model_weights/d/d/kernel:0", at::arange(8, at::kDouble).reshape({4, 2}) / 8);
  if (with_bias) h5.dataset("model_weights/d/d/bias:0", at::tensor({0.5, -0.5}, at::kDouble));
  H5Gclose(gd), H5Gclose(gi), H5Gclose(mw);
}

TEST(KerasH5, ReadsConfigAndWeights) {
  auto dir = work_dir("h5");
  write_dense_h5(dir / "m.h5", true, true);
  auto w = read_keras_h5_weights(dir / "m.h5");
  ASSERT_EQ(w.at("d").size(), 2u);
  EXPECT_EQ(w.at("d")[0].name, "kernel");
  EXPECT_FLOAT_EQ(w.at("d")[0].value[3][1].item<float>(), 7.f / 8);  // float64 storage read as float32
  EXPECT_FLOAT_EQ(w.at("d")[1].value[1].item<float>(), -0.5f);
  auto g = load_keras_h5(dir / "m.h5");
  EXPECT_NE(find_op(g, "Gemm"), nullptr);
  ASSERT_EQ(g.outputs.size(), 1u);
  EXPECT_EQ(g.outputs[0].name, "d");
}

// A nested model's weights live in one group, scoped by sub-layer name.
TEST(KerasH5, NestedModelWeightsAreScopedBySubLayer) {
  auto dir = work_dir("h5_nested");
  auto base = functional({input_layer("base_in", {4}), layer("inner", "Dense", {{"units", 2}}, {"base_in"})}, "base_in", "inner");
  base["name"] = "backbone";
  base["config"]["name"] = "backbone";
  base["inbound_nodes"] = json::array({json::array({json::array({"in", 0, 0, json::object()})})});
  auto model = functional({input_layer("in", {4}), base}, "in", "backbone");
  {
    h5_writer h5(dir / "nested.h5");
    h5_writer::vlen_string(h5.root(), "model_config", model.dump());
    hid_t mw = h5.group("model_weights");
    h5_writer::fixed_strings(mw, "layer_names", {"in", "backbone"});
    hid_t gi = h5.group("model_weights/in");
    h5_writer::fixed_strings(gi, "weight_names", {});
    hid_t gb = h5.group("model_weights/backbone");
    h5_writer::fixed_strings(gb, "weight_names", {"inner/kernel:0", "inner/bias:0"});
    h5.dataset("model_weights/backbone/inner/kernel:0", at::ones({4, 2}, at::kDouble));
    h5.dataset("model_weights/backbone/inner/bias:0", at::ones({2}, at::kDouble));
    H5Gclose(gb), H5Gclose(gi), H5Gclose(mw);
  }
  auto w = read_keras_h5_weights(dir / "nested.h5");
  ASSERT_EQ(w.count("inner"), 1u);
  EXPECT_EQ(w.at("inner").size(), 2u);
  auto g = load_keras_h5(dir / "nested.h5");
  EXPECT_EQ(g.outputs[0].name, "backbone");
  EXPECT_NE(find_op(g, "Gemm"), nullptr);
}

TEST(KerasH5, LoadErrorsNameTheCulprit) {
  auto dir = work_dir("h5_errors");
  write_dense_h5(dir / "nobias.h5", true, false);
  auto e = expect_error([&] { load_keras_h5(dir / "nobias.h5"); });
  EXPECT_EQ(e.code(), errc::bad_parameter);
  EXPECT_NE(std::string(e.what()).find("layer 'd'"), std::string::npos) << e.what();

  write_dense_h5(dir / "weights_only.h5", false, true);
  auto no_config = expect_error([&] { load_keras_h5(dir / "weights_only.h5"); });
  EXPECT_NE(std::string(no_config.what()).find("model_config"), std::string::npos) << no_config.what();

  write_file(dir / "text.h5", "not hdf5");
  EXPECT_EQ(expect_error([&] { load_keras_h5(dir / "text.h5"); }).code(), errc::bad_parameter);
  EXPECT_EQ(expect_error([&] { load_keras_h5(dir / "absent.h5"); }).code(), errc::not_found);
}

}  // namespace
}  // namespace acg2vec::runtime
