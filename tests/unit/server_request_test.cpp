// The request path in-process (http_server::process_raw) and the request-reading helpers of
// server/request_parsing.h. Inputs here were found by fuzzing (fuzz/regressions/http_parse).
#include <gtest/gtest.h>

#include "server/http_server.h"
#include "server/request_parsing.h"

namespace acg2vec {

using json = nlohmann::json;
namespace {

std::string body_of(const std::string& response) {
  auto at = response.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : response.substr(at + 4);
}

TEST(ServerRequest, NotFoundPathWithInvalidUtf8IsAJsonAnswer) {
  server::http_server server(server::server_options{});
  // "%FF%FE" decodes to bytes that are not UTF-8; the 404 body used to throw while being written.
  auto response = server.process_raw("GET /%FF%FE HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(response.rfind("HTTP/1.1 404", 0), 0u) << response;
  auto body = json::parse(body_of(response));
  EXPECT_NE(body.at("message").get<std::string>().find("no route"), std::string::npos);
}

TEST(ServerRequest, ParamsFromQueryAndMultipart) {
  server::http_server server(server::server_options{});
  server.add("POST", "/p", "p", [](const server::http_request& req, server::http_response& res) {
    server::reply(res, json{{"k", server::int_param(req, "k", 1, 1, 9)}, {"t", server::find_param(req, "t").value_or("")},
                    {"f", server::require_file(req, {"image", "file"}, 100).size()}});
  }, server::route_access::read);
  std::string part = "--b\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nhello\r\n"
                     "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc\r\n--b--\r\n";
  auto response = server.process_raw("POST /p?k=7 HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                                     "Content-Length: " + std::to_string(part.size()) + "\r\n\r\n" + part);
  ASSERT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << response;
  auto data = json::parse(body_of(response)).at("data");
  EXPECT_EQ(data.at("k"), 7);
  EXPECT_EQ(data.at("t"), "hello");
  EXPECT_EQ(data.at("f"), 3);

  auto bad = server.process_raw("POST /p?k=70 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(bad.rfind("HTTP/1.1 400", 0), 0u) << bad;
}

TEST(ServerRequest, TfPredictBodyForms) {
  auto row = server::parse_tf_predict_body(json::parse(R"({"instances": [1, 2]})"));
  EXPECT_TRUE(row.row);
  EXPECT_EQ(row.items.size(), 2u);
  auto columnar = server::parse_tf_predict_body(json::parse(R"({"inputs": {"b64_input_bytes": [{"b64": "YQ=="}]}})"));
  EXPECT_FALSE(columnar.row);
  ASSERT_EQ(columnar.items.size(), 1u);
  EXPECT_EQ(server::tf_instance_image_bytes(columnar.items[0]), "a");
  EXPECT_THROW(server::parse_tf_predict_body(json::parse(R"({"instances": []})")), error);
  EXPECT_THROW(server::parse_tf_predict_body(json::parse("[1]")), error);
  EXPECT_THROW(server::tf_instance_image_bytes(json::parse(R"({"a": 1, "b": 2})")), error);
}

}  // namespace
}  // namespace acg2vec

namespace acg2vec {
namespace {

TEST(ServerRequest, JsonNumberOutOfRangeIsBadParameter) {
  server::http_request req;
  req.body = R"({"instances": [1e999]})";
  try {
    server::parse_json_body(req);
    FAIL() << "expected a bad_parameter error";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::bad_parameter);
  }
}

}  // namespace
}  // namespace acg2vec
