// models/blas_core.h: when logp asks OpenBLAS for other kernels, and when it leaves its choice.
#include "models/blas_core.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>

namespace logp {
namespace {

constexpr CpuVectorSupport kSse{false, false};
constexpr CpuVectorSupport kAvx2{true, false};
constexpr CpuVectorSupport kAvx512{true, true};

TEST(BlasCoreTest, OldCoresAreUpgradedToWhatTheCpuRuns) {
  for (const char* old : {"Prescott", "Core2", "Nehalem", "Sandybridge", "Bulldozer"}) {
    EXPECT_EQ(BetterBlasCore(old, kAvx512), "SkylakeX") << old;
    EXPECT_EQ(BetterBlasCore(old, kAvx2), "Haswell") << old;
    EXPECT_EQ(BetterBlasCore(old, kSse), std::nullopt) << old;
  }
}

TEST(BlasCoreTest, ModernOrUnknownCoresAreLeftAlone) {
  for (const char* good : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", ""}) {
    EXPECT_EQ(BetterBlasCore(good, kAvx512), std::nullopt) << good;
    EXPECT_EQ(BetterBlasCore(good, kAvx2), std::nullopt) << good;
  }
}

TEST(BlasCoreTest, TheCpuReportIsConsistent) {
  CpuVectorSupport cpu = DetectCpuVectorSupport();
  if (cpu.avx512) EXPECT_TRUE(cpu.avx2_fma);  // every AVX-512 CPU has AVX2 and FMA
}

TEST(BlasCoreTest, NamesOpenBlasCoreWhenOpenBlasIsLoaded) {
  // A matrix product makes sure the BLAS that LibTorch calls is loaded.
  torch::Tensor a = torch::rand({64, 64});
  EXPECT_EQ(torch::mm(a, torch::eye(64)).sub(a).abs().max().item<float>(), 0.0f);
  bool openblas = dlsym(RTLD_DEFAULT, "openblas_get_corename") != nullptr;
  EXPECT_EQ(!BlasCoreName().empty(), openblas);
  if (openblas) std::cout << "OpenBLAS core: " << BlasCoreName() << "\n";
}

TEST(BlasCoreTest, AUsersChoiceIsKept) {
  // With OPENBLAS_CORETYPE or LOGP_BLAS_CORE=keep set, UseBestBlasCore never executes the
  // process again (it would replace this test binary).
  char arg0[] = "blas_core_test";
  char* argv[] = {arg0, nullptr};
  setenv("OPENBLAS_CORETYPE", "Prescott", 1);
  UseBestBlasCore(argv);
  unsetenv("OPENBLAS_CORETYPE");
  setenv("LOGP_BLAS_CORE", "keep", 1);
  UseBestBlasCore(argv);
  unsetenv("LOGP_BLAS_CORE");
  EXPECT_EQ(std::getenv("LOGP_BLAS_REEXEC"), nullptr);
}

}  // namespace
}  // namespace logp
