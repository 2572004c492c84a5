#include "text/caption.h"

#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace acg2vec::text {

namespace {

std::string underscores_to_spaces(std::string s) {
  for (char& c : s) {
    if (c == '_') c = ' ';
  }
  return s;
}

// Python's re.sub(r"\(.*?\)", "", s): each '(' closes at the first ')' after it on the same line.
std::string strip_parenthesised(const std::string& s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '(') {
      std::size_t j = i + 1;
      while (j < s.size() && s[j] != ')' && s[j] != '\n') ++j;
      if (j < s.size() && s[j] == ')') {
        i = j + 1;
        continue;
      }
    }
    out.push_back(s[i]);
    ++i;
  }
  return out;
}

void drop_last(std::string& s) {
  if (!s.empty()) s.pop_back();
}

bool has_ascii_letter(const std::string& s) {
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) return true;
  }
  return false;
}

int parse_category(const std::string& text, std::string_view where) {
  int value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) fail(errc::bad_parameter, "tag category '{}' in {} is not an integer", text, where);
  return value;
}

}  // namespace

std::vector<std::string> build_captions(const std::vector<tagged_name>& tags, caption_variant variant) {
  std::vector<std::string> characters;
  std::vector<std::string> works;
  std::vector<std::string> generals;
  for (const auto& t : tags) {
    if (t.category == 4) characters.push_back(t.name);
    if (t.category == 3 && t.name != "original") works.push_back(t.name);
    if (t.category == 0) generals.push_back(t.name);
  }
  const bool a = variant == caption_variant::a;
  auto kept = [&](const std::string& name) {
    if (!has_ascii_letter(name)) return false;
    return !(a && (name.find("girl") != std::string::npos || name.find("boy") != std::string::npos));
  };

  std::string s;
  for (const auto& c : characters) {
    s += underscores_to_spaces(works.empty() ? c : strip_parenthesised(c));
    s += ',';
  }
  drop_last(s);
  if (a || !s.empty()) s += ' ';
  if (!works.empty()) {
    s += "from ";
    for (const auto& w : works) s += underscores_to_spaces(w) + ' ';
  }
  if (!generals.empty() && (a || !characters.empty())) s += "with ";

  auto append_generals = [&](std::string& out, std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) {
      if (kept(generals[i])) out += underscores_to_spaces(generals[i]) + ',';
    }
    drop_last(out);  // unconditional: removes a real character when nothing was appended
  };
  if (generals.size() > 20) {
    const std::size_t half = generals.size() / 2;
    std::string s2 = s;
    append_generals(s2, 0, half);
    append_generals(s, half, generals.size());
    return {s, s2};
  }
  append_generals(s, 0, generals.size());
  return {s};
}

caption_variant parse_caption_variant(std::string_view text) {
  if (text == "a" || text == "A") return caption_variant::a;
  if (text == "b" || text == "B") return caption_variant::b;
  fail(errc::bad_parameter, "caption variant '{}' is not a or b", text);
}

std::vector<tagged_name> parse_tags_json(std::string_view json) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    fail(errc::bad_parameter, "tags are not valid JSON: {}", e.what());
  }
  if (!doc.is_array()) fail(errc::bad_parameter, "tags JSON must be an array of {{name, category}} objects");
  std::vector<tagged_name> out;
  out.reserve(doc.size());
  for (std::size_t i = 0; i < doc.size(); ++i) {
    const auto& t = doc[i];
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string() || !t.contains("category")) {
      fail(errc::bad_parameter, "tag {} needs a string 'name' and a 'category'", i);
    }
    tagged_name tag{t["name"].get<std::string>(), 0};
    const auto& c = t["category"];
    if (c.is_number_integer()) {
      tag.category = c.get<int>();
    } else if (c.is_string()) {
      tag.category = parse_category(c.get<std::string>(), fmt::format("tag {}", i));
    } else {
      fail(errc::bad_parameter, "tag {} category must be an integer", i);
    }
    out.push_back(std::move(tag));
  }
  return out;
}

std::vector<tagged_name> parse_tags_csv(std::string_view csv) {
  // Splits records with RFC 4180 quoting (quoted fields may hold commas, doubled quotes and newlines).
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  bool any = false;
  for (std::size_t i = 0; i < csv.size(); ++i) {
    const char c = csv[i];
    if (quoted) {
      if (c == '"' && i + 1 < csv.size() && csv[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
      any = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < csv.size() && csv[i + 1] == '\n') ++i;
      if (any || !field.empty()) {
        row.push_back(std::move(field));
        rows.push_back(std::move(row));
      }
      row.clear();
      field.clear();
      any = false;
    } else {
      field += c;
      any = true;
    }
  }
  if (quoted) fail(errc::bad_parameter, "tags CSV has an unterminated quoted field");
  if (any || !field.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  std::vector<tagged_name> out;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto& fields = rows[r];
    if (fields.size() < 2) fail(errc::bad_parameter, "tags CSV line {} needs name,category", r + 1);
    int category = 0;
    const auto* begin = fields[1].data();
    const auto [ptr, ec] = std::from_chars(begin, begin + fields[1].size(), category);
    if (ec != std::errc() || ptr != begin + fields[1].size()) {
      if (r == 0) continue;  // header row
      fail(errc::bad_parameter, "tags CSV line {}: category '{}' is not an integer", r + 1, fields[1]);
    }
    out.push_back({fields[0], category});
  }
  return out;
}

std::vector<tagged_name> read_tags_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(errc::not_found, "cannot open tag file {}", path.string());
  std::stringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  if (text.rfind("\xef\xbb\xbf", 0) == 0) text.erase(0, 3);  // UTF-8 byte order mark
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') return parse_tags_json(text);
  return parse_tags_csv(text);
}

}  // namespace acg2vec::text
