// The packs `models pull NAME` knows. Sources are the publishers' own repositories; the revision
// is resolved at pull time and pinned in the installed pack (.acg2vec-pull.json), so `models list`
// says exactly which commit is being served. Sizes are the published download sizes, rounded; the
// pull prints the exact figure from the Hub before it starts.
#include "hub/hub.h"

namespace acg2vec::hub {

namespace {

catalogue_entry wd(const std::string& name, const std::string& arch, std::uint64_t mb, bool default_set) {
  catalogue_entry e;
  e.name = name;
  e.source = "hf://SmilingWolf/" + name;
  e.files = {"model.onnx", "selected_tags.csv"};
  e.what = "WD v3 tagger (" + arch + ", 448 px, 10,861 Danbooru tags) — drop-in WD layout";
  e.license = "apache-2.0";
  e.approx_bytes = mb * 1000 * 1000;
  e.default_set = default_set;
  return e;
}

std::vector<catalogue_entry> build() {
  std::vector<catalogue_entry> out;
  out.push_back(wd("wd-vit-tagger-v3", "ViT-B/16", 378, true));
  out.push_back(wd("wd-swinv2-tagger-v3", "SwinV2", 467, false));
  out.push_back(wd("wd-convnext-tagger-v3", "ConvNeXt", 395, false));
  out.push_back(wd("wd-vit-large-tagger-v3", "ViT-L/16", 1260, false));
  out.push_back(wd("wd-eva02-large-tagger-v3", "EVA02-L", 1260, false));

  catalogue_entry clip;
  clip.name = "clip-vit-b-32";
  clip.source = "hf://immich-app/ViT-B-32__openai";
  clip.files = {"visual/model.onnx", "visual/preprocess_cfg.json?", "textual/model.onnx", "textual/tokenizer.json"};
  clip.what = "OpenAI CLIP ViT-B/32 as immich's ONNX pair: clip-vit-b-32-visual (images) + -textual (text search)";
  clip.license = "mit";
  clip.approx_bytes = 605ull * 1000 * 1000;
  clip.default_set = true;
  out.push_back(clip);

  catalogue_entry clip16 = clip;
  clip16.name = "clip-vit-b-16";
  clip16.source = "hf://immich-app/ViT-B-16__openai";
  clip16.what = "OpenAI CLIP ViT-B/16 as immich's ONNX pair";
  clip16.approx_bytes = 599ull * 1000 * 1000;
  clip16.default_set = false;
  out.push_back(clip16);

  catalogue_entry ddb;
  ddb.name = "deepdanbooru-v3";
  ddb.source = "https://github.com/KichangKim/DeepDanbooru/releases/download/v3-20211112-sgd-e28/"
               "deepdanbooru-v3-20211112-sgd-e28.zip";
  // The weights' sha256 and size as published in the release's LFS pointer (646,744,888 bytes).
  ddb.verify = {{"model-resnet_custom_v3.h5", "16c16713f7096d1385effa11dc1d6cfee4fbe9d1098d13b9a9b5279abbf13046"}};
  ddb.what = "DeepDanbooru v3 (resnet_custom_v3, 512 px, 9,176 tags) + illust2vec as deepdanbooru-v3-embedding";
  ddb.license = "mit";
  ddb.approx_bytes = 600ull * 1000 * 1000;
  out.push_back(ddb);

  catalogue_entry dclip;
  dclip.name = "danbooru-clip";
  dclip.source = "hf://OysterQAQ/DanbooruCLIP";
  dclip.files = {"config.json", "pytorch_model.bin?", "model.safetensors?", "tokenizer.json?", "vocab.json?",
                 "merges.txt?"};
  dclip.what = "the seed's DanbooruCLIP (Hugging Face CLIPModel folder): text and image towers";
  dclip.license = "see the model card";
  dclip.approx_bytes = 605ull * 1000 * 1000;
  out.push_back(dclip);

  catalogue_entry voc;
  voc.name = "acgvoc2vec";
  voc.source = "hf://OysterQAQ/ACGVoc2vec";
  voc.what = "the seed's ACGVoc2vec (sentence-transformers folder): text embeddings";
  voc.license = "see the model card";
  voc.approx_bytes = 540ull * 1000 * 1000;
  out.push_back(voc);
  return out;
}

}  // namespace

const std::vector<catalogue_entry>& catalogue() {
  static const std::vector<catalogue_entry> entries = build();
  return entries;
}

const catalogue_entry* find_in_catalogue(const std::string& name) {
  for (const auto& e : catalogue()) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

}  // namespace acg2vec::hub
