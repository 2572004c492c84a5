// Access control pieces: constant-time key comparison, key files, the key headers, CORS origin
// lists and the per-client token bucket (driven by an injected clock).
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "server/access.h"

namespace acg2vec::server {
namespace {

TEST(ConstantTimeEqual, EqualStrings) {
  EXPECT_TRUE(server::constant_time_equal("", ""));
  EXPECT_TRUE(server::constant_time_equal("k", "k"));
  EXPECT_TRUE(server::constant_time_equal("s3cret-key-0123456789", "s3cret-key-0123456789"));
  std::string longest(server::max_key_bytes, 'z');
  EXPECT_TRUE(server::constant_time_equal(longest, longest));
}

TEST(ConstantTimeEqual, UnequalStringsOfSameLength) {
  EXPECT_FALSE(server::constant_time_equal("abcdef", "abcdeg"));  // last byte
  EXPECT_FALSE(server::constant_time_equal("xbcdef", "abcdef"));  // first byte
  EXPECT_FALSE(server::constant_time_equal("a", "A"));
  std::string a(server::max_key_bytes, 'z');
  std::string b = a;
  b[server::max_key_bytes - 1] = 'y';
  EXPECT_FALSE(server::constant_time_equal(a, b));
}

TEST(ConstantTimeEqual, DifferentLengthsNeverMatch) {
  EXPECT_FALSE(server::constant_time_equal("abc", "abcd"));
  EXPECT_FALSE(server::constant_time_equal("abcd", "abc"));
  EXPECT_FALSE(server::constant_time_equal("", "a"));
  EXPECT_FALSE(server::constant_time_equal("a", ""));
  // Zero padding must not make a key equal to itself with trailing NULs.
  EXPECT_FALSE(server::constant_time_equal("abc", std::string("abc\0", 4)));
  EXPECT_FALSE(server::constant_time_equal(std::string("\0", 1), ""));
}

TEST(ConstantTimeEqual, OversizedValuesNeverMatch) {
  std::string big(server::max_key_bytes + 1, 'q');
  EXPECT_FALSE(server::constant_time_equal(big, big));
  EXPECT_FALSE(server::constant_time_equal(big, big.substr(0, server::max_key_bytes)));
  EXPECT_FALSE(server::constant_time_equal(big.substr(0, server::max_key_bytes), big));
}

TEST(KeySet, FindsTheMatchingKeyAmongSeveral) {
  server::key_set keys({"alpha-key", "beta-key", "gamma"});
  EXPECT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys.find("alpha-key"), 0u);
  EXPECT_EQ(keys.find("beta-key"), 1u);
  EXPECT_EQ(keys.find("gamma"), 2u);
  EXPECT_EQ(keys.find("gamm"), std::nullopt);
  EXPECT_EQ(keys.find("gamma "), std::nullopt);
  EXPECT_EQ(keys.find(""), std::nullopt);
  EXPECT_EQ(keys.find("ALPHA-KEY"), std::nullopt);
  EXPECT_EQ(keys.find(std::string(1000, 'a')), std::nullopt);
  EXPECT_EQ(server::key_set().find("anything"), std::nullopt);
  EXPECT_TRUE(server::key_set().empty());
}

TEST(KeySet, RefusesKeysThatCannotTravelInAHeader) {
  EXPECT_THROW(server::key_set({""}), error);
  EXPECT_THROW(server::key_set({"has space"}), error);
  EXPECT_THROW(server::key_set({"tab\there"}), error);
  EXPECT_THROW(server::key_set({std::string(server::max_key_bytes + 1, 'k')}), error);
  EXPECT_NO_THROW(server::key_set({std::string(server::max_key_bytes, 'k')}));
}

TEST(KeyFile, SkipsBlankLinesAndCommentsAndTrims) {
  auto keys = server::parse_key_file("# deploy keys\n\nfirst-key\n  second-key  \r\n\t# indented comment\nthird#not-a-comment\n",
                             "keys.txt");
  EXPECT_EQ(keys, (std::vector<std::string>{"first-key", "second-key", "third#not-a-comment"}));
  // No trailing newline; CRLF endings.
  EXPECT_EQ(server::parse_key_file("a\r\nb", "k"), (std::vector<std::string>{"a", "b"}));
}

TEST(KeyFile, RejectsFilesWithoutKeysAndBadLines) {
  EXPECT_THROW(server::parse_key_file("", "k"), error);
  EXPECT_THROW(server::parse_key_file("\n  \n# only a comment\n", "k"), error);
  try {
    server::parse_key_file("good\nbad key\n", "keys.txt");
    FAIL() << "a key with a space was accepted";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::bad_parameter);
    std::string what = e.what();
    EXPECT_NE(what.find("line 2"), std::string::npos) << what;
    EXPECT_NE(what.find("keys.txt"), std::string::npos) << what;
    EXPECT_EQ(what.find("bad key"), std::string::npos) << "the key itself must not be echoed: " << what;
  }
}

class KeyFileOnDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("acg2vec-keys-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path write(const std::string& name, const std::string& text) {
    auto p = dir_ / name;
    std::ofstream(p) << text;
    return p;
  }
  std::filesystem::path dir_;
};

TEST_F(KeyFileOnDisk, LoadsKeys) {
  auto keys = server::load_key_file(write("keys", "# c\nkey-one\nkey-two\n"));
  EXPECT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys.find("key-two"), 1u);
}

TEST_F(KeyFileOnDisk, MissingEmptyAndDirectoryAreErrors) {
  EXPECT_THROW(server::load_key_file(dir_ / "absent"), error);
  EXPECT_THROW(server::load_key_file(write("empty", "")), error);
  EXPECT_THROW(server::load_key_file(dir_), error);
}

// Root reads files whatever their mode, and CI runs as root: there the check runs in a forked child
// that has dropped to nobody (uid/gid 65534) first, so it runs everywhere instead of skipping.
TEST_F(KeyFileOnDisk, UnreadableIsAnError) {
  auto readable = write("readable", "key\n");
  auto locked = write("locked", "key\n");
  ASSERT_EQ(::chmod(readable.c_str(), 0644), 0);
  ASSERT_EQ(::chmod(locked.c_str(), 0), 0);
  if (::geteuid() != 0) {
    EXPECT_EQ(server::load_key_file(readable).size(), 1u);
    EXPECT_THROW(server::load_key_file(locked), error);
    return;
  }
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);  // nobody must reach the readable file
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only async-signal-safe calls matter until the privileges are gone; the checks report by exit code.
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0 || ::geteuid() == 0) ::_exit(10);
    try {
      if (server::load_key_file(readable).size() != 1) ::_exit(11);
    } catch (...) {
      ::_exit(11);  // the control: a readable file must load, or the next check proves nothing
    }
    try {
      server::load_key_file(locked);
    } catch (const error&) {
      ::_exit(0);
    } catch (...) {
      ::_exit(13);
    }
    ::_exit(12);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child ended by a signal";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: could not drop to nobody, 11: a readable key file did not load as nobody, "
                                       "12: a mode-0 key file loaded as nobody, 13: wrong exception type";
}

TEST(PresentedKey, BearerAndHeaderForms) {
  EXPECT_EQ(server::presented_key("Bearer abc", ""), "abc");
  EXPECT_EQ(server::presented_key("bearer   abc  ", ""), "abc");
  EXPECT_EQ(server::presented_key("BEARER abc", "other"), "abc");
  EXPECT_EQ(server::presented_key("", "xyz"), "xyz");
  EXPECT_EQ(server::presented_key("", "  xyz "), "xyz");
  EXPECT_EQ(server::presented_key("Basic dXNlcjpwdw==", "xyz"), "xyz");  // not a bearer token
  EXPECT_EQ(server::presented_key("Bearer", ""), std::nullopt);
  EXPECT_EQ(server::presented_key("Bearer   ", ""), std::nullopt);
  EXPECT_EQ(server::presented_key("Bearerabc", ""), std::nullopt);
  EXPECT_EQ(server::presented_key("", ""), std::nullopt);
}

TEST(OriginList, ExactOriginsCommaListsAndWildcard) {
  server::origin_list none;
  EXPECT_TRUE(none.empty());
  EXPECT_FALSE(none.allows("http://a.example"));

  server::origin_list list({"https://App.Example/", "http://localhost:3000, http://127.0.0.1:8080"});
  EXPECT_FALSE(list.empty());
  EXPECT_FALSE(list.allows_any());
  EXPECT_TRUE(list.allows("https://app.example"));
  EXPECT_TRUE(list.allows("http://localhost:3000"));
  EXPECT_TRUE(list.allows("http://127.0.0.1:8080"));
  EXPECT_FALSE(list.allows("http://localhost:3001"));
  EXPECT_FALSE(list.allows("https://app.example.evil.test"));
  EXPECT_FALSE(list.allows("null"));
  EXPECT_FALSE(list.allows(""));

  server::origin_list any({"*"});
  EXPECT_TRUE(any.allows_any());
  EXPECT_TRUE(any.allows("https://whatever.test"));
  EXPECT_FALSE(any.allows(""));
}

TEST(OriginList, RejectsWhatIsNotAnOrigin) {
  EXPECT_THROW(server::origin_list({"app.example"}), error);
  EXPECT_THROW(server::origin_list({"https://app.example/path"}), error);
  EXPECT_THROW(server::origin_list({"https://"}), error);
}

// A clock the test moves by hand.
struct manual_clock {
  server::rate_limiter::clock::time_point now{std::chrono::seconds(1000)};
  server::rate_limiter::clock_fn fn() {
    return [this] { return now; };
  }
  void advance(double seconds) {
    now += std::chrono::duration_cast<server::rate_limiter::clock::duration>(std::chrono::duration<double>(seconds));
  }
};

TEST(RateLimiter, BurstThenRefillAtTheRate) {
  manual_clock clock;
  server::rate_limiter limiter(2.0, 3.0, 100, clock.fn());  // 2 per second, bursts of 3
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.acquire("a").allowed) << i;
  auto refused = limiter.acquire("a");
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after_s, 1);  // one token takes 0.5 s, rounded up to whole seconds
  clock.advance(0.25);
  EXPECT_FALSE(limiter.acquire("a").allowed);
  clock.advance(0.25);  // 0.5 s since the bucket emptied: one token
  EXPECT_TRUE(limiter.acquire("a").allowed);
  EXPECT_FALSE(limiter.acquire("a").allowed);
  clock.advance(100);  // refills to the burst, not beyond
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.acquire("a").allowed) << i;
  EXPECT_FALSE(limiter.acquire("a").allowed);
}

TEST(RateLimiter, ClientsHaveSeparateBuckets) {
  manual_clock clock;
  server::rate_limiter limiter(1.0, 1.0, 100, clock.fn());
  EXPECT_TRUE(limiter.acquire("a").allowed);
  EXPECT_FALSE(limiter.acquire("a").allowed);
  EXPECT_TRUE(limiter.acquire("b").allowed);
  EXPECT_FALSE(limiter.acquire("b").allowed);
}

TEST(RateLimiter, RetryAfterCoversTheWaitForOneToken) {
  manual_clock clock;
  server::rate_limiter limiter(0.25, 1.0, 100, clock.fn());  // one request per 4 s
  EXPECT_TRUE(limiter.acquire("slow").allowed);
  auto d = limiter.acquire("slow");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_s, 4);
  clock.advance(static_cast<double>(d.retry_after_s));
  EXPECT_TRUE(limiter.acquire("slow").allowed);
}

TEST(RateLimiter, ForgetsIdleClientsAndStaysBounded) {
  manual_clock clock;
  server::rate_limiter limiter(10.0, 5.0, 4, clock.fn());
  for (int i = 0; i < 4; ++i) limiter.acquire("c" + std::to_string(i));
  EXPECT_EQ(limiter.tracked(), 4u);
  // Over capacity: the least recently seen client goes, the map never exceeds its bound.
  limiter.acquire("c4");
  EXPECT_EQ(limiter.tracked(), 4u);
  for (int i = 5; i < 50; ++i) {
    limiter.acquire("c" + std::to_string(i));
    EXPECT_LE(limiter.tracked(), 4u);
  }
  // After a full refill time (burst / rate = 0.5 s) idle buckets are dropped.
  clock.advance(0.6);
  limiter.acquire("fresh");
  EXPECT_EQ(limiter.tracked(), 1u);
}

TEST(RateLimiter, EvictingAnIdleClientLosesNothing) {
  manual_clock clock;
  server::rate_limiter limiter(1.0, 2.0, 2, clock.fn());
  EXPECT_TRUE(limiter.acquire("a").allowed);
  EXPECT_TRUE(limiter.acquire("a").allowed);
  EXPECT_FALSE(limiter.acquire("a").allowed);
  clock.advance(1.0);  // "a" has one token back but is not yet full: it must be remembered
  limiter.acquire("b");
  EXPECT_TRUE(limiter.acquire("a").allowed);
  EXPECT_FALSE(limiter.acquire("a").allowed);
}

TEST(RateLimiter, RejectsNonsenseSettings) {
  EXPECT_THROW(server::rate_limiter(0.0, 1.0), error);
  EXPECT_THROW(server::rate_limiter(-1.0, 1.0), error);
  EXPECT_THROW(server::rate_limiter(1.0, 0.5), error);
}

TEST(RateLimiter, ConcurrentClientsNeverExceedTheBurst) {
  manual_clock clock;  // frozen: no refill, so exactly `burst` requests may pass in total
  server::rate_limiter limiter(1.0, 50.0, 100, clock.fn());
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) allowed += limiter.acquire("shared").allowed ? 1 : 0;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 50);
}

}  // namespace
}  // namespace acg2vec::server
