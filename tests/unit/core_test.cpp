#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "core/hash.h"
#include "core/uri.h"
#include "core/progress.h"
#include "core/thread_pool.h"

namespace acg2vec {

TEST(Error, EveryCodeHasDistinctStatusAndExit) {
  const errc all[] = {errc::bad_parameter, errc::unsupported_media, errc::too_large,       errc::not_found,
                      errc::conflict,      errc::unavailable,       errc::timeout,         errc::not_implemented,
                      errc::unauthorized,  errc::forbidden,         errc::rate_limited,    errc::method_not_allowed,
                      errc::internal};
  std::set<int> statuses;
  std::set<int> exits;
  for (auto c : all) {
    statuses.insert(http_status(c));
    exits.insert(exit_code(c));
    EXPECT_FALSE(to_string(c).empty());
    EXPECT_NE(exit_code(c), 0);
  }
  EXPECT_EQ(statuses.size(), std::size(all));
  EXPECT_EQ(exits.size(), std::size(all));
  EXPECT_EQ(http_status(errc::bad_parameter), 400);
  EXPECT_EQ(http_status(errc::too_large), 413);
  EXPECT_EQ(http_status(errc::unsupported_media), 415);
  EXPECT_EQ(http_status(errc::unavailable), 503);
  EXPECT_EQ(http_status(errc::unauthorized), 401);
  EXPECT_EQ(http_status(errc::forbidden), 403);
  EXPECT_EQ(http_status(errc::rate_limited), 429);
  EXPECT_EQ(http_status(errc::method_not_allowed), 405);
  EXPECT_EQ(http_status(errc::internal), 500);
  EXPECT_EQ(to_string(errc::rate_limited), "rate_limited");
}

TEST(Error, FailFormatsMessage) {
  try {
    fail(errc::not_found, "item {} not found", 42);
    FAIL();
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::not_found);
    EXPECT_STREQ(e.what(), "item 42 not found");
  }
}

TEST(Progress, PlainLinesWhenNotATty) {
  std::FILE* f = std::tmpfile();
  {
    progress_bar bar("ingest", 10, f);
    for (int i = 0; i < 10; ++i) bar.advance();
    EXPECT_EQ(bar.done(), 10u);
  }
  std::rewind(f);
  char buf[256] = {};
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  std::string text(buf, n);
  EXPECT_NE(text.find("ingest: 10/10"), std::string::npos) << text;
  EXPECT_NE(text.find("(done)"), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << "no carriage returns in logs";
}

TEST(Progress, DurationFormat) {
  EXPECT_EQ(format_duration(5), "5s");
  EXPECT_EQ(format_duration(125), "2m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
}

TEST(ThreadPool, RunsTasksAndPropagatesExceptions) {
  thread_pool pool(2);
  std::atomic<int> sum{0};
  std::vector<std::future<void>> futures;
  for (int i = 1; i <= 100; ++i) futures.push_back(pool.submit([&sum, i] { sum += i; }));
  for (auto& f : futures) f.get();
  EXPECT_EQ(sum.load(), 5050);
  auto bad = pool.submit([]() -> int { fail(errc::internal, "boom"); });
  EXPECT_THROW(bad.get(), error);
}

}  // namespace acg2vec

#include "core/base64.h"

namespace acg2vec {

TEST(Base64, BothAlphabetsPaddingOptional) {
  // RFC 4648 test vectors, and bytes that differ between the two alphabets (0xfb 0xff).
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_decode("Zm8=").value(), "fo");
  EXPECT_EQ(base64_decode("Zm8").value(), "fo");
  std::string odd("\xfb\xff\xbf", 3);
  EXPECT_EQ(base64_encode(odd), "+/+/");
  EXPECT_EQ(base64_decode("+/+/").value(), odd);
  EXPECT_EQ(base64_decode("-_-_").value(), odd);
  EXPECT_FALSE(base64_decode("Zm9v!").has_value());
  EXPECT_FALSE(base64_decode("Z").has_value());
  EXPECT_FALSE(base64_decode("Zm 9v").has_value());
  EXPECT_EQ(base64_decode("").value(), "");
}

// ---- core/files, core/hash, core/uri ----

namespace {
errc thrown_code(const std::function<void()>& f) {
  try {
    f();
  } catch (const error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no acg2vec::error thrown";
  return errc::internal;
}
}  // namespace

TEST(Files, AtomicWriteReplacesWholeAndReadBack) {
  const auto dir = std::filesystem::path(ACG2VEC_TEST_WORK) / "core_files";
  std::filesystem::remove_all(dir);
  const auto file = dir / "sub" / "a.txt";  // parents are created
  write_file_atomic(file, "first");
  EXPECT_EQ(read_file(file), "first");
  write_file_atomic(file, std::string(100000, 'x'), dir / "sub" / ".a.tmp");
  EXPECT_EQ(read_file(file), std::string(100000, 'x'));
  // No temporary is left beside it.
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir / "sub")) ++entries;
  EXPECT_EQ(entries, 1u);
  EXPECT_EQ(thrown_code([&] { (void)read_file(dir / "missing"); }), errc::not_found);
  EXPECT_EQ(thrown_code([&] { (void)read_file(file, "test file", 10); }), errc::too_large);
  try {
    (void)read_file(dir / "missing", "manifest");
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("manifest"), std::string::npos) << e.what();
  }
  // A folder that cannot hold the file: an error, and nothing half written.
  EXPECT_EQ(thrown_code([&] { write_file_atomic(file / "below-a-file", "x"); }), errc::internal);
}

TEST(Hash, Sha256KnownAnswers) {
  // FIPS 180-4 examples.
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const auto file = std::filesystem::path(ACG2VEC_TEST_WORK) / "core_hash.bin";
  std::filesystem::create_directories(file.parent_path());
  write_file_atomic(file, std::string(3 << 20, 'a'));  // more than one 1 MiB read
  EXPECT_EQ(sha256_file_hex(file), sha256_hex(std::string(3 << 20, 'a')));
  EXPECT_EQ(to_hex(std::string("\x00\x7f\xff", 3)), "007fff");
}

TEST(Uri, SplitsEveryPart) {
  const auto u = parse_uri("redis://user:pw@h1:7000,h2/3?prefix=a&timeout_ms=5&flag", "redis", 6379);
  EXPECT_EQ(u.scheme, "redis");
  EXPECT_TRUE(u.has_userinfo);
  EXPECT_TRUE(u.has_password_colon);
  EXPECT_EQ(u.user, "user");
  EXPECT_EQ(u.password, "pw");
  ASSERT_EQ(u.hosts.size(), 2u);
  EXPECT_EQ(u.hosts[0], (std::pair<std::string, int>{"h1", 7000}));
  EXPECT_EQ(u.hosts[1], (std::pair<std::string, int>{"h2", 6379}));
  EXPECT_EQ(u.path, "3");
  ASSERT_EQ(u.query.size(), 3u);
  EXPECT_EQ(u.query[0], (std::pair<std::string, std::string>{"prefix", "a"}));
  EXPECT_EQ(u.query[2], (std::pair<std::string, std::string>{"flag", ""}));
  const auto bare = parse_uri("faiss?kind=hnsw&&m=16", "index", 0);
  EXPECT_EQ(bare.scheme, "faiss");
  EXPECT_TRUE(bare.hosts.empty());
  EXPECT_EQ(bare.query.size(), 2u);  // the empty pair between && is skipped
  const auto secret = parse_uri("redis://onlysecret@h", "redis", 1);
  EXPECT_FALSE(secret.has_password_colon);
  EXPECT_EQ(secret.password, "onlysecret");
  for (const char* bad : {"redis://h:0", "redis://h:65536", "redis://h:12x", "redis://:80", "redis://h1,:5"}) {
    EXPECT_EQ(thrown_code([&] { (void)parse_uri(bad, "redis", 6379); }), errc::bad_parameter) << bad;
  }
}

}  // namespace acg2vec
