#pragma once
// CLIP's byte-level BPE tokenizer as ACG2vec's CLIPTokenizer.json defines it: NFC, whitespace runs to one
// space, lowercase; CLIP's split pattern; byte-level mapping; BPE with the `</w>` end-of-word suffix;
// <|startoftext|> … <|endoftext|>. Loads that JSON or OpenAI's bpe_simple_vocab_16e6.txt.gz.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "text/encoding.h"

namespace acg2vec::text {

class clip_tokenizer {
 public:
  /// @brief Loads a Hugging Face tokenizer.json whose model is CLIP-style BPE.
  static clip_tokenizer from_json_file(const std::filesystem::path& path);
  /// @brief Builds from a parsed tokenizer.json.
  static clip_tokenizer from_json(const nlohmann::json& json);
  /// @brief Loads OpenAI's merges file (gzip or plain text); the vocabulary is derived from the merges.
  static clip_tokenizer from_merges_file(const std::filesystem::path& path);

  clip_tokenizer(clip_tokenizer&&) noexcept;
  clip_tokenizer& operator=(clip_tokenizer&&) noexcept;
  ~clip_tokenizer();

  /// @brief The full id sequence <|startoftext|> … <|endoftext|>, no truncation or padding. Thread-safe.
  [[nodiscard]] std::vector<std::int64_t> tokenize(std::string_view text) const;
  /// @brief tokenize() fitted to `context` with the seed's padding/overflow rule (first context-1, then EOT).
  [[nodiscard]] encoding encode(std::string_view text, std::size_t context = 77) const;

  /// @brief The text after the normaliser (NFC, whitespace collapse, lowercase); exposed for tests.
  [[nodiscard]] std::u32string normalize(std::u32string_view text) const;
  /// @brief The pieces the CLIP split pattern keeps, in order; `split_specials` adds OpenAI's leading
  /// <|startoftext|>/<|endoftext|> alternatives. Exposed for tests.
  [[nodiscard]] static std::vector<std::u32string> split_words(std::u32string_view text, bool split_specials = false);

  [[nodiscard]] std::int64_t sot_id() const { return sot_id_; }
  [[nodiscard]] std::int64_t eot_id() const { return eot_id_; }
  [[nodiscard]] std::size_t vocab_size() const { return vocab_.size(); }
  [[nodiscard]] std::size_t merge_count() const { return ranks_.size(); }
  /// @brief Id of a token string, or -1.
  [[nodiscard]] std::int64_t token_id(const std::string& token) const;

 private:
  struct cache;
  enum class step { nfc, nfd, nfkc, lowercase, collapse_whitespace };

  clip_tokenizer(std::unordered_map<std::string, std::int64_t> vocab, const std::vector<std::string>& merges,
                 std::vector<step> normalizer, std::vector<added_token> added, std::string unk);
  void bpe(const std::u32string& word, std::vector<std::int64_t>& out) const;

  std::unordered_map<std::string, std::int64_t> vocab_;
  std::unordered_map<std::string, std::size_t> ranks_;  ///< "left right" -> merge priority
  std::vector<step> normalizer_;
  std::vector<added_token> added_;
  std::int64_t sot_id_ = -1;
  std::int64_t eot_id_ = -1;
  std::int64_t unk_id_ = -1;
  bool split_specials_ = false;
  std::unique_ptr<cache> cache_;
};

}  // namespace acg2vec::text
