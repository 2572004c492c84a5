#pragma once
// BERT WordPiece tokenizer (BertNormalizer + BertPreTokenizer + WordPiece + [CLS] A [SEP]) as described
// by a Hugging Face tokenizer.json or a plain vocab.txt. The acgvoc2vec text tower uses it.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "text/encoding.h"

namespace acg2vec::text {

/// BertNormalizer switches (tokenizers' names and defaults).
struct wordpiece_options {
  bool clean_text = true;
  bool handle_chinese_chars = true;
  bool lowercase = true;
  int strip_accents = -1;  ///< -1: follow `lowercase`; 0: never; 1: always
  std::size_t max_input_chars_per_word = 100;
  std::string continuing_prefix = "##";
  std::string unk_token = "[UNK]";
  std::string cls_token = "[CLS]";
  std::string sep_token = "[SEP]";
  std::string pad_token = "[PAD]";
};

class wordpiece_tokenizer {
 public:
  /// @brief Loads a tokenizer.json whose model is WordPiece.
  static wordpiece_tokenizer from_json_file(const std::filesystem::path& path);
  /// @brief Builds from a parsed tokenizer.json.
  static wordpiece_tokenizer from_json(const nlohmann::json& json);
  /// @brief Loads a vocab.txt (one token per line, id = line number) with the given normaliser options.
  static wordpiece_tokenizer from_vocab_txt(const std::filesystem::path& path, const wordpiece_options& options);

  /// @brief The full id sequence [CLS] … [SEP], no truncation or padding.
  [[nodiscard]] std::vector<std::int64_t> tokenize(std::string_view text) const;
  /// @brief tokenize() fitted to `max_len` with the seed's padding/overflow rule.
  [[nodiscard]] encoding encode(std::string_view text, std::size_t max_len = 128) const;

  /// @brief The normalised text as BertNormalizer produces it (exposed for tests).
  [[nodiscard]] std::u32string normalize(std::u32string_view text) const;

  [[nodiscard]] std::int64_t cls_id() const { return cls_id_; }
  [[nodiscard]] std::int64_t sep_id() const { return sep_id_; }
  [[nodiscard]] std::int64_t pad_id() const { return pad_id_; }
  [[nodiscard]] std::int64_t unk_id() const { return unk_id_; }
  [[nodiscard]] std::size_t vocab_size() const { return vocab_.size(); }
  /// @brief Id of a token string, or -1.
  [[nodiscard]] std::int64_t token_id(const std::string& token) const;

 private:
  wordpiece_tokenizer(std::unordered_map<std::string, std::int64_t> vocab, wordpiece_options options,
                      std::vector<added_token> added);
  void word_to_ids(const std::u32string& word, std::vector<std::int64_t>& out) const;

  std::unordered_map<std::string, std::int64_t> vocab_;
  wordpiece_options options_;
  std::vector<added_token> added_;
  std::int64_t cls_id_ = -1;
  std::int64_t sep_id_ = -1;
  std::int64_t pad_id_ = 0;
  std::int64_t unk_id_ = -1;
};

}  // namespace acg2vec::text
