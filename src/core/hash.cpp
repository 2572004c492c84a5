#include "core/hash.h"

#include "core/error.h"

#include <openssl/evp.h>

#include <fstream>
#include <memory>
#include <vector>

namespace acg2vec {

namespace {

using digest_context = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

digest_context start_sha256() {
  digest_context ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) fail(errc::internal, "SHA-256 failed to start");
  return ctx;
}

std::string finish(EVP_MD_CTX* ctx) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx, md, &n) != 1) fail(errc::internal, "SHA-256 failed");
  return to_hex({reinterpret_cast<const char*>(md), n});
}

}  // namespace

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  auto ctx = start_sha256();
  if (EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1) fail(errc::internal, "SHA-256 failed");
  return finish(ctx.get());
}

std::string sha256_file_hex(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(errc::not_found, "cannot read {}", file.string());
  auto ctx = start_sha256();
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0 && EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<std::size_t>(in.gcount())) != 1) {
      fail(errc::internal, "SHA-256 failed");
    }
  }
  if (in.bad()) fail(errc::internal, "cannot read {}", file.string());
  return finish(ctx.get());
}

}  // namespace acg2vec
