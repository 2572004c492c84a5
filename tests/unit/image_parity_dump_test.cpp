// Not a test by itself: the driver half of tests/parity/test_preprocess.py. With
// ACG2VEC_IMAGE_PARITY_JOBS pointing at a job file it decodes each image, runs preprocess() with the
// job's manifest "input" object and writes the decoded pixels and the output tensor as raw files for
// the Python side to compare against torch / PIL / numpy. DISABLED_ so that ctest lists it as disabled
// rather than as a perpetual skip; the driver runs it with --gtest_also_run_disabled_tests, and run
// without the variable it fails.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "image/decode.h"
#include "image/preprocess.h"
#include "image/signature.h"

namespace acg2vec::image {
namespace {

void write_raw(const std::filesystem::path& path, const void* data, std::size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  ASSERT_TRUE(out.good()) << path;
}

TEST(ImageParityDump, DISABLED_WriteOutputs) {
  const char* jobs_path = std::getenv("ACG2VEC_IMAGE_PARITY_JOBS");
  ASSERT_NE(jobs_path, nullptr) << "driven by tests/parity/test_preprocess.py (ACG2VEC_IMAGE_PARITY_JOBS)";
  std::ifstream in(jobs_path);
  ASSERT_TRUE(in.good()) << jobs_path;
  const nlohmann::json jobs = nlohmann::json::parse(in);
  const std::filesystem::path out_dir = jobs.at("out_dir").get<std::string>();
  nlohmann::json results = nlohmann::json::object();
  for (const auto& job : jobs.at("jobs")) {
    const std::string name = job.at("name").get<std::string>();
    SCOPED_TRACE(name);
    const image_rgb8 img = decode_image_file(job.at("image").get<std::string>());
    nlohmann::json r;
    r["decoded"] = {img.height, img.width, 3};
    write_raw(out_dir / (name + ".rgb"), img.pixels.data(), img.pixels.size());
    if (job.contains("input")) {
      const float_image t = preprocess(img, parse_preprocess_spec(job.at("input")));
      r["shape"] = t.nchw ? nlohmann::json{t.batch, t.channels, t.height, t.width}
                          : nlohmann::json{t.batch, t.height, t.width, t.channels};
      write_raw(out_dir / (name + ".f32"), t.data.data(), t.data.size() * sizeof(float));
    }
    if (job.value("signature", false)) {
      const auto sig = perceptual_signature(img);
      write_raw(out_dir / (name + ".sig"), sig.data(), sig.size() * sizeof(float));
    }
    results[name] = r;
  }
  std::ofstream(out_dir / "results.json") << results.dump(1);
}

}  // namespace
}  // namespace acg2vec::image
