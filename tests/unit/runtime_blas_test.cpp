#include <gtest/gtest.h>

#include "runtime/blas.h"

namespace acg2vec::runtime {
namespace {

cpu_features cpu(std::string vendor, bool avx, bool avx2, bool fma, bool avx512) {
  cpu_features f;
  f.vendor = std::move(vendor);
  f.avx = avx;
  f.avx2 = avx2;
  f.fma = fma;
  f.avx512 = avx512;
  return f;
}

TEST(RuntimeBlas, CoreFollowsFeaturesNotModels) {
  EXPECT_EQ(openblas_core_for(cpu("intel", true, true, true, true)), "SkylakeX");
  EXPECT_EQ(openblas_core_for(cpu("amd", true, true, true, true)), "SkylakeX");  // Zen 4/5
  EXPECT_EQ(openblas_core_for(cpu("intel", true, true, true, false)), "Haswell");
  EXPECT_EQ(openblas_core_for(cpu("amd", true, true, true, false)), "Zen");
  EXPECT_EQ(openblas_core_for(cpu("other", true, true, true, false)), "Haswell");
  // AVX2 without FMA has no FMA GEMM kernel to offer.
  EXPECT_EQ(openblas_core_for(cpu("intel", true, true, false, false)), "Sandybridge");
  EXPECT_EQ(openblas_core_for(cpu("intel", false, false, false, false)), "");
}

TEST(RuntimeBlas, GenericCoresAreNamed) {
  for (const char* c : {"Haswell", "zen", "SkylakeX", "COOPERLAKE", "SapphireRapids"}) EXPECT_TRUE(is_vector_core(c)) << c;
  for (const char* c : {"Prescott", "Core2", "Nehalem", "Sandybridge", "Atom", "Barcelona", "", "Unknown"})
    EXPECT_FALSE(is_vector_core(c)) << c;
}

TEST(RuntimeBlas, ProcessReportsTheKernelInUse) {
  // The test binary links libtorch and through it the system BLAS.
  auto b = current_blas();
  auto line = describe_blas();
  EXPECT_EQ(line.rfind("BLAS: ", 0), 0U) << line;
  if (b.openblas) {
    EXPECT_FALSE(b.core.empty());
    EXPECT_NE(line.find("kernel " + b.core), std::string::npos) << line;
  }
}

}  // namespace
}  // namespace acg2vec::runtime
