#pragma once
// Model folders as users already have them, without a manifest.json: the manifest is inferred
// from the files the publisher ships. A manifest.json, when present, always wins.
//
// Recognised layouts (docs/model-packs.md, "Drop-in folders"):
// - WD tagger (SmilingWolf's Hub repos): model.onnx + selected_tags.csv;
// - DeepDanbooru project: project.json (image_width/height) + a .h5 + tags.txt
//   (tags-character.txt marks characters); a resnet_custom_v3 also yields "<name>-embedding", the
//   illust2vec cut (add_43 + global average pooling);
// - immich CLIP: visual/model.onnx and textual/model.onnx + textual/tokenizer.json, two packs
//   "<name>-visual" (clip_image) and "<name>-textual" (clip_text searching the visual space);
// - Hugging Face CLIPModel: config.json naming CLIPModel + model.safetensors or pytorch_model.bin;
// - sentence-transformers: modules.json.

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/manifest.h"

namespace acg2vec::models {

struct inferred_pack {
  std::string layout;            ///< "wd_tagger", "deepdanbooru", "immich_clip", "hf_clip", "sentence_transformers"
  std::filesystem::path dir;     ///< the directory the manifest's file names are relative to
  nlohmann::json manifest;       ///< what manifest.json in `dir` would say
};

/// @brief The packs a folder without manifest.json holds, by its layout; empty when no layout matches.
std::vector<inferred_pack> infer_packs(const std::filesystem::path& dir);

/// @brief Every pack of a folder: its manifest.json when there is one, else the inferred ones.
/// Throws not_found (naming the layouts looked for) when the folder is neither.
std::vector<model_manifest> load_packs(const std::filesystem::path& dir);

/// @brief Whether load_packs(dir) would find anything (manifest.json or a known layout).
bool is_pack_dir(const std::filesystem::path& dir);

}  // namespace acg2vec::models