// acg2vec_fuzz_replay <target> <corpus files or dirs...> [--smoke-seconds N] [--seed S]
//
// Replays every corpus file through one fuzz target, then, for the smoke, feeds it simply mutated
// corpus items (bit flips, byte changes, truncation, insertion, duplication, splicing) until N
// seconds have passed. Built by the normal (gcc) build so CI catches regressions without clang.
// The input being run is written to ./fuzz-crash-<target>.bin before a mutated run, so a crash
// of the smoke leaves its input behind.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "targets.h"

namespace fs = std::filesystem;

namespace {

struct corpus_item {
  fs::path path;
  std::string bytes;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every folder or file named on the command line must exist and hold at least one input: a corpus
// path that moved or lost its files would otherwise replay nothing and pass.
bool collect(const fs::path& p, std::vector<corpus_item>& out) {
  const auto before = out.size();
  if (fs::is_directory(p)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(p)) {
      if (e.is_regular_file() && e.path().filename().string().front() != '.' && e.path().filename() != "README.md") {
        files.push_back(e.path());
      }
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) out.push_back({f, read_file(f)});
  } else if (fs::is_regular_file(p)) {
    out.push_back({p, read_file(p)});
  } else {
    std::cerr << "replay: " << p << " does not exist\n";
    return false;
  }
  if (out.size() == before) {
    std::cerr << "replay: " << p << " holds no corpus files\n";
    return false;
  }
  return true;
}

std::string mutate(const std::vector<corpus_item>& corpus, std::mt19937_64& rng) {
  auto pick = [&](std::size_t n) { return n == 0 ? std::size_t{0} : static_cast<std::size_t>(rng() % n); };
  std::string s = corpus.empty() ? std::string() : corpus[pick(corpus.size())].bytes;
  const int rounds = 1 + static_cast<int>(pick(4));
  for (int r = 0; r < rounds; ++r) {
    switch (pick(7)) {
      case 0:  // bit flip
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << pick(8));
        break;
      case 1:  // random byte, sometimes an interesting one
        if (!s.empty()) {
          static constexpr unsigned char special[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '"', '{', '[', '\n', '-'};
          s[pick(s.size())] = static_cast<char>(pick(2) ? special[pick(sizeof special)] : pick(256));
        }
        break;
      case 2:  // truncation
        s.resize(pick(s.size() + 1));
        break;
      case 3: {  // insertion of random bytes
        std::string ins(1 + pick(8), '\0');
        for (auto& c : ins) c = static_cast<char>(pick(256));
        s.insert(pick(s.size() + 1), ins);
        break;
      }
      case 4: {  // duplicate a chunk
        if (s.empty()) break;
        auto from = pick(s.size());
        auto len = 1 + pick(std::min<std::size_t>(64, s.size() - from));
        s.insert(pick(s.size() + 1), s.substr(from, len));
        break;
      }
      case 5: {  // splice with another corpus item
        if (corpus.empty()) break;
        const auto& other = corpus[pick(corpus.size())].bytes;
        auto cut = pick(s.size() + 1);
        s = s.substr(0, cut) + other.substr(std::min(other.size(), pick(other.size() + 1)));
        break;
      }
      default: {  // overwrite 4 bytes with a boundary integer (sizes, offsets, shapes)
        if (s.size() < 4) break;
        static constexpr std::uint32_t values[] = {0u, 1u, 0x7fffffffu, 0x80000000u, 0xffffffffu, 0xffffu, 0x10000u};
        auto v = values[pick(std::size(values))];
        auto at = pick(s.size() - 3);
        for (int b = 0; b < 4; ++b) s[at + b] = static_cast<char>((v >> (8 * b)) & 0xff);
        break;
      }
    }
  }
  return s;
}

int run(const acg2vec::fuzz::target& t, const std::string& bytes) {
  return t.entry(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: acg2vec_fuzz_replay <target> <corpus files or dirs...> [--smoke-seconds N] [--seed S]\n"
                 "targets:";
    for (const auto& t : acg2vec::fuzz::all_targets) std::cerr << ' ' << t.name;
    std::cerr << '\n';
    return 2;
  }
  const acg2vec::fuzz::target* target = nullptr;
  for (const auto& t : acg2vec::fuzz::all_targets) {
    if (t.name == argv[1]) target = &t;
  }
  if (!target) {
    std::cerr << "replay: unknown target '" << argv[1] << "'\n";
    return 2;
  }
  double smoke_seconds = 0;
  std::uint64_t seed = 1;
  std::vector<corpus_item> corpus;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--smoke-seconds" && i + 1 < argc) {
      smoke_seconds = std::atof(argv[++i]);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (!collect(a, corpus)) {
      return 1;
    }
  }
  if (corpus.empty()) {
    std::cerr << "replay: no corpus given\n";
    return 2;
  }

  const std::string crash_file = "fuzz-crash-" + std::string(target->name) + ".bin";
  std::size_t replayed = 0;
  for (const auto& item : corpus) {
    try {
      run(*target, item.bytes);
    } catch (const std::exception& e) {
      std::cerr << "replay: " << item.path << " raised an unexpected exception: " << e.what() << '\n';
      return 1;
    }
    ++replayed;
  }
  std::cout << "replay: " << target->name << ": " << replayed << " corpus files ok\n";

  if (smoke_seconds > 0) {
    std::mt19937_64 rng(seed);
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(smoke_seconds);
    std::size_t runs = 0;
    while (std::chrono::steady_clock::now() < end) {
      auto input = mutate(corpus, rng);
      {
        std::ofstream out(crash_file, std::ios::binary | std::ios::trunc);
        out.write(input.data(), static_cast<std::streamsize>(input.size()));
      }
      try {
        run(*target, input);
      } catch (const std::exception& e) {
        std::cerr << "replay: a mutated input (kept in " << crash_file << ") raised an unexpected exception: "
                  << e.what() << '\n';
        return 1;
      }
      ++runs;
    }
    std::error_code ec;
    fs::remove(crash_file, ec);
    std::cout << "replay: " << target->name << ": smoke " << runs << " mutated inputs in " << smoke_seconds
              << " s (seed " << seed << ") ok\n";
  }
  return 0;
}
