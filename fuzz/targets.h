#pragma once
// Fuzz entry points. Each takes arbitrary bytes, returns 0, and treats acg2vec::error as the
// expected rejection of bad input; any other exception, crash or sanitizer report is a bug.
// The same functions back the libFuzzer binaries (libfuzzer_main.cpp, fuzz preset) and the
// corpus replay + mutation smoke test (replay_main.cpp, normal build, ctest fuzz_replay_*).

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace acg2vec::fuzz {

/// @brief Image decode (normal limits), then one preprocess mode and the perceptual signature.
int fuzz_image(const std::uint8_t* data, std::size_t size);
/// @brief A raw HTTP request through httplib's parsers and our request-reading helpers.
int fuzz_http_parse(const std::uint8_t* data, std::size_t size);
/// @brief A JSON request body through the routes' body parsers (TF-Serving predict, search, infer).
int fuzz_json_body(const std::uint8_t* data, std::size_t size);
/// @brief Text through the WordPiece tokenizer.
int fuzz_wordpiece(const std::uint8_t* data, std::size_t size);
/// @brief Text through CLIP's byte-level BPE tokenizer.
int fuzz_clip_bpe(const std::uint8_t* data, std::size_t size);
/// @brief A serialized ONNX ModelProto through the ONNX loader.
int fuzz_onnx_loader(const std::uint8_t* data, std::size_t size);
/// @brief A Keras .h5 file through the HDF5 loader.
int fuzz_keras_h5(const std::uint8_t* data, std::size_t size);
/// @brief A TF.js model: model.json, a NUL byte, then the weight shard (group1-shard1of1.bin).
int fuzz_tfjs(const std::uint8_t* data, std::size_t size);
/// @brief A .safetensors file through the safetensors parser.
int fuzz_safetensors(const std::uint8_t* data, std::size_t size);
/// @brief Bytes as they arrive on a connection: request heads and chunked bodies under the wire
/// limits, fed in pieces, and the request rebuilt for the handler layer.
int fuzz_http_wire(const std::uint8_t* data, std::size_t size);
/// @brief Bytes as the JSON-carrying multipart fields (metadata, extend) of the write routes.
int fuzz_multipart_fields(const std::uint8_t* data, std::size_t size);
/// @brief Bytes as an API key file, and the keys then presented in headers.
int fuzz_key_file(const std::uint8_t* data, std::size_t size);
/// @brief An ncnn model: the .param text, a NUL byte, then the .bin weights.
int fuzz_ncnn(const std::uint8_t* data, std::size_t size);

struct target {
  std::string_view name;
  int (*entry)(const std::uint8_t*, std::size_t);
};

inline constexpr target all_targets[] = {
    {"image", fuzz_image},         {"http_parse", fuzz_http_parse},   {"json_body", fuzz_json_body},
    {"wordpiece", fuzz_wordpiece}, {"clip_bpe", fuzz_clip_bpe},       {"onnx_loader", fuzz_onnx_loader},
    {"keras_h5", fuzz_keras_h5},   {"tfjs", fuzz_tfjs},               {"safetensors", fuzz_safetensors},
    {"http_wire", fuzz_http_wire}, {"multipart_fields", fuzz_multipart_fields}, {"key_file", fuzz_key_file},
    {"ncnn", fuzz_ncnn},
};

}  // namespace acg2vec::fuzz
