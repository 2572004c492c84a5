#include "text/clip_bpe.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <functional>
#include <fstream>
#include <limits>
#include <mutex>
#include <queue>
#include <nlohmann/json.hpp>
#include <shared_mutex>

#include "core/error.h"
#include "text/unicode.h"

namespace acg2vec::text {

namespace {

// The split pattern of CLIP as written in tokenizer.json; split_words() implements exactly this.
constexpr std::string_view clip_split_pattern = R"('s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+)";
// OpenAI's own tokenizer.json files put the two special tokens in front of the same pattern.
constexpr std::string_view clip_split_prefix = R"(<\|startoftext\|>|<\|endoftext\|>|)";
constexpr std::size_t cache_limit = 100000;
constexpr std::size_t cache_word_limit = 64;
constexpr std::size_t openai_merge_count = 49152 - 256 - 2;

// GPT-2's reversible byte -> printable code point table: printable Latin-1 bytes map to themselves,
// the rest to 256 + n in byte order.
const std::array<std::string, 256>& byte_symbols() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
      utf8_append(t[static_cast<std::size_t>(b)], cp);
    }
    return t;
  }();
  return table;
}

std::string read_maybe_gzip(const std::filesystem::path& path) {
  gzFile f = gzopen(path.c_str(), "rb");  // transparently reads uncompressed files too
  if (f == nullptr) fail(errc::not_found, "cannot open BPE merges file {}", path.string());
  std::string out;
  std::array<char, 1 << 16> buf{};
  int n = 0;
  while ((n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()))) > 0) out.append(buf.data(), static_cast<std::size_t>(n));
  const bool bad = n < 0;
  gzclose(f);
  if (bad) fail(errc::bad_parameter, "BPE merges file {} is not readable gzip", path.string());
  return out;
}

}  // namespace

struct clip_tokenizer::cache {
  mutable std::shared_mutex mutex;
  std::unordered_map<std::u32string, std::vector<std::int64_t>> words;
};

clip_tokenizer::clip_tokenizer(clip_tokenizer&&) noexcept = default;
clip_tokenizer& clip_tokenizer::operator=(clip_tokenizer&&) noexcept = default;
clip_tokenizer::~clip_tokenizer() = default;

clip_tokenizer::clip_tokenizer(std::unordered_map<std::string, std::int64_t> vocab,
                               const std::vector<std::string>& merges, std::vector<step> normalizer,
                               std::vector<added_token> added, std::string unk)
    : vocab_(std::move(vocab)),
      normalizer_(std::move(normalizer)),
      added_(std::move(added)),
      cache_(std::make_unique<cache>()) {
  ranks_.reserve(merges.size());
  for (std::size_t i = 0; i < merges.size(); ++i) ranks_.emplace(merges[i], i);
  for (const auto& t : added_) vocab_.emplace(utf8_encode(t.content), t.id);
  sot_id_ = token_id("<|startoftext|>");
  eot_id_ = token_id("<|endoftext|>");
  if (sot_id_ < 0 || eot_id_ < 0) fail(errc::bad_parameter, "CLIP vocabulary lacks <|startoftext|> or <|endoftext|>");
  unk_id_ = token_id(unk);
  if (unk_id_ < 0) unk_id_ = eot_id_;
}

clip_tokenizer clip_tokenizer::from_json_file(const std::filesystem::path& path) {
  return from_json(read_tokenizer_json(path));
}

clip_tokenizer clip_tokenizer::from_json(const nlohmann::json& json) {
  const auto& model = json.at("model");
  if (model.value("type", "") != "BPE" || model.value("end_of_word_suffix", std::string()) != "</w>") {
    fail(errc::bad_parameter, "tokenizer.json is not a CLIP BPE model (type BPE with </w> suffix)");
  }
  std::vector<step> steps;
  std::function<void(const nlohmann::json&)> add_normalizer = [&](const nlohmann::json& n) {
    if (n.is_null()) return;
    const std::string type = n.value("type", "");
    if (type == "Sequence") {
      for (const auto& child : n.at("normalizers")) add_normalizer(child);
    } else if (type == "NFC") {
      steps.push_back(step::nfc);
    } else if (type == "NFD") {
      steps.push_back(step::nfd);
    } else if (type == "NFKC") {
      steps.push_back(step::nfkc);
    } else if (type == "Lowercase") {
      steps.push_back(step::lowercase);
    } else if (type == "Replace" && n.at("pattern").value("Regex", "") == R"(\s+)" && n.value("content", "") == " ") {
      steps.push_back(step::collapse_whitespace);
    } else {
      fail(errc::not_implemented, "CLIP tokenizer.json normalizer {} is not supported", n.dump());
    }
  };
  add_normalizer(json.contains("normalizer") ? json["normalizer"] : nlohmann::json());

  // Only CLIP's own split pattern followed by ByteLevel is implemented; refuse anything else rather than
  // tokenising differently.
  bool split_ok = false;
  bool split_specials = false;
  const auto& pre = json.at("pre_tokenizer");
  if (pre.value("type", "") == "Sequence") {
    for (const auto& p : pre.at("pretokenizers")) {
      if (p.value("type", "") != "Split" || !p.contains("pattern") || p.value("behavior", "") != "Removed" ||
          !p.value("invert", false)) {
        continue;
      }
      const std::string pattern = p["pattern"].value("Regex", "");
      if (pattern == clip_split_pattern) {
        split_ok = true;
      } else if (pattern == std::string(clip_split_prefix) + std::string(clip_split_pattern)) {
        split_ok = split_specials = true;
      }
    }
  }
  if (!split_ok) fail(errc::not_implemented, "CLIP tokenizer.json pre-tokenizer is not CLIP's split + ByteLevel");

  std::unordered_map<std::string, std::int64_t> vocab;
  vocab.reserve(model.at("vocab").size());
  for (const auto& [token, id] : model.at("vocab").items()) vocab.emplace(token, id.get<std::int64_t>());
  std::vector<std::string> merges;
  merges.reserve(model.at("merges").size());
  for (const auto& m : model.at("merges")) {
    if (m.is_string()) {
      merges.push_back(m.get<std::string>());
    } else {
      merges.push_back(m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
    }
  }
  std::vector<added_token> added = read_added_tokens(json);
  std::string unk = model.contains("unk_token") && model["unk_token"].is_string() ? model["unk_token"].get<std::string>()
                                                                                  : "<|endoftext|>";
  clip_tokenizer tok(std::move(vocab), merges, std::move(steps), std::move(added), std::move(unk));
  tok.split_specials_ = split_specials;
  return tok;
}

clip_tokenizer clip_tokenizer::from_merges_file(const std::filesystem::path& path) {
  const std::string text = read_maybe_gzip(path);
  std::vector<std::string> merges;
  merges.reserve(openai_merge_count);
  std::size_t pos = text.find('\n');  // the first line is a version comment
  while (pos != std::string::npos && merges.size() < openai_merge_count) {
    const std::size_t next = text.find('\n', pos + 1);
    std::string line = text.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) {
      if (line.find(' ') == std::string::npos) fail(errc::bad_parameter, "BPE merges file {} has a malformed line", path.string());
      merges.push_back(std::move(line));
    }
    pos = next;
  }
  if (merges.size() != openai_merge_count) {
    fail(errc::bad_parameter, "BPE merges file {} has {} merges, CLIP needs {}", path.string(), merges.size(),
         openai_merge_count);
  }
  // Vocabulary order of OpenAI's tokenizer: the 256 byte symbols, the same with </w>, one entry per merge,
  // then the two special tokens.
  std::unordered_map<std::string, std::int64_t> vocab;
  std::int64_t id = 0;
  // OpenAI lists the printable bytes first, then the remapped ones, each group in byte order.
  std::vector<int> order;
  for (int pass = 0; pass < 2; ++pass) {
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      if (printable == (pass == 0)) order.push_back(b);
    }
  }
  for (int b : order) vocab.emplace(byte_symbols()[static_cast<std::size_t>(b)], id++);
  for (int b : order) vocab.emplace(byte_symbols()[static_cast<std::size_t>(b)] + "</w>", id++);
  for (const auto& m : merges) {
    std::string joined = m;
    joined.erase(joined.find(' '), 1);
    vocab.emplace(std::move(joined), id++);
  }
  vocab.emplace("<|startoftext|>", id++);
  vocab.emplace("<|endoftext|>", id++);
  std::vector<added_token> added{{U"<|startoftext|>", vocab.at("<|startoftext|>"), true},
                                 {U"<|endoftext|>", vocab.at("<|endoftext|>"), false}};
  return clip_tokenizer(std::move(vocab), merges, {step::nfc, step::collapse_whitespace, step::lowercase},
                        std::move(added), "<|endoftext|>");
}

std::int64_t clip_tokenizer::token_id(const std::string& token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

std::u32string clip_tokenizer::normalize(std::u32string_view text) const {
  std::u32string s(text);
  for (const step st : normalizer_) {
    switch (st) {
      case step::nfc:
        s = nfc(s);
        break;
      case step::nfd:
        s = nfd(s);
        break;
      case step::nfkc:
        fail(errc::not_implemented, "NFKC normalisation is not supported");
      case step::lowercase:
        s = to_lower(s);
        break;
      case step::collapse_whitespace: {
        std::u32string out;
        out.reserve(s.size());
        bool in_run = false;
        for (char32_t cp : s) {
          const bool ws = is_white_space(cp);
          if (ws && !in_run) out.push_back(U' ');
          if (!ws) out.push_back(cp);
          in_run = ws;
        }
        s = std::move(out);
        break;
      }
    }
  }
  return s;
}

std::vector<std::u32string> clip_tokenizer::split_words(std::u32string_view text, bool split_specials) {
  static constexpr std::u32string_view specials[] = {U"<|startoftext|>", U"<|endoftext|>"};
  std::vector<std::u32string> out;
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    const char32_t c = text[i];
    if (is_white_space(c)) {
      ++i;
      continue;
    }
    if (split_specials && c == U'<') {
      bool matched = false;
      for (const auto sp : specials) {
        if (text.substr(i, sp.size()) == sp) {
          out.emplace_back(sp);
          i += sp.size();
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    if (c == U'\'' && i + 1 < n) {
      const char32_t a = text[i + 1];
      if (a == U's' || a == U't' || a == U'm' || a == U'd') {
        out.emplace_back(text.substr(i, 2));
        i += 2;
        continue;
      }
      if (i + 2 < n) {
        const char32_t b = text[i + 2];
        if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) {
          out.emplace_back(text.substr(i, 3));
          i += 3;
          continue;
        }
      }
    }
    std::size_t j = i + 1;
    if (is_letter(c)) {
      while (j < n && is_letter(text[j])) ++j;
    } else if (!is_number(c)) {
      while (j < n && !is_white_space(text[j]) && !is_letter(text[j]) && !is_number(text[j])) ++j;
    }
    out.emplace_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

void clip_tokenizer::bpe(const std::u32string& word, std::vector<std::int64_t>& out) const {
  {
    std::shared_lock lock(cache_->mutex);
    const auto it = cache_->words.find(word);
    if (it != cache_->words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  // Symbols form a linked list; candidate pairs wait in a min-heap ordered by (merge rank, position), so the
  // lowest-ranked pair is merged first and equal pairs left to right, in O(n log n) even for huge words.
  struct symbol {
    std::string text;
    int prev;
    int next;
  };
  std::vector<symbol> list;
  const std::string bytes = utf8_encode(word);
  if (bytes.empty()) return;
  for (std::size_t k = 0; k < bytes.size(); ++k) {
    list.push_back({byte_symbols()[static_cast<unsigned char>(bytes[k])], static_cast<int>(k) - 1,
                    k + 1 < bytes.size() ? static_cast<int>(k) + 1 : -1});
  }
  list.back().text += "</w>";
  using candidate = std::pair<std::size_t, int>;  // (rank, left symbol)
  std::priority_queue<candidate, std::vector<candidate>, std::greater<>> heap;
  std::string key;
  auto rank_of = [&](int left) -> std::size_t {
    const int right = list[static_cast<std::size_t>(left)].next;
    if (right < 0) return std::numeric_limits<std::size_t>::max();
    key.assign(list[static_cast<std::size_t>(left)].text).append(" ").append(list[static_cast<std::size_t>(right)].text);
    const auto it = ranks_.find(key);
    return it == ranks_.end() ? std::numeric_limits<std::size_t>::max() : it->second;
  };
  auto offer = [&](int left) {
    if (left < 0) return;
    const auto r = rank_of(left);
    if (r != std::numeric_limits<std::size_t>::max()) heap.emplace(r, left);
  };
  for (int k = 0; k + 1 < static_cast<int>(list.size()); ++k) offer(k);
  std::vector<bool> dead(list.size(), false);
  while (!heap.empty()) {
    const auto [rank, left] = heap.top();
    heap.pop();
    // Stale entries: the left symbol was merged away or its right neighbour changed since it was queued.
    if (dead[static_cast<std::size_t>(left)] || rank_of(left) != rank) continue;
    auto& l = list[static_cast<std::size_t>(left)];
    const int right = l.next;
    auto& r = list[static_cast<std::size_t>(right)];
    l.text += r.text;
    l.next = r.next;
    if (r.next >= 0) list[static_cast<std::size_t>(r.next)].prev = left;
    dead[static_cast<std::size_t>(right)] = true;
    offer(l.prev);
    offer(left);
  }
  std::vector<std::string> symbols;
  for (int k = 0; k >= 0; k = list[static_cast<std::size_t>(k)].next) symbols.push_back(std::move(list[static_cast<std::size_t>(k)].text));
  std::vector<std::int64_t> ids;
  ids.reserve(symbols.size());
  for (const auto& s : symbols) {
    const auto it = vocab_.find(s);
    ids.push_back(it == vocab_.end() ? unk_id_ : it->second);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  if (word.size() > cache_word_limit) return;  // long words are rare; caching them only costs memory
  std::unique_lock lock(cache_->mutex);
  if (cache_->words.size() >= cache_limit) cache_->words.clear();
  cache_->words.emplace(word, std::move(ids));
}

std::vector<std::int64_t> clip_tokenizer::tokenize(std::string_view text) const {
  const tokenizer_steps steps{sot_id_, eot_id_, [this](std::u32string_view s) { return normalize(s); },
                              [this](const std::u32string& run, std::vector<std::int64_t>& ids) {
                                for (const auto& word : split_words(run, split_specials_)) bpe(word, ids);
                              }};
  return run_tokenizer(text, added_, steps);
}

encoding clip_tokenizer::encode(std::string_view text, std::size_t context) const {
  return fit_to_length(tokenize(text), context);
}

}  // namespace acg2vec::text
