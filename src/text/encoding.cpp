#include "text/encoding.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/unicode.h"

namespace acg2vec::text {

encoding fit_to_length(std::span<const std::int64_t> ids, std::size_t length) {
  if (length == 0) fail(errc::bad_parameter, "token sequence length must be positive");
  encoding out;
  out.input_ids.assign(length, 0);
  out.attention_mask.assign(length, 0);
  if (ids.size() <= length) {
    std::copy(ids.begin(), ids.end(), out.input_ids.begin());
    std::fill_n(out.attention_mask.begin(), ids.size(), 1);
    return out;
  }
  std::copy_n(ids.begin(), length - 1, out.input_ids.begin());
  out.input_ids[length - 1] = ids.back();
  std::fill(out.attention_mask.begin(), out.attention_mask.end(), 1);
  return out;
}

std::vector<text_piece> split_added_tokens(const std::u32string& text, const std::vector<added_token>& tokens,
                                           bool normalized) {
  std::vector<text_piece> out;
  std::size_t start = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const added_token* best = nullptr;
    for (const auto& t : tokens) {
      if (t.normalized != normalized || t.content.empty()) continue;
      if (text.compare(i, t.content.size(), t.content) == 0 &&
          (best == nullptr || t.content.size() > best->content.size())) {
        best = &t;
      }
    }
    if (best == nullptr) {
      ++i;
      continue;
    }
    if (i > start) out.push_back({text.substr(start, i - start), -1});
    out.push_back({best->content, best->id});
    i += best->content.size();
    start = i;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
  return out;
}

std::vector<std::int64_t> run_tokenizer(std::string_view utf8, const std::vector<added_token>& added,
                                        const tokenizer_steps& steps) {
  std::vector<std::int64_t> ids{steps.first_id};
  for (const auto& raw : split_added_tokens(utf8_decode(utf8), added, false)) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    for (const auto& piece : split_added_tokens(steps.normalize(raw.text), added, true)) {
      if (piece.id >= 0) {
        ids.push_back(piece.id);
      } else {
        steps.encode_run(piece.text, ids);
      }
    }
  }
  ids.push_back(steps.last_id);
  return ids;
}

nlohmann::json read_tokenizer_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(errc::not_found, "cannot open tokenizer file {}", path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(errc::bad_parameter, "tokenizer file {} is not valid JSON: {}", path.string(), e.what());
  }
}

std::vector<added_token> read_added_tokens(const nlohmann::json& json) {
  std::vector<added_token> out;
  if (!json.contains("added_tokens") || !json["added_tokens"].is_array()) return out;
  for (const auto& t : json["added_tokens"]) {
    out.push_back({utf8_decode(t.at("content").get<std::string>()), t.at("id").get<std::int64_t>(),
                   t.value("normalized", false)});
  }
  return out;
}

}  // namespace acg2vec::text
