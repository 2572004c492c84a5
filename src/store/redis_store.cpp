// One file because every operation here shares the key layout (struct keys), the read of an
// item's old state and the WATCH/MULTI retry loop; the connection layer is store/redis_link.h.
#include "store/redis_store.h"

#include "store/redis_link.h"

#include "core/clock.h"
#include "core/uri.h"
#include "core/error.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <random>
#include <cstring>
#include <set>
#include <thread>
#include <unordered_map>

namespace acg2vec::store {

using namespace redis_detail;

namespace {

// Ids may contain any character; braces would change the cluster hash tag, so ids with braces
// (or the escape character) are hex-encoded behind '~'. The mapping stays injective.
std::string key_tag(std::string_view id) {
  if (id.find_first_of("{}") == std::string_view::npos && !id.starts_with('~')) return std::string(id);
  std::string out = "~";
  static constexpr char digits[] = "0123456789abcdef";
  for (const unsigned char c : id) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string hex16(std::uint64_t v) { return fmt::format("{:016x}", v); }

// Members of the order zsets: all scores are 0, so members sort bytewise: created_at (offset to
// sort negatives first), then the insertion sequence, then the id.
std::string order_member(std::int64_t created, std::int64_t seq, std::string_view id) {
  return hex16(static_cast<std::uint64_t>(created) ^ (std::uint64_t{1} << 63)) +
         hex16(static_cast<std::uint64_t>(seq)) + std::string(id);
}
constexpr std::size_t order_prefix = 32;

// What a write needs to know about the stored version of an item.
struct old_state {
  bool exists = false;
  std::int64_t created = 0;
  std::int64_t seq = 0;
  std::string hash;
  std::set<std::string> tags;
  std::vector<std::string> spaces;
};

// Tags as SQLite hands them back: one score per (tagger, tag), the last one given, sorted by
// score descending then tag.
nlohmann::json tags_json(const item& it) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [tagger, list] : it.tags) {
    std::map<std::string, float> last;
    for (const auto& [tag, score] : list) last[tag] = score;
    if (last.empty()) continue;
    std::vector<std::pair<std::string, float>> sorted(last.begin(), last.end());
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    auto& arr = out[tagger] = nlohmann::json::array();
    for (const auto& [tag, score] : sorted) arr.push_back({tag, static_cast<double>(score)});
  }
  return out;
}

nlohmann::json scores_json(const item& it) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [scorer, values] : it.scores) {
    if (values.empty()) continue;
    auto& obj = out[scorer] = nlohmann::json::object();
    for (const auto& [name, value] : values) obj[name] = static_cast<double>(value);
  }
  return out;
}

nlohmann::json parse_json(std::string_view text, std::string_view id, std::string_view field) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(errc::internal, "item '{}' has unreadable {} in redis: {}", id, field, e.what());
  }
}

void read_tags(const nlohmann::json& j, item& it) {
  for (const auto& [tagger, arr] : j.items()) {
    auto& list = it.tags[tagger];
    for (const auto& pair : arr) list.emplace_back(pair.at(0).get<std::string>(), pair.at(1).get<float>());
  }
}

void read_scores(const nlohmann::json& j, item& it) {
  for (const auto& [scorer, obj] : j.items()) {
    for (const auto& [name, value] : obj.items()) it.scores[scorer][name] = value.get<float>();
  }
}

std::map<std::string, std::string, std::less<>> hash_fields(const redisReply* r) {
  std::map<std::string, std::string, std::less<>> out;
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return out;
  for (std::size_t i = 0; i + 1 < r->elements; i += 2)
    out.emplace(std::string(text_of(r->element[i])), std::string(text_of(r->element[i + 1])));
  return out;
}

std::optional<item> item_from_replies(const redisReply* fields_reply, const redisReply* vec_reply,
                                      std::string_view node) {
  if (is_error(fields_reply)) raise_reply(fields_reply, "reading an item", node);
  auto f = hash_fields(fields_reply);
  if (f.empty()) return std::nullopt;
  item it;
  const auto field = [&](std::string_view name) -> const std::string& {
    const auto found = f.find(name);
    if (found == f.end()) fail(errc::internal, "redis: item hash lacks field '{}'", name);
    return found->second;
  };
  it.id = field("id");
  it.numeric_id = field("numeric_id") == "1";
  it.source = field("source");
  it.content_hash = field("content_hash");
  it.width = static_cast<int>(parse_int(field("width")));
  it.height = static_cast<int>(parse_int(field("height")));
  it.metadata = parse_json(field("metadata"), it.id, "metadata");
  it.created_at = parse_int(field("created_at"));
  it.updated_at = parse_int(field("updated_at"));
  read_tags(parse_json(field("tags"), it.id, "tags"), it);
  read_scores(parse_json(field("scores"), it.id, "scores"), it);
  if (vec_reply != nullptr) {
    if (is_error(vec_reply)) raise_reply(vec_reply, "reading vectors", node);
    for (auto& [space, bytes] : hash_fields(vec_reply)) {
      if (bytes.size() % sizeof(float) != 0)
        fail(errc::internal, "item '{}': vector '{}' in redis has the wrong size", it.id, space);
      std::vector<float> v(bytes.size() / sizeof(float));
      if (!v.empty()) std::memcpy(v.data(), bytes.data(), bytes.size());
      it.vectors.emplace(space, std::move(v));
    }
  }
  return it;
}

bool valid_prefix(std::string_view p) {
  return !p.empty() && std::all_of(p.begin(), p.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '.';
  });
}

}  // namespace

redis_options parse_redis_uri(std::string_view uri) {
  redis_options o;
  if (!uri.starts_with("redis://"))
    fail(errc::bad_parameter, "redis address '{}' must start with redis:// (TLS is not supported)", uri);
  auto parts = parse_uri(uri, "redis", 6379);
  if (parts.has_userinfo) {
    o.username = std::move(parts.user);
    o.password = std::move(parts.password);
  }
  if (const std::string_view db = parts.path; !db.empty()) {
    const auto r = std::from_chars(db.data(), db.data() + db.size(), o.db);
    if (r.ec != std::errc() || r.ptr != db.data() + db.size() || o.db < 0)
      fail(errc::bad_parameter, "redis address '{}': database '{}' is not a number", uri, db);
  }
  o.nodes = std::move(parts.hosts);
  if (o.nodes.empty()) fail(errc::bad_parameter, "redis address '{}' names no host", uri);
  for (const auto& [key, value_text] : parts.query) {
    const std::string_view value = value_text;
    const auto ms = [&] {
      int v = 0;
      if (std::from_chars(value.data(), value.data() + value.size(), v).ec != std::errc() || v <= 0)
        fail(errc::bad_parameter, "redis address '{}': {} must be a positive number", uri, key);
      return std::chrono::milliseconds(v);
    };
    if (key == "prefix") {
      o.prefix = std::string(value);
    } else if (key == "timeout_ms") {
      o.command_timeout = ms();
    } else if (key == "connect_timeout_ms") {
      o.connect_timeout = ms();
    } else if (key == "max_backoff_ms") {
      o.max_backoff = ms();
    } else {
      fail(errc::bad_parameter, "redis address '{}': unknown option '{}'", uri, key);
    }
  }
  if (!valid_prefix(o.prefix)) fail(errc::bad_parameter, "redis key prefix '{}' must match [A-Za-z0-9_.-]+", o.prefix);
  return o;
}

namespace {

// Key names of one store.
struct keys {
  std::string prefix;
  std::string item(std::string_view id) const { return prefix + ":item:{" + key_tag(id) + "}"; }
  std::string vec(std::string_view id) const { return prefix + ":vec:{" + key_tag(id) + "}"; }
  std::string idx(std::string_view name) const { return prefix + ":{" + prefix + "}:" + std::string(name); }
  std::string gen() const { return idx("gen"); }
  std::string seq() const { return idx("seq"); }
  std::string order() const { return idx("order"); }
  std::string hash(std::string_view h) const { return idx("hash:") + std::string(h); }
  std::string tag(std::string_view t) const { return idx("tag:") + std::string(t); }
  std::string space(std::string_view s) const { return idx("space:") + std::string(s); }
  std::string spaces() const { return idx("spaces"); }
  std::string journal() const { return idx("resolve-journal"); }
};

template <class F>
auto with_retries(F&& f) {
  for (int attempt = 1;; ++attempt) {
    try {
      return f();
    } catch (const retry_operation& r) {
      if (attempt >= max_attempts) fail(errc::unavailable, "redis: operation kept being redirected ({})", r.why);
      std::this_thread::sleep_for(std::chrono::milliseconds(10 * attempt));
    }
  }
}

old_state state_from(const redisReply* fields, const redisReply* spaces, std::string_view node) {
  if (is_error(fields)) raise_reply(fields, "reading an item", node);
  if (is_error(spaces)) raise_reply(spaces, "reading vectors", node);
  old_state s;
  if (fields == nullptr || fields->type != REDIS_REPLY_ARRAY || fields->elements < 4 ||
      fields->element[0]->type == REDIS_REPLY_NIL)
    return s;
  s.exists = true;
  s.created = parse_int(text_of(fields->element[0]));
  s.seq = parse_int(text_of(fields->element[1]));
  s.hash = std::string(text_of(fields->element[2]));
  const auto tags = parse_json(text_of(fields->element[3]), "?", "tags");
  for (const auto& [tagger, arr] : tags.items())
    for (const auto& pair : arr) s.tags.insert(pair.at(0).get<std::string>());
  if (spaces != nullptr && spaces->type == REDIS_REPLY_ARRAY)
    for (std::size_t i = 0; i < spaces->elements; ++i) s.spaces.emplace_back(text_of(spaces->element[i]));
  return s;
}

command read_state_command(const keys& k, std::string_view id) {
  return {"HMGET", k.item(id), "created_at", "seq", "content_hash", "tags"};
}

void index_removals(const keys& k, std::string_view id, const old_state& s, std::vector<command>& out) {
  if (!s.exists) return;
  const auto member = order_member(s.created, s.seq, id);
  out.push_back({"ZREM", k.order(), member});
  if (!s.hash.empty()) out.push_back({"ZREM", k.hash(s.hash), member});
  for (const auto& t : s.tags) out.push_back({"SREM", k.tag(t), std::string(id)});
  for (const auto& sp : s.spaces) out.push_back({"ZREM", k.space(sp), std::string(id)});
}

// Throws for any error inside an EXEC result; returns false when EXEC was aborted by WATCH.
bool check_exec(const std::vector<reply_ptr>& replies, std::string_view node) {
  const auto* exec = replies.back().get();
  for (std::size_t n = 0; n + 1 < replies.size(); ++n)
    if (is_error(replies[n].get())) raise_reply(replies[n].get(), "a queued command", node);
  if (exec->type == REDIS_REPLY_NIL) return false;
  if (is_error(exec)) raise_reply(exec, "EXEC", node);
  for (std::size_t i = 0; i < exec->elements; ++i)
    if (is_error(exec->element[i])) raise_reply(exec->element[i], "a transaction", node);
  return true;
}

// ---- Resolve journal ----
// A duplicate resolve upserts the merged items and removes their copies: many keys, which in a Redis
// Cluster lie in different hash slots where no MULTI/EXEC or script can span them. So the whole change
// is first written as ONE journal entry (HSET of <prefix>:{<prefix>}:resolve-journal, field: a random
// token, value: the items as written and the ids removed), then applied with the ordinary writes, then
// the entry is deleted. Applying is idempotent (an upsert of the same item again, a removal of an item
// already gone), so an entry left by a killed process is applied again, in full, by the next
// redis_store that touches the prefix, before that one reads or writes anything: an observer that
// opens the store after a crash sees the old state (no entry yet) or the new one (entry finished).

nlohmann::json item_to_journal(const item& it) {
  nlohmann::json tags = nlohmann::json::object();
  for (const auto& [tagger, list] : it.tags) {
    auto& arr = tags[tagger] = nlohmann::json::array();
    for (const auto& [tag, score] : list) arr.push_back({tag, static_cast<double>(score)});
  }
  // Vectors as JSON numbers: a float widened to double prints (17 digits) and parses back exactly.
  nlohmann::json vectors = nlohmann::json::object();
  for (const auto& [space, v] : it.vectors) {
    auto& arr = vectors[space] = nlohmann::json::array();
    for (const float x : v) arr.push_back(static_cast<double>(x));
  }
  // The source goes as hex, byte for byte, independent of JSON escaping (validate_item checks it).
  std::string source_hex;
  for (const unsigned char c : it.source) source_hex += fmt::format("{:02x}", c);
  return {{"id", it.id},           {"numeric_id", it.numeric_id}, {"source_hex", source_hex},
          {"content_hash", it.content_hash}, {"width", it.width},  {"height", it.height},
          {"metadata", it.metadata}, {"tags", std::move(tags)},   {"scores", scores_json(it)},
          {"vectors", std::move(vectors)}, {"created_at", it.created_at}, {"updated_at", it.updated_at}};
}

item item_from_journal(const nlohmann::json& j) {
  item it;
  it.id = j.at("id").get<std::string>();
  it.numeric_id = j.at("numeric_id").get<bool>();
  const auto hex = j.at("source_hex").get<std::string>();
  if (hex.size() % 2 != 0) fail(errc::internal, "redis: resolve journal: odd source_hex");
  for (std::size_t i = 0; i < hex.size(); i += 2)
    it.source += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  it.content_hash = j.at("content_hash").get<std::string>();
  it.width = j.at("width").get<int>();
  it.height = j.at("height").get<int>();
  it.metadata = j.at("metadata");
  read_tags(j.at("tags"), it);
  read_scores(j.at("scores"), it);
  for (const auto& [space, arr] : j.at("vectors").items()) {
    auto& v = it.vectors[space];
    v.reserve(arr.size());
    for (const auto& x : arr) v.push_back(static_cast<float>(x.get<double>()));
  }
  it.created_at = j.at("created_at").get<std::int64_t>();
  it.updated_at = j.at("updated_at").get<std::int64_t>();
  return it;
}

std::string journal_token() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}{:08x}", rd(), rd(), rd());
}

// Set while this thread applies a journal entry: the writes it makes must not look for entries again.
thread_local bool applying_journal = false;

}  // namespace

redis_store::redis_store(redis_options options) : options_(std::move(options)) {
  if (!valid_prefix(options_.prefix))
    fail(errc::bad_parameter, "redis key prefix '{}' must match [A-Za-z0-9_.-]+", options_.prefix);
  link_ = std::make_unique<redis_cluster_link>(options_);
}

redis_store::~redis_store() = default;

bool redis_store::cluster_mode() const noexcept { return link_->cluster(); }

std::uint64_t redis_store::insert(const item& it) { return write({&it, 1}, write_mode::insert); }
std::uint64_t redis_store::upsert(const item& it) { return write({&it, 1}, write_mode::upsert); }
std::uint64_t redis_store::insert_batch(std::span<const item> items) { return write(items, write_mode::insert); }
std::uint64_t redis_store::upsert_batch(std::span<const item> items) { return write(items, write_mode::upsert); }

std::uint64_t redis_store::write(std::span<const item> items, write_mode mode) {
  finish_journal();
  const std::vector<std::string> metadata_text = prepare_write_batch(items, mode == write_mode::insert);
  if (items.empty()) return generation();
  const keys k{options_.prefix};
  const std::int64_t now = unix_time_ms();

  // The commands that store item n given what is stored now; `state` is updated to the new version
  // so a later duplicate in the same batch sees it.
  const auto build = [&](std::size_t n, old_state& state, std::int64_t new_seq, std::vector<command>& item_cmds,
                         std::vector<command>& index_cmds) {
    const item& it = items[n];
    const std::int64_t created = it.created_at != 0 ? it.created_at : (state.exists ? state.created : now);
    const std::int64_t updated = it.updated_at != 0 ? it.updated_at : now;
    const std::int64_t seq = state.exists ? state.seq : new_seq;
    index_removals(k, it.id, state, index_cmds);
    const auto tags = tags_json(it);
    item_cmds.push_back({"DEL", k.item(it.id), k.vec(it.id)});
    item_cmds.push_back({"HSET", k.item(it.id), "id", it.id, "numeric_id", it.numeric_id ? "1" : "0", "source",
                         it.source, "content_hash", it.content_hash, "width", std::to_string(it.width), "height",
                         std::to_string(it.height), "metadata", metadata_text[n], "created_at",
                         std::to_string(created), "updated_at", std::to_string(updated), "seq",
                         std::to_string(seq), "tags", tags.dump(), "scores", scores_json(it).dump()});
    old_state next{true, created, seq, it.content_hash, {}, {}};
    const auto member = order_member(created, seq, it.id);
    index_cmds.push_back({"ZADD", k.order(), "0", member});
    if (!it.content_hash.empty()) index_cmds.push_back({"ZADD", k.hash(it.content_hash), "0", member});
    for (const auto& [tagger, arr] : tags.items()) {
      for (const auto& pair : arr) {
        const auto tag = pair.at(0).get<std::string>();
        if (next.tags.insert(tag).second) index_cmds.push_back({"SADD", k.tag(tag), it.id});
      }
    }
    if (!it.vectors.empty()) {
      command hset{"HSET", k.vec(it.id)};
      for (const auto& [space, v] : it.vectors) {
        // Raw host-order float32, as in the SQLite store: bit-exact round trip.
        hset.push_back(space);
        hset.emplace_back(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
        index_cmds.push_back({"ZADD", k.space(space), std::to_string(v.size()), it.id});
        index_cmds.push_back({"SADD", k.spaces(), space});
        next.spaces.push_back(space);
      }
      item_cmds.push_back(std::move(hset));
    }
    state = std::move(next);
  };

  std::lock_guard lock(mutex_);
  if (!link_->cluster()) {
    // One node: WATCH the items, read their stored versions, then one MULTI/EXEC for the whole
    // batch (items and indexes), so the batch is all-or-nothing even with other writers.
    return with_retries([&]() -> std::uint64_t {
      auto& node = link_->node_for(k.gen());
      std::vector<std::string> ids;
      for (const auto& it : items)
        if (std::find(ids.begin(), ids.end(), it.id) == ids.end()) ids.push_back(it.id);
      std::vector<command> reads;
      command watch{"WATCH"};
      for (const auto& id : ids) {
        watch.push_back(k.item(id));
        watch.push_back(k.vec(id));
      }
      reads.push_back(std::move(watch));
      for (const auto& id : ids) {
        reads.push_back(read_state_command(k, id));
        reads.push_back({"HKEYS", k.vec(id)});
      }
      auto got = node.pipeline(reads);
      if (is_error(got[0].get())) raise_reply(got[0].get(), "WATCH", node.name());
      std::map<std::string, old_state, std::less<>> states;
      std::size_t fresh = 0;
      for (std::size_t n = 0; n < ids.size(); ++n) {
        states[ids[n]] = state_from(got[1 + 2 * n].get(), got[2 + 2 * n].get(), node.name());
        if (!states[ids[n]].exists) ++fresh;
        if (mode == write_mode::insert && states[ids[n]].exists) {
          node.pipeline({{"UNWATCH"}});
          fail(errc::conflict, "item '{}' already exists", ids[n]);
        }
      }
      std::int64_t next_seq = 0;
      if (fresh > 0) next_seq = to_int(node.one({"INCRBY", k.seq(), std::to_string(fresh)}).get(), "INCRBY") - static_cast<std::int64_t>(fresh) + 1;
      std::vector<command> tx{{"MULTI"}};
      for (std::size_t n = 0; n < items.size(); ++n) {
        auto& state = states[items[n].id];
        const bool is_new = !state.exists;
        std::vector<command> index_cmds;
        build(n, state, next_seq, tx, index_cmds);
        if (is_new) ++next_seq;
        for (auto& c : index_cmds) tx.push_back(std::move(c));
      }
      tx.push_back({"INCR", k.gen()});
      tx.push_back({"EXEC"});
      auto replies = node.pipeline(tx);
      if (!check_exec(replies, node.name())) throw retry_operation{"a written item changed meanwhile"};
      const auto* exec = replies.back().get();
      return static_cast<std::uint64_t>(exec->element[exec->elements - 1]->integer);
    });
  }

  // Cluster: an item's two keys share a slot and are written in one MULTI/EXEC on that node; the
  // collection indexes live on another slot and follow in a second transaction. See
  // docs/scale-out.md for what that means for batches.
  if (mode == write_mode::insert) {
    with_retries([&] {
      std::vector<std::pair<std::string, command>> exists;
      for (const auto& it : items) exists.push_back({k.item(it.id), {"EXISTS", k.item(it.id)}});
      auto got = link_->run_many(exists);
      for (std::size_t n = 0; n < items.size(); ++n)
        if (to_int(got[n].get(), "EXISTS") != 0) fail(errc::conflict, "item '{}' already exists", items[n].id);
      return 0;
    });
  }
  std::map<std::string, old_state, std::less<>> states;
  std::uint64_t generation = 0;
  for (std::size_t n = 0; n < items.size(); ++n) {
    const auto& id = items[n].id;
    generation = with_retries([&]() -> std::uint64_t {
      auto& node = link_->node_for(k.item(id));
      auto known = states.find(id);
      old_state state;
      if (known == states.end()) {
        auto got = link_->run(k.item(id), {{"WATCH", k.item(id), k.vec(id)}, read_state_command(k, id), {"HKEYS", k.vec(id)}});
        state = state_from(got[1].get(), got[2].get(), node.name());
        if (mode == write_mode::insert && state.exists) {
          node.pipeline({{"UNWATCH"}});
          fail(errc::conflict, "item '{}' already exists", id);
        }
      } else {
        link_->run(k.item(id), {{"WATCH", k.item(id), k.vec(id)}});
        state = known->second;
      }
      std::int64_t seq = 0;
      if (!state.exists) seq = to_int(link_->run(k.seq(), {{"INCR", k.seq()}}).front().get(), "INCR");
      std::vector<command> item_tx{{"MULTI"}};
      std::vector<command> index_tx{{"MULTI"}};
      old_state next = state;
      build(n, next, seq, item_tx, index_tx);
      item_tx.push_back({"EXEC"});
      if (!check_exec(link_->run(k.item(id), item_tx), node.name()))
        throw retry_operation{"a written item changed meanwhile"};
      states[id] = next;
      index_tx.push_back({"INCR", k.gen()});
      index_tx.push_back({"EXEC"});
      auto replies = link_->run(k.gen(), index_tx);
      check_exec(replies, "the index node");
      const auto* exec = replies.back().get();
      return static_cast<std::uint64_t>(exec->element[exec->elements - 1]->integer);
    });
  }
  return generation;
}

bool redis_store::remove(std::string_view id) {
  finish_journal();
  validate_item_id(id);
  const keys k{options_.prefix};
  std::lock_guard lock(mutex_);
  return with_retries([&]() -> bool {
    auto& node = link_->node_for(k.item(id));
    auto got = link_->run(k.item(id), {{"WATCH", k.item(id), k.vec(id)}, read_state_command(k, id), {"HKEYS", k.vec(id)}});
    const auto state = state_from(got[1].get(), got[2].get(), node.name());
    if (!state.exists) {
      node.pipeline({{"UNWATCH"}});
      return false;
    }
    std::vector<command> index_cmds;
    index_removals(k, id, state, index_cmds);
    index_cmds.push_back({"INCR", k.gen()});
    std::vector<command> tx{{"MULTI"}, {"DEL", k.item(id), k.vec(id)}};
    if (!link_->cluster()) {
      for (auto& c : index_cmds) tx.push_back(std::move(c));
      tx.push_back({"EXEC"});
      if (!check_exec(node.pipeline(tx), node.name())) throw retry_operation{"the item changed meanwhile"};
      return true;
    }
    tx.push_back({"EXEC"});
    if (!check_exec(link_->run(k.item(id), tx), node.name())) throw retry_operation{"the item changed meanwhile"};
    std::vector<command> index_tx{{"MULTI"}};
    for (auto& c : index_cmds) index_tx.push_back(std::move(c));
    index_tx.push_back({"EXEC"});
    check_exec(link_->run(k.gen(), index_tx), "the index node");
    return true;
  });
}

std::optional<item> redis_store::get(std::string_view id) const {
  finish_journal();
  validate_item_id(id);
  const keys k{options_.prefix};
  std::lock_guard lock(mutex_);
  return with_retries([&] {
    auto got = link_->run(k.item(id), {{"HGETALL", k.item(id)}, {"HGETALL", k.vec(id)}});
    return item_from_replies(got[0].get(), got[1].get(), "redis");
  });
}

bool redis_store::contains(std::string_view id) const {
  finish_journal();
  validate_item_id(id);
  const keys k{options_.prefix};
  std::lock_guard lock(mutex_);
  return with_retries([&] { return to_int(link_->run(k.item(id), {{"EXISTS", k.item(id)}}).front().get(), "EXISTS") != 0; });
}

std::optional<std::string> redis_store::find_by_hash(std::string_view hash) const {
  finish_journal();
  if (hash.empty()) return std::nullopt;
  const keys k{options_.prefix};
  std::lock_guard lock(mutex_);
  return with_retries([&]() -> std::optional<std::string> {
    auto got = link_->run(k.gen(), {{"ZRANGE", k.hash(hash), "0", "0"}});
    const auto* r = got.front().get();
    if (is_error(r)) raise_reply(r, "ZRANGE", "redis");
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) return std::nullopt;
    return std::string(text_of(r->element[0]).substr(order_prefix));
  });
}

std::size_t redis_store::count() const {
  finish_journal();
  const keys k{options_.prefix};
  std::lock_guard lock(mutex_);
  return with_retries([&] {
    return static_cast<std::size_t>(to_int(link_->run(k.gen(), {{"ZCARD", k.order()}}).front().get(), "ZCARD"));
  });
}

std::vector<item> redis_store::list(std::size_t offset, std::size_t limit, bool with_vectors) const {
  finish_journal();
  const keys k{options_.prefix};
  std::lock_guard lock(mutex_);
  return with_retries([&] {
    const std::string stop = limit == 0 ? "-1" : std::to_string(offset + limit - 1);
    auto got = link_->run(k.gen(), {{"ZREVRANGE", k.order(), std::to_string(offset), stop}});
    const auto* r = got.front().get();
    if (is_error(r)) raise_reply(r, "ZREVRANGE", "redis");
    std::vector<std::pair<std::string, command>> loads;
    for (std::size_t i = 0; i < r->elements; ++i) {
      const auto id = text_of(r->element[i]).substr(order_prefix);
      loads.push_back({k.item(id), {"HGETALL", k.item(id)}});
      if (with_vectors) loads.push_back({k.item(id), {"HGETALL", k.vec(id)}});
    }
    auto replies = link_->run_many(loads);
    std::vector<item> items;
    const std::size_t step = with_vectors ? 2 : 1;
    for (std::size_t n = 0; n < replies.size(); n += step) {
      // An id whose item vanished between the two reads was removed meanwhile: skip it.
      if (auto it = item_from_replies(replies[n].get(), with_vectors ? replies[n + 1].get() : nullptr, "redis"))
        items.push_back(std::move(*it));
    }
    return items;
  });
}

void redis_store::for_each_vector(
    std::string_view space, const std::function<void(const std::string& id, std::span<const float> v)>& f) const {
  finish_journal();
  const keys k{options_.prefix};
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mutex_);
    ids = with_retries([&] {
      auto got = link_->run(k.gen(), {{"ZRANGE", k.space(space), "0", "-1"}});
      std::vector<std::string> out;
      const auto* r = got.front().get();
      if (is_error(r)) raise_reply(r, "ZRANGE", "redis");
      for (std::size_t i = 0; i < r->elements; ++i) out.emplace_back(text_of(r->element[i]));
      return out;
    });
  }
  std::vector<float> buffer;
  for (std::size_t start = 0; start < ids.size(); start += chunk) {
    const auto end = std::min(ids.size(), start + chunk);
    std::vector<reply_ptr> replies;
    {
      // The callback runs unlocked: it may be slow (index building) and must not block others.
      std::lock_guard lock(mutex_);
      replies = with_retries([&] {
        std::vector<std::pair<std::string, command>> loads;
        for (auto n = start; n < end; ++n) loads.push_back({k.vec(ids[n]), {"HGET", k.vec(ids[n]), std::string(space)}});
        return link_->run_many(loads);
      });
    }
    for (auto n = start; n < end; ++n) {
      const auto* r = replies[n - start].get();
      if (is_error(r)) raise_reply(r, "HGET", "redis");
      if (r->type != REDIS_REPLY_STRING) continue;  // removed meanwhile
      if (r->len % sizeof(float) != 0)
        fail(errc::internal, "item '{}': vector '{}' in redis has the wrong size", ids[n], space);
      buffer.resize(r->len / sizeof(float));
      if (!buffer.empty()) std::memcpy(buffer.data(), r->str, r->len);
      f(ids[n], std::span<const float>(buffer));
    }
  }
}

std::vector<std::string> redis_store::search_tags(const tag_query& q) const {
  finish_journal();
  const keys k{options_.prefix};
  std::lock_guard lock(mutex_);
  return with_retries([&] {
    // Candidates come from the tag sets (which hold an id for any tagger and score); the exact
    // test runs here on each candidate's stored tags, the same rules as the SQLite query.
    std::vector<command> cmds;
    if (!q.all_of.empty()) {
      command c{"SINTER"};
      for (const auto& t : q.all_of) c.push_back(k.tag(t));
      cmds.push_back(std::move(c));
    }
    if (!q.any_of.empty()) {
      command c{"SUNION"};
      for (const auto& t : q.any_of) c.push_back(k.tag(t));
      cmds.push_back(std::move(c));
    }
    if (cmds.empty()) cmds.push_back({"ZRANGE", k.order(), "0", "-1"});
    auto got = link_->run(k.gen(), cmds);
    std::vector<std::set<std::string>> sets;
    for (const auto& r : got) {
      if (is_error(r.get())) raise_reply(r.get(), "a tag query", "redis");
      std::set<std::string> s;
      const bool from_order = q.all_of.empty() && q.any_of.empty();
      for (std::size_t i = 0; i < r->elements; ++i) {
        const auto t = text_of(r->element[i]);
        s.emplace(from_order ? t.substr(order_prefix) : t);
      }
      sets.push_back(std::move(s));
    }
    std::vector<std::string> candidates(sets[0].begin(), sets[0].end());
    if (sets.size() == 2)
      std::erase_if(candidates, [&](const std::string& id) { return sets[1].count(id) == 0; });

    std::vector<std::pair<std::string, command>> loads;
    for (const auto& id : candidates)
      loads.push_back({k.item(id), {"HMGET", k.item(id), "created_at", "seq", "tags", "scores"}});
    auto replies = link_->run_many(loads);

    struct match {
      std::int64_t created;
      std::int64_t seq;
      const std::string* id;
      std::optional<float> key;  ///< the order_by_score value
    };
    std::vector<match> matches;
    const auto counts = [&](const std::string& tagger) { return !q.tagger || *q.tagger == tagger; };
    for (std::size_t n = 0; n < candidates.size(); ++n) {
      const auto* r = replies[n].get();
      if (is_error(r)) raise_reply(r, "HMGET", "redis");
      if (r->elements < 4 || r->element[0]->type == REDIS_REPLY_NIL) continue;
      item it;
      it.id = candidates[n];
      read_tags(parse_json(text_of(r->element[2]), it.id, "tags"), it);
      read_scores(parse_json(text_of(r->element[3]), it.id, "scores"), it);
      const auto on = [&](const std::string& tag) {
        for (const auto& [tagger, list] : it.tags) {
          if (!counts(tagger)) continue;
          for (const auto& [t, score] : list)
            if (t == tag && score >= q.min_score) return true;
        }
        return false;
      };
      bool ok = std::all_of(q.all_of.begin(), q.all_of.end(), on);
      if (ok && !q.any_of.empty()) ok = std::any_of(q.any_of.begin(), q.any_of.end(), on);
      if (ok) ok = std::none_of(q.none_of.begin(), q.none_of.end(), on);
      if (ok && q.rating) {
        // Some tagger's highest-scoring rating tag names <rating> (ties count; both spellings).
        bool rated = false;
        for (const auto& [tagger, list] : it.tags) {
          if (!counts(tagger)) continue;
          std::optional<float> best;
          for (const auto& [t, score] : list)
            if (is_rating_tag(t) && (!best || score > *best)) best = score;
          for (const auto& [t, score] : list)
            if (is_rating_tag(t) && rating_of_tag(t) == *q.rating && best && score == *best) rated = true;
        }
        ok = rated;
      }
      for (const auto& m : q.score_minimums) {
        if (!ok) break;
        const auto s = it.scores.find(m.scorer);
        if (s == it.scores.end()) {
          ok = false;
          break;
        }
        const auto v = s->second.find(m.name);
        ok = v != s->second.end() && v->second >= m.minimum;
      }
      for (const auto& m : q.score_maximums) {
        if (!ok) break;
        const auto s = it.scores.find(m.scorer);
        if (s == it.scores.end()) {
          ok = false;
          break;
        }
        const auto v = s->second.find(m.name);
        ok = v != s->second.end() && v->second <= m.maximum;
      }
      std::optional<float> key;
      if (ok && q.order_by_score) {
        if (const auto s = it.scores.find(q.order_by_score->scorer); s != it.scores.end()) {
          if (const auto v = s->second.find(q.order_by_score->name); v != s->second.end()) key = v->second;
        }
      }
      if (ok) matches.push_back({parse_int(text_of(r->element[0])), parse_int(text_of(r->element[1])), &candidates[n], key});
    }
    // The SQLite order: by score (missing ones last) when asked, then by creation (newest first
    // unless ascending without a score order), then by insertion sequence.
    const bool by_score = q.order_by_score.has_value();
    const bool oldest_first = q.ascending && !by_score;
    std::sort(matches.begin(), matches.end(), [&](const match& a, const match& b) {
      if (by_score && a.key.has_value() != b.key.has_value()) return a.key.has_value();
      if (by_score && a.key && *a.key != *b.key) return q.ascending ? *a.key < *b.key : *a.key > *b.key;
      if (a.created != b.created) return oldest_first ? a.created < b.created : a.created > b.created;
      return oldest_first ? a.seq < b.seq : a.seq > b.seq;
    });
    std::vector<std::string> ids;
    for (std::size_t n = q.offset; n < matches.size(); ++n) {
      if (q.limit != 0 && ids.size() >= q.limit) break;
      ids.push_back(*matches[n].id);
    }
    return ids;
  });
}

std::map<std::string, space_count> redis_store::vector_counts() const {
  finish_journal();
  const keys k{options_.prefix};
  std::lock_guard lock(mutex_);
  return with_retries([&] {
    auto got = link_->run(k.gen(), {{"SMEMBERS", k.spaces()}});
    const auto* r = got.front().get();
    if (is_error(r)) raise_reply(r, "SMEMBERS", "redis");
    std::vector<std::string> spaces;
    for (std::size_t i = 0; i < r->elements; ++i) spaces.emplace_back(text_of(r->element[i]));
    std::vector<command> cmds;
    for (const auto& s : spaces) {
      cmds.push_back({"ZCARD", k.space(s)});
      cmds.push_back({"ZREVRANGE", k.space(s), "0", "0", "WITHSCORES"});
    }
    std::map<std::string, space_count> counts;
    if (cmds.empty()) return counts;
    auto replies = link_->run(k.gen(), cmds);
    for (std::size_t n = 0; n < spaces.size(); ++n) {
      const auto count = static_cast<std::size_t>(to_int(replies[2 * n].get(), "ZCARD"));
      const auto* top = replies[2 * n + 1].get();
      if (count == 0 || top->type != REDIS_REPLY_ARRAY || top->elements < 2) continue;
      counts[spaces[n]] = {count, static_cast<int>(parse_int(text_of(top->element[1])))};
    }
    return counts;
  });
}

std::uint64_t redis_store::generation() const {
  finish_journal();
  const keys k{options_.prefix};
  std::lock_guard lock(mutex_);
  return with_retries([&] {
    auto got = link_->run(k.gen(), {{"GET", k.gen()}});
    if (is_error(got.front().get())) raise_reply(got.front().get(), "GET", "redis");
    return static_cast<std::uint64_t>(to_int(got.front().get(), "GET"));
  });
}

std::uint64_t redis_store::upsert_and_remove(std::span<const item> upserts, std::span<const std::string> removals,
                                             const std::function<void()>& before_commit) {
  finish_journal();
  // Everything is checked before the entry is recorded: an entry that cannot be applied would stop
  // every later access of the store.
  prepare_write_batch(upserts, false);
  for (const auto& id : removals) validate_item_id(id);
  nlohmann::json entry{{"upserts", nlohmann::json::array()}, {"removals", removals}, {"started_ms", unix_time_ms()}};
  for (const auto& it : upserts) entry["upserts"].push_back(item_to_journal(it));
  const std::string payload = entry.dump();
  const keys k{options_.prefix};
  const std::string token = journal_token();
  {
    std::lock_guard lock(mutex_);
    with_retries([&] {
      auto got = link_->run(k.journal(), {{"HSET", k.journal(), token, payload}});
      if (is_error(got.front().get())) raise_reply(got.front().get(), "HSET", "the journal node");
      return 0;
    });
  }
  return apply_journal_entry(token, payload, before_commit);
}

std::uint64_t redis_store::apply_journal_entry(std::string_view token, std::string_view payload,
                                               const std::function<void()>& before_commit) {
  struct restore_flag {
    bool before = applying_journal;
    ~restore_flag() { applying_journal = before; }
  } restore;
  applying_journal = true;
  std::vector<item> upserts;
  std::vector<std::string> removals;
  try {
    const auto entry = nlohmann::json::parse(payload);
    for (const auto& j : entry.at("upserts")) upserts.push_back(item_from_journal(j));
    for (const auto& id : entry.at("removals")) removals.push_back(id.get<std::string>());
  } catch (const std::exception& e) {
    fail(errc::internal, "redis: resolve journal entry '{}' in {} is unreadable ({}); delete it with HDEL to go on",
         token, keys{options_.prefix}.journal(), e.what());
  }
  if (!upserts.empty()) write(upserts, write_mode::upsert);
  if (before_commit) before_commit();
  for (const auto& id : removals) remove(id);
  const keys k{options_.prefix};
  std::lock_guard lock(mutex_);
  return with_retries([&] {
    auto got = link_->run(k.journal(), {{"HDEL", k.journal(), std::string(token)}});
    if (is_error(got.front().get())) raise_reply(got.front().get(), "HDEL", "the journal node");
    got = link_->run(k.gen(), {{"GET", k.gen()}});
    if (is_error(got.front().get())) raise_reply(got.front().get(), "GET", "redis");
    return static_cast<std::uint64_t>(to_int(got.front().get(), "GET"));
  });
}

void redis_store::finish_journal() const {
  if (applying_journal || journal_checked_.load(std::memory_order_acquire)) return;
  // Other threads wait here until the entries are applied: nothing is read before.
  std::lock_guard once(journal_mutex_);
  if (journal_checked_.load(std::memory_order_acquire)) return;
  const keys k{options_.prefix};
  std::map<std::string, std::string, std::less<>> entries;
  {
    std::lock_guard lock(mutex_);
    with_retries([&] {
      auto got = link_->run(k.journal(), {{"HGETALL", k.journal()}});
      if (is_error(got.front().get())) raise_reply(got.front().get(), "HGETALL", "the journal node");
      entries = hash_fields(got.front().get());
      return 0;
    });
  }
  // The store object is logically unchanged by finishing what another process committed to.
  auto* self = const_cast<redis_store*>(this);
  for (const auto& [token, payload] : entries) {
    spdlog::warn("redis: finishing a duplicate resolve that a stopped process left in {} ({})", k.journal(), token);
    self->apply_journal_entry(token, payload, {});
  }
  journal_checked_.store(true, std::memory_order_release);
}

void redis_store::clear() {
  std::lock_guard lock(mutex_);
  with_retries([&] {
    for (auto* node : link_->masters()) {
      std::string cursor = "0";
      do {
        auto r = node->one({"SCAN", cursor, "MATCH", options_.prefix + ":*", "COUNT", "1000"});
        if (is_error(r.get()) || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
          raise_reply(r.get(), "SCAN", node->name());
        cursor = std::string(text_of(r->element[0]));
        std::vector<command> dels;
        for (std::size_t i = 0; i < r->element[1]->elements; ++i)
          dels.push_back({"UNLINK", std::string(text_of(r->element[1]->element[i]))});
        if (!dels.empty()) node->pipeline(dels);
      } while (cursor != "0");
    }
    return 0;
  });
}

}  // namespace acg2vec::store
