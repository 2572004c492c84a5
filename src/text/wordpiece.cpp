#include "text/wordpiece.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/unicode.h"

namespace acg2vec::text {

namespace {

bool is_bert_whitespace(char32_t cp) { return cp == U'\t' || cp == U'\n' || cp == U'\r' || is_white_space(cp); }

bool is_bert_punctuation(char32_t cp) {
  return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126) ||
         is_punctuation(cp);
}

}  // namespace

wordpiece_tokenizer::wordpiece_tokenizer(std::unordered_map<std::string, std::int64_t> vocab,
                                         wordpiece_options options, std::vector<added_token> added)
    : vocab_(std::move(vocab)), options_(std::move(options)), added_(std::move(added)) {
  for (const auto& t : added_) vocab_.emplace(utf8_encode(t.content), t.id);
  auto need = [&](const std::string& token) {
    const auto id = token_id(token);
    if (id < 0) fail(errc::bad_parameter, "WordPiece vocabulary lacks the special token {}", token);
    return id;
  };
  unk_id_ = need(options_.unk_token);
  cls_id_ = need(options_.cls_token);
  sep_id_ = need(options_.sep_token);
  const auto pad = token_id(options_.pad_token);
  pad_id_ = pad >= 0 ? pad : 0;
}

wordpiece_tokenizer wordpiece_tokenizer::from_json_file(const std::filesystem::path& path) {
  return from_json(read_tokenizer_json(path));
}

wordpiece_tokenizer wordpiece_tokenizer::from_json(const nlohmann::json& json) {
  const auto& model = json.at("model");
  if (model.value("type", "") != "WordPiece") {
    fail(errc::bad_parameter, "tokenizer.json model type {} is not WordPiece", model.value("type", "?"));
  }
  wordpiece_options o;
  o.unk_token = model.value("unk_token", "[UNK]");
  o.continuing_prefix = model.value("continuing_subword_prefix", "##");
  o.max_input_chars_per_word = model.value("max_input_chars_per_word", std::size_t{100});
  o.clean_text = o.handle_chinese_chars = o.lowercase = false;
  o.strip_accents = 0;
  const auto& norm = json.contains("normalizer") ? json["normalizer"] : nlohmann::json();
  if (!norm.is_null()) {
    if (norm.value("type", "") != "BertNormalizer") {
      fail(errc::not_implemented, "WordPiece tokenizer.json normalizer {} is not supported",
           norm.value("type", "?"));
    }
    o.clean_text = norm.value("clean_text", true);
    o.handle_chinese_chars = norm.value("handle_chinese_chars", true);
    o.lowercase = norm.value("lowercase", true);
    o.strip_accents = norm.contains("strip_accents") && norm["strip_accents"].is_boolean()
                          ? (norm["strip_accents"].get<bool>() ? 1 : 0)
                          : -1;
  }
  if (json.contains("pre_tokenizer") && !json["pre_tokenizer"].is_null() &&
      json["pre_tokenizer"].value("type", "") != "BertPreTokenizer") {
    fail(errc::not_implemented, "WordPiece tokenizer.json pre-tokenizer {} is not supported",
         json["pre_tokenizer"].value("type", "?"));
  }
  const auto& post = json.contains("post_processor") ? json["post_processor"] : nlohmann::json();
  if (post.is_object() && post.value("type", "") == "BertProcessing") {
    o.cls_token = post.at("cls").at(0).get<std::string>();
    o.sep_token = post.at("sep").at(0).get<std::string>();
  } else if (post.is_object() && post.value("type", "") == "TemplateProcessing" && post.contains("single")) {
    const auto& single = post["single"];
    if (single.size() == 3 && single[0].contains("SpecialToken") && single[2].contains("SpecialToken")) {
      o.cls_token = single[0]["SpecialToken"].at("id").get<std::string>();
      o.sep_token = single[2]["SpecialToken"].at("id").get<std::string>();
    }
  }
  std::unordered_map<std::string, std::int64_t> vocab;
  vocab.reserve(model.at("vocab").size());
  for (const auto& [token, id] : model.at("vocab").items()) vocab.emplace(token, id.get<std::int64_t>());
  return wordpiece_tokenizer(std::move(vocab), std::move(o), read_added_tokens(json));
}

wordpiece_tokenizer wordpiece_tokenizer::from_vocab_txt(const std::filesystem::path& path,
                                                        const wordpiece_options& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(errc::not_found, "cannot open vocabulary {}", path.string());
  std::unordered_map<std::string, std::int64_t> vocab;
  std::string line;
  std::int64_t id = 0;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    vocab.emplace(line, id++);
  }
  if (vocab.empty()) fail(errc::bad_parameter, "vocabulary {} is empty", path.string());
  // vocab.txt has no added-token section: the special tokens are matched literally on the raw text as
  // BERT tokenizers do.
  std::vector<added_token> added;
  for (const auto* s : {&options.pad_token, &options.unk_token, &options.cls_token, &options.sep_token}) {
    const auto it = vocab.find(*s);
    if (it != vocab.end()) added.push_back({utf8_decode(*s), it->second, false});
  }
  const auto mask = vocab.find("[MASK]");
  if (mask != vocab.end()) added.push_back({U"[MASK]", mask->second, false});
  return wordpiece_tokenizer(std::move(vocab), options, std::move(added));
}

std::int64_t wordpiece_tokenizer::token_id(const std::string& token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

std::u32string wordpiece_tokenizer::normalize(std::u32string_view text) const {
  std::u32string s;
  s.reserve(text.size());
  for (char32_t cp : text) {
    if (options_.clean_text) {
      if (cp == 0 || cp == 0xFFFD || is_bert_control(cp)) continue;
      if (is_bert_whitespace(cp)) cp = U' ';
    }
    if (options_.handle_chinese_chars && is_cjk_ideograph(cp)) {
      s.push_back(U' ');
      s.push_back(cp);
      s.push_back(U' ');
    } else {
      s.push_back(cp);
    }
  }
  const bool strip = options_.strip_accents < 0 ? options_.lowercase : options_.strip_accents == 1;
  if (strip) {
    std::u32string d = nfd(s);
    s.clear();
    for (char32_t cp : d) {
      if (!is_nonspacing_mark(cp)) s.push_back(cp);
    }
  }
  if (options_.lowercase) s = to_lower(s);
  return s;
}

void wordpiece_tokenizer::word_to_ids(const std::u32string& word, std::vector<std::int64_t>& out) const {
  if (word.size() > options_.max_input_chars_per_word) {
    out.push_back(unk_id_);
    return;
  }
  const std::size_t mark = out.size();
  std::size_t start = 0;
  std::string piece;
  while (start < word.size()) {
    std::size_t end = word.size();
    std::int64_t found = -1;
    while (start < end) {
      piece = start > 0 ? options_.continuing_prefix : std::string();
      piece += utf8_encode(std::u32string_view(word).substr(start, end - start));
      const auto it = vocab_.find(piece);
      if (it != vocab_.end()) {
        found = it->second;
        break;
      }
      --end;
    }
    if (found < 0) {
      out.resize(mark);
      out.push_back(unk_id_);
      return;
    }
    out.push_back(found);
    start = end;
  }
}

std::vector<std::int64_t> wordpiece_tokenizer::tokenize(std::string_view text) const {
  const tokenizer_steps steps{
      cls_id_, sep_id_, [this](std::u32string_view s) { return normalize(s); },
      [this](const std::u32string& run, std::vector<std::int64_t>& ids) {
        // BERT's pre-tokenizer: whitespace separates words, each punctuation mark is a word of its own.
        std::u32string word;
        auto flush = [&] {
          if (!word.empty()) word_to_ids(word, ids);
          word.clear();
        };
        for (char32_t cp : run) {
          if (is_bert_whitespace(cp)) {
            flush();
          } else if (is_bert_punctuation(cp)) {
            flush();
            word.push_back(cp);
            flush();
          } else {
            word.push_back(cp);
          }
        }
        flush();
      }};
  return run_tokenizer(text, added_, steps);
}

encoding wordpiece_tokenizer::encode(std::string_view text, std::size_t max_len) const {
  return fit_to_length(tokenize(text), max_len);
}

}  // namespace acg2vec::text
