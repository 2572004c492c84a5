#include <cstring>

#include "core/error.h"
#include "fuzz_util.h"
#include "runtime/keras_h5.h"
#include "runtime/ncnn_loader.h"
#include "runtime/onnx_loader.h"
#include "runtime/safetensors.h"
#include "runtime/tfjs.h"
#include "targets.h"

namespace acg2vec::fuzz {

int fuzz_onnx_loader(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  try {
    // External data may only come from the (empty) scratch folder.
    auto g = runtime::load_onnx_bytes(as_text(data, size), scratch_dir());
    (void)g;
  } catch (const error&) {
  }
  return 0;
}

int fuzz_keras_h5(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  auto path = write_scratch("model.h5", as_text(data, size));
  try {
    auto g = runtime::load_keras_h5(path);
    (void)g;
  } catch (const error&) {
  }
  return 0;
}

int fuzz_tfjs(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  auto text = as_text(data, size);
  // model.json cannot hold a raw NUL, so the first one separates it from the shard bytes.
  auto cut = text.find('\0');
  auto json_part = text.substr(0, cut);
  auto shard = cut == std::string_view::npos ? std::string_view{} : text.substr(cut + 1);
  auto model_json = write_scratch("model.json", json_part);
  write_scratch("group1-shard1of1.bin", shard);
  try {
    auto g = runtime::load_tfjs_layers(model_json);
    (void)g;
  } catch (const error&) {
  }
  return 0;
}

int fuzz_safetensors(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  try {
    auto tensors = runtime::parse_safetensors(as_text(data, size), "fuzz.safetensors");
    (void)tensors;
  } catch (const error&) {
  }
  return 0;
}

int fuzz_ncnn(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  auto text = as_text(data, size);
  // A .param is text, so the first NUL separates it from the .bin bytes.
  auto cut = text.find('\0');
  auto param = text.substr(0, cut);
  auto bin = cut == std::string_view::npos ? std::string_view{} : text.substr(cut + 1);
  try {
    auto g = runtime::load_ncnn_bytes(param, bin);
    (void)g;
  } catch (const error&) {
  }
  return 0;
}

}  // namespace acg2vec::fuzz
