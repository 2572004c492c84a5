// Request framing before any handler: head limits, body framing, chunked decoding, rebuilding.
#include <gtest/gtest.h>

#include <string>

#include "server/http_wire.h"

namespace acg2vec::server {
namespace {

server::parse_state parse(std::string_view text, server::request_head& head, server::refusal& why, server::limits lim = {}) {
  return server::parse_head(text, lim, head, why);
}

TEST(WireHead, ParsesAPlainRequest) {
  server::request_head h;
  server::refusal why;
  ASSERT_EQ(parse("GET /v1/items/a%2Fb?x=1 HTTP/1.1\r\nHost: x\r\nX-Thing:  v \r\n\r\nrest", h, why),
            server::parse_state::complete);
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.target, "/v1/items/a%2Fb?x=1");
  EXPECT_EQ(h.path(), "/v1/items/a/b");
  EXPECT_EQ(h.get("x-thing"), "v");
  EXPECT_EQ(h.head_bytes, std::string_view("GET /v1/items/a%2Fb?x=1 HTTP/1.1\r\nHost: x\r\nX-Thing:  v \r\n\r\n").size());
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.has_body());
}

TEST(WireHead, BareLineFeedsAreAccepted) {
  server::request_head h;
  server::refusal why;
  ASSERT_EQ(parse("GET / HTTP/1.0\nConnection: keep-alive\n\n", h, why), server::parse_state::complete);
  EXPECT_EQ(h.minor_version, 0);
  EXPECT_TRUE(h.keep_alive);
}

TEST(WireHead, IncompleteUntilTheEmptyLine) {
  server::request_head h;
  server::refusal why;
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: x\r\n", h, why), server::parse_state::incomplete);
}

TEST(WireHead, OversizedHeadIsRefusedBeforeItEnds) {
  server::limits lim;
  lim.max_header_bytes = 1024;
  server::request_head h;
  server::refusal why;
  std::string text = "GET / HTTP/1.1\r\nX: " + std::string(2000, 'a');
  ASSERT_EQ(parse(text, h, why, lim), server::parse_state::refused);
  EXPECT_EQ(why.status, 431);
}

TEST(WireHead, LongRequestLineIs414) {
  server::limits lim;
  lim.max_request_line = 100;
  server::request_head h;
  server::refusal why;
  ASSERT_EQ(parse("GET /" + std::string(200, 'a'), h, why, lim), server::parse_state::refused);
  EXPECT_EQ(why.status, 414);
}

TEST(WireHead, TooManyFieldsIs431) {
  server::limits lim;
  lim.max_headers = 10;
  std::string text = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 11; ++i) text += "X-" + std::to_string(i) + ": v\r\n";
  text += "\r\n";
  server::request_head h;
  server::refusal why;
  ASSERT_EQ(parse(text, h, why, lim), server::parse_state::refused);
  EXPECT_EQ(why.status, 431);
}

TEST(WireHead, NulInAFieldValueIsRefused) {
  server::request_head h;
  server::refusal why;
  std::string text = "GET / HTTP/1.1\r\nX-API-Key: key";
  text.push_back('\0');
  text += "junk\r\n\r\n";
  ASSERT_EQ(parse(text, h, why), server::parse_state::refused);
  EXPECT_EQ(why.status, 400);
}

TEST(WireHead, ContentLengthMustBeADecimal) {
  for (const char* v : {"-1", "1e3", "0x10", "", "99999999999999999999", "1 2"}) {
    server::request_head h;
    server::refusal why;
    std::string text = std::string("POST / HTTP/1.1\r\nContent-Length: ") + v + "\r\n\r\n";
    EXPECT_EQ(parse(text, h, why), server::parse_state::refused) << v;
    EXPECT_EQ(why.status, 400) << v;
  }
}

TEST(WireHead, BodyOverTheLimitIs413FromTheHead) {
  server::limits lim;
  lim.max_body_bytes = 1000;
  server::request_head h;
  server::refusal why;
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n", h, why, lim),
            server::parse_state::refused);
  EXPECT_EQ(why.status, 413);
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", h, why, lim), server::parse_state::refused);
  EXPECT_EQ(why.status, 413);
}

TEST(WireHead, TwoFramingsAreRefused) {
  server::request_head h;
  server::refusal why;
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", h, why),
            server::parse_state::refused);
  EXPECT_EQ(why.status, 400);
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", h, why), server::parse_state::refused);
  EXPECT_EQ(why.status, 501);
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", h, why), server::parse_state::refused);
}

TEST(WireHead, MalformedLinesAreRefused) {
  for (const char* text : {"GET\r\n\r\n", "GET  / HTTP/1.1\r\n\r\n", "GET / HTTP/2.0\r\n\r\n", "G@T / HTTP/1.1\r\n\r\n",
                           "GET noslash HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\n folded\r\n\r\n",
                           "GET / HTTP/1.1\r\nNoColon\r\n\r\n", "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n"}) {
    server::request_head h;
    server::refusal why;
    EXPECT_EQ(parse(text, h, why), server::parse_state::refused) << text;
    EXPECT_GE(why.status, 400) << text;
  }
}

TEST(WireHead, ScanFromFindsATerminatorSplitAcrossReads) {
  std::string buf = "GET / HTTP/1.1\r\nHost: x\r";
  server::request_head h;
  server::refusal why;
  std::size_t scan = 0;
  ASSERT_EQ(server::parse_head(buf, {}, h, why, &scan), server::parse_state::incomplete);
  buf += "\n\r";
  ASSERT_EQ(server::parse_head(buf, {}, h, why, &scan), server::parse_state::incomplete);
  buf += "\n";
  ASSERT_EQ(server::parse_head(buf, {}, h, why, &scan), server::parse_state::complete);
  EXPECT_EQ(h.get("Host"), "x");
}

TEST(WireChunked, DecodesPiecewise) {
  server::chunked_decoder dec(server::limits{});
  std::string body;
  std::string wire = "4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  std::size_t used = 0;
  for (std::size_t i = 0; i < wire.size() && dec.state() == server::parse_state::incomplete; ++i) {
    used += dec.feed(std::string_view(wire).substr(i, 1), body);
  }
  ASSERT_EQ(dec.state(), server::parse_state::complete);
  EXPECT_EQ(body, "Wikipedia");
  EXPECT_EQ(wire.substr(used), "NEXT");  // the next pipelined request is left alone
}

TEST(WireChunked, RefusesABodyOverTheLimitAsSoonAsAChunkAnnouncesIt) {
  server::limits lim;
  lim.max_body_bytes = 100;
  server::chunked_decoder dec(lim);
  std::string body;
  dec.feed("40\r\n" + std::string(64, 'a') + "\r\n40\r\n", body);
  ASSERT_EQ(dec.state(), server::parse_state::refused);
  EXPECT_EQ(dec.why().status, 413);
  EXPECT_LE(body.size(), 100u);
}

TEST(WireChunked, RefusesMalformedSizesAndData) {
  for (const char* wire : {"zz\r\n", "\r\n", "4\r\nWikiXX\r\n", "ffffffffffffffffff\r\n"}) {
    server::chunked_decoder dec(server::limits{});
    std::string body;
    dec.feed(wire, body);
    EXPECT_EQ(dec.state(), server::parse_state::refused) << wire;
  }
}

TEST(WireRebuild, DropsFramingAndMultiRanges) {
  server::request_head h;
  server::refusal why;
  ASSERT_EQ(parse("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nRange: bytes=0-,0-\r\n"
                  "X-Keep: 1\r\n\r\n",
                  h, why),
            server::parse_state::complete);
  auto raw = server::rebuild_request(h, "abc");
  EXPECT_EQ(raw, "POST /x HTTP/1.1\r\nX-Keep: 1\r\nContent-Length: 3\r\n\r\nabc");
  ASSERT_EQ(parse("GET /f HTTP/1.1\r\nRange: bytes=0-9\r\n\r\n", h, why), server::parse_state::complete);
  EXPECT_NE(server::rebuild_request(h, "").find("Range: bytes=0-9"), std::string::npos);
}

TEST(WireRefusal, IsJsonAndCloses) {
  auto text = server::refusal_response({413, "too big", "Retry-After: 1\r\n"}, "abc-1");
  EXPECT_EQ(text.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u);
  EXPECT_NE(text.find("Connection: close\r\n"), std::string::npos);
  EXPECT_NE(text.find("Retry-After: 1\r\n"), std::string::npos);
  EXPECT_NE(text.find(R"({"error":"too_large","message":"too big"})"), std::string::npos);
}

}  // namespace
}  // namespace acg2vec::server
