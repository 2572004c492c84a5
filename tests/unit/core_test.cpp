#include <gtest/gtest.h>

#include <atomic>
#include <set>

#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"

namespace acg2vec {

TEST(Error, EveryCodeHasDistinctStatusAndExit) {
  const errc all[] = {errc::bad_parameter, errc::unsupported_media, errc::too_large,       errc::not_found,
                      errc::conflict,      errc::unavailable,       errc::timeout,         errc::not_implemented,
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

}  // namespace acg2vec
