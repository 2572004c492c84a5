#pragma once
// Loading model weights from the checkpoint formats Hugging Face users have: model.safetensors (single or
// sharded with model.safetensors.index.json) and pytorch_model.bin (torch.save zip archive of a state dict).

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

namespace acg2vec::runtime {

/// Parameter name -> tensor (CPU, contiguous, in the checkpoint's dtype).
using tensor_map = std::map<std::string, at::Tensor>;

/// @brief Reads one .safetensors file (F64/F32/F16/BF16/I64/I32/I16/I8/U8/BOOL); header, offsets and lengths
/// are validated and a malformed file is bad_parameter.
tensor_map load_safetensors(const std::filesystem::path& path);
/// @brief Parses safetensors bytes already in memory (same checks as load_safetensors).
tensor_map parse_safetensors(std::string_view bytes, const std::string& origin);
/// @brief Reads a sharded checkpoint from its model.safetensors.index.json (every mapped name must be present).
tensor_map load_safetensors_index(const std::filesystem::path& index_path);
/// @brief Reads a torch.save zip archive holding a dict of tensors (a state dict). The legacy pre-1.6
/// non-zip format is not supported.
tensor_map load_torch_state_dict(const std::filesystem::path& path);
/// @brief Reads a sharded torch checkpoint from its pytorch_model.bin.index.json.
tensor_map load_torch_state_dict_index(const std::filesystem::path& index_path);
/// @brief Loads a model folder's weights, preferring model.safetensors, then its sharded index, then
/// pytorch_model.bin, then its sharded index; not_found when none exists.
tensor_map load_checkpoint(const std::filesystem::path& dir);
/// @brief Writes tensors as a .safetensors file (used for exports and tests).
void save_safetensors(const std::filesystem::path& path, const tensor_map& tensors);

}  // namespace acg2vec::runtime
