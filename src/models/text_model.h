#pragma once
// Text and CLIP packs: a tokenizer plus a transformer from a checkpoint folder.
//   sentence_transformers: acgvoc2vec (DistilBERT → masked mean → Dense tanh), WordPiece
//   hf_clip:               a CLIPModel folder; the text tower (and, when present, the vision tower)

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "image/decode.h"
#include "image/preprocess.h"
#include "models/clip.h"
#include "models/distilbert.h"
#include "models/manifest.h"
#include "runtime/executor.h"
#include "text/clip_bpe.h"
#include "text/wordpiece.h"

namespace acg2vec::models {

class text_model {
 public:
  /// @brief Loads the tokenizer and weights named by a text_embedding or clip_text manifest.
  static std::shared_ptr<text_model> load(const model_manifest& m);

  /// @brief Tokenises and encodes texts → [B, dim]. Empty text or invalid UTF-8 → bad_parameter.
  at::Tensor embed(const std::vector<std::string>& texts) const;
  /// @brief Encodes token ids [B, S] (and the attention mask for WordPiece models) → [B, dim].
  at::Tensor embed_ids(const at::Tensor& ids, const at::Tensor& mask) const;

  [[nodiscard]] std::int64_t dim() const;
  [[nodiscard]] std::size_t max_length() const noexcept { return max_length_; }
  [[nodiscard]] bool uses_mask() const noexcept {
    return sentence_ != nullptr || (graph_ && graph_->inputs().size() > 1);
  }
  /// @brief The CLIP vision tower loaded with the text tower, if the checkpoint has one.
  [[nodiscard]] std::shared_ptr<const models::clip_vision_encoder> vision() const noexcept { return vision_; }

 private:
  std::unique_ptr<text::wordpiece_tokenizer> wordpiece_;
  std::unique_ptr<text::clip_tokenizer> bpe_;
  std::unique_ptr<models::sentence_encoder> sentence_;
  std::unique_ptr<models::clip_text_encoder> clip_;
  std::unique_ptr<runtime::executor> graph_;  ///< an ONNX text tower (e.g. immich's textual/model.onnx)
  std::int64_t graph_dim_ = 0;
  std::shared_ptr<const models::clip_vision_encoder> vision_;
  std::size_t max_length_ = 128;
};

/// CLIP's image tower behind the image interface: CLIP preprocessing (centre crop, bicubic,
/// mean/std) then the vision encoder.
class clip_image_model {
 public:
  explicit clip_image_model(std::shared_ptr<const models::clip_vision_encoder> vision);
  at::Tensor embed(const image::image_rgb8& img) const;  ///< [dim]
  [[nodiscard]] std::int64_t dim() const { return vision_->dim(); }

 private:
  std::shared_ptr<const models::clip_vision_encoder> vision_;
  image::preprocess_spec spec_;
};

}  // namespace acg2vec::models