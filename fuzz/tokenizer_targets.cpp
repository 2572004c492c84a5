#include <filesystem>

#include "core/error.h"
#include "fuzz_util.h"
#include "targets.h"
#include "text/clip_bpe.h"
#include "text/wordpiece.h"

namespace acg2vec::fuzz {

namespace {

// The fixtures the tokenizer unit tests use (see fuzz/corpus/README.md).
std::filesystem::path source_dir() { return std::filesystem::path(ACG2VEC_SOURCE_DIR); }

const text::wordpiece_tokenizer& wordpiece() {
  static const auto tok =
      text::wordpiece_tokenizer::from_json_file(source_dir() / "tests/data/text/minilm_uncased_tokenizer.json");
  return tok;
}

const text::clip_tokenizer& clip() {
  static const auto tok = text::clip_tokenizer::from_json_file(source_dir() / "models/vocab/acg2vec_CLIPTokenizer.json");
  return tok;
}

template <class Tokenizer>
void check_tokens(const Tokenizer& tok, std::string_view text, std::int64_t first, std::int64_t last,
                  std::size_t max_len) {
  auto ids = tok.tokenize(text);
  if (ids.size() < 2 || ids.front() != first || ids.back() != last) std::abort();
  for (auto id : ids) {
    if (id < 0) std::abort();
  }
  auto enc = tok.encode(text, max_len);
  if (enc.input_ids.size() != max_len || enc.attention_mask.size() != max_len) std::abort();
}

}  // namespace

int fuzz_wordpiece(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  const auto& tok = wordpiece();
  try {
    check_tokens(tok, as_text(data, size), tok.cls_id(), tok.sep_id(), 16);
  } catch (const error&) {
  }
  return 0;
}

int fuzz_clip_bpe(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  const auto& tok = clip();
  try {
    check_tokens(tok, as_text(data, size), tok.sot_id(), tok.eot_id(), 16);
  } catch (const error&) {
  }
  return 0;
}

}  // namespace acg2vec::fuzz
