// The start-up check of LibTorch's float32 maths against float64 (gan/self_check.h), and what the programs do when
// it fails: restart with oneDNN capped to AVX2, run without oneDNN, or stop with exit code 9.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>

#include "gan/config.h"
#include "gan/errors.h"
#include "gan/self_check.h"
#include "test_util.h"

namespace {

const std::string kConvInputGrad = "conv2d [1, 3, 4, 4] k3 s1 p1, input gradient";

// Sets (or unsets, for nullptr) an environment variable for the scope; restores the old value after.
struct ScopedEnv {
  std::string name;
  bool had = false;
  std::string old;
  ScopedEnv(const char* n, const char* value) : name(n) {
    if (const char* v = std::getenv(n)) had = true, old = v;
    if (value) setenv(n, value, 1);
    else unsetenv(n);
  }
  ~ScopedEnv() {
    if (had) setenv(name.c_str(), old.c_str(), 1);
    else unsetenv(name.c_str());
  }
};

// Turns oneDNN back on after a test that let the check turn it off.
struct OneDnnRestore {
  bool was = at::globalContext().userEnabledMkldnn();
  ~OneDnnRestore() { at::globalContext().setUserEnabledMkldnn(was); }
};

}  // namespace

TEST(SelfCheck, Float32MathsOfThisCpuAgreeWithFloat64) {
  const gan::MathsCheck r = gan::check_float32_maths(torch::kCPU);
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_TRUE(r.failure.empty());
  EXPECT_GT(r.worst, 0.0);   // float32 rounding is seen: the results were compared
  EXPECT_LT(r.worst, 1e-4);  // and it is all there is
}

TEST(SelfCheck, NamesTheFirstWrongResult) {
  std::vector<std::string> seen;
  const gan::MathsCheck r = gan::check_float32_maths(torch::kCPU, [&](const std::string& what, at::Tensor& t) {
    seen.push_back(what);
    if (what == kConvInputGrad) t = t + 0.5 * t.abs().max();
  });
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.failure.rfind(kConvInputGrad + ": relative error 0.5", 0), 0u) << r.failure;
  EXPECT_GE(r.worst, 0.49);
  // Every layer kind, forward and backward, in both memory formats.
  for (const std::string& name :
       {std::string("conv2d [2, 8, 8, 8] k4 s2 p1 channels_last, weight gradient"),
        std::string("conv_transpose2d [2, 16, 4, 4] k4 s2 p1, input gradient"),
        std::string("conv2d [2, 20, 8, 8] k3 s1 p1 channels_last, output"),
        std::string("linear [4, 64] -> 32, bias gradient"), std::string("batch_norm [4, 8, 4, 4] channels_last, output")})
    EXPECT_NE(std::find(seen.begin(), seen.end(), name), seen.end()) << name;
  EXPECT_EQ(seen.size(), 70u);  // 11 computations, 2-4 results each, the 4-D ones twice
}

TEST(SelfCheck, ToleratesRoundingButNotNonFiniteValues) {
  auto nudge = [](double share) {
    return gan::check_float32_maths(torch::kCPU, [share](const std::string& what, at::Tensor& t) {
      if (what == kConvInputGrad) t = t + share * t.abs().max();
    });
  };
  EXPECT_TRUE(nudge(1e-3).ok);  // ten times below the tolerance
  EXPECT_FALSE(nudge(2e-2).ok);
  const gan::MathsCheck r = gan::check_float32_maths(torch::kCPU, [](const std::string& what, at::Tensor& t) {
    if (what == kConvInputGrad) t = t.clone().fill_(std::nan(""));
  });
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.failure.find("non-finite values"), std::string::npos) << r.failure;
}

TEST(SelfCheck, LeavesTheRandomStreamsAlone) {
  torch::manual_seed(7);
  const at::Tensor a = torch::randn({8});
  torch::manual_seed(7);
  gan::check_float32_maths(torch::kCPU);
  const at::Tensor b = torch::randn({8});
  EXPECT_TRUE(torch::equal(a, b));
}

// The first cap below this CPU's instruction set ("" for a CPU without AVX).
std::string first_cap() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") ? "AVX2" : __builtin_cpu_supports("avx2") ? "AVX"
         : __builtin_cpu_supports("avx")   ? "SSE41"
                                           : "";
}

// What a restart would have been started with.
struct RestartSpy {
  int calls = 0;
  std::string isa, reason;
  std::function<void()> fn() {
    return [this] {
      ++calls;
      isa = std::getenv("ONEDNN_MAX_CPU_ISA") ? std::getenv("ONEDNN_MAX_CPU_ISA") : "";
      reason = std::getenv("GAN_ONEDNN_CAPPED_FROM") ? std::getenv("GAN_ONEDNN_CAPPED_FROM") : "";
    };
  }
};

// oneDNN wrong, LibTorch's own kernels right: a restart with oneDNN capped below this CPU's instruction set is asked
// for (here it "fails", as an execv could), then the process goes on without oneDNN and says so.
TEST(SelfCheck, WrongOneDnnRestartsCappedThenRunsWithoutIt) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "this LibTorch has no oneDNN";
  OneDnnRestore restore;
  ScopedEnv off("GAN_SELF_CHECK", nullptr), isa("ONEDNN_MAX_CPU_ISA", nullptr), dnnl("DNNL_MAX_CPU_ISA", nullptr),
      capped("GAN_ONEDNN_CAPPED_FROM", nullptr);
  RestartSpy spy;
  const std::string note = gan::ensure_sound_cpu_maths(
      nullptr,
      [](const std::string& what, at::Tensor& t) {
        if (what == kConvInputGrad && at::globalContext().userEnabledMkldnn()) t = t * 4.06;
      },
      spy.fn());
  EXPECT_EQ(spy.calls, first_cap().empty() ? 0 : 1);
  EXPECT_EQ(spy.isa, first_cap());
  if (spy.calls) EXPECT_EQ(spy.reason, kConvInputGrad + ": relative error 3.06");
  EXPECT_EQ(std::getenv("ONEDNN_MAX_CPU_ISA"), nullptr);  // the failed restart left no trace
  EXPECT_EQ(std::getenv("GAN_ONEDNN_CAPPED_FROM"), nullptr);
  EXPECT_FALSE(at::globalContext().userEnabledMkldnn());
  EXPECT_NE(note.find("oneDNN v"), std::string::npos) << note;
  EXPECT_NE(note.find(kConvInputGrad + ": relative error 3.06"), std::string::npos) << note;
  EXPECT_NE(note.find("using LibTorch's own CPU kernels instead"), std::string::npos) << note;
  EXPECT_EQ(gan::cpu_maths_note(), note);
}

// A restarted process that is still wrong goes one step down the ladder, carrying what each start saw; at the bottom
// it turns oneDNN off.
TEST(SelfCheck, StillWrongWithTheCapGoesDownTheLadder) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "this LibTorch has no oneDNN";
  OneDnnRestore restore;
  auto wrong = [](const std::string& what, at::Tensor& t) {
    if (what == kConvInputGrad && at::globalContext().userEnabledMkldnn()) t = -t;
  };
  {
    ScopedEnv off("GAN_SELF_CHECK", nullptr), isa("ONEDNN_MAX_CPU_ISA", "AVX2"),
        capped("GAN_ONEDNN_CAPPED_FROM", "first start's failure");
    RestartSpy spy;
    gan::ensure_sound_cpu_maths(nullptr, wrong, spy.fn());
    EXPECT_EQ(spy.calls, 1);
    EXPECT_EQ(spy.isa, "AVX");
    EXPECT_EQ(spy.reason.rfind("first start's failure; with ONEDNN_MAX_CPU_ISA=AVX2: " + kConvInputGrad, 0), 0u)
        << spy.reason;
    EXPECT_STREQ(std::getenv("ONEDNN_MAX_CPU_ISA"), "AVX2");  // as it was
    EXPECT_STREQ(std::getenv("GAN_ONEDNN_CAPPED_FROM"), "first start's failure");
  }
  at::globalContext().setUserEnabledMkldnn(true);
  {
    ScopedEnv off("GAN_SELF_CHECK", nullptr), isa("ONEDNN_MAX_CPU_ISA", "SSE41"), capped("GAN_ONEDNN_CAPPED_FROM", "a; b");
    RestartSpy spy;
    const std::string note = gan::ensure_sound_cpu_maths(nullptr, wrong, spy.fn());
    EXPECT_EQ(spy.calls, 0);  // the bottom of the ladder
    EXPECT_NE(note.find("(a; b; with ONEDNN_MAX_CPU_ISA=SSE41: " + kConvInputGrad), std::string::npos) << note;
    EXPECT_NE(note.find("using LibTorch's own CPU kernels instead"), std::string::npos) << note;
  }
}

// A cap the user set is left alone: no restart, oneDNN is turned off instead.
TEST(SelfCheck, UsersOwnCapIsNotOverridden) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "this LibTorch has no oneDNN";
  OneDnnRestore restore;
  ScopedEnv off("GAN_SELF_CHECK", nullptr), isa("ONEDNN_MAX_CPU_ISA", "AVX2"), capped("GAN_ONEDNN_CAPPED_FROM", nullptr);
  RestartSpy spy;
  const std::string note = gan::ensure_sound_cpu_maths(
      nullptr,
      [](const std::string& what, at::Tensor& t) {
        if (what == kConvInputGrad && at::globalContext().userEnabledMkldnn()) t = -t;
      },
      spy.fn());
  EXPECT_EQ(spy.calls, 0);
  EXPECT_NE(note.find("with ONEDNN_MAX_CPU_ISA=AVX2: " + kConvInputGrad), std::string::npos) << note;
  EXPECT_FALSE(at::globalContext().userEnabledMkldnn());
}

// The restarted process: right with the cap, and it says what the earlier starts saw.
TEST(SelfCheck, RestartedProcessSaysWhatTheCapMended) {
  ScopedEnv off("GAN_SELF_CHECK", nullptr), isa("ONEDNN_MAX_CPU_ISA", "AVX"),
      capped("GAN_ONEDNN_CAPPED_FROM", (kConvInputGrad + ": relative error 3.06").c_str());
  const std::string note = gan::ensure_sound_cpu_maths(nullptr, {}, [] { FAIL() << "no second restart"; });
  EXPECT_NE(note.find("restarted with ONEDNN_MAX_CPU_ISA=AVX,"), std::string::npos) << note;
  EXPECT_NE(note.find(kConvInputGrad + ": relative error 3.06"), std::string::npos) << note;
}

TEST(SelfCheck, NothingRightEndsWithExitCode9) {
  OneDnnRestore restore;
  ScopedEnv off("GAN_SELF_CHECK", nullptr), isa("ONEDNN_MAX_CPU_ISA", nullptr), capped("GAN_ONEDNN_CAPPED_FROM", nullptr);
  testutil::expect_user_error(
      [] {
        gan::ensure_sound_cpu_maths(
            nullptr, [](const std::string& what, at::Tensor& t) { if (what == kConvInputGrad) t = -t; }, [] {});
      },
      gan::kExitMaths,
      {"float32 maths on this CPU fails the start-up check against float64", kConvInputGrad + ": relative error 2",
       "LibTorch ", "GAN_SELF_CHECK=0"});
  EXPECT_EQ(gan::kExitMaths, 9);
}

TEST(SelfCheck, GanSelfCheckZeroSkipsIt) {
  ScopedEnv off("GAN_SELF_CHECK", "0");
  int calls = 0;
  EXPECT_EQ(gan::ensure_sound_cpu_maths(nullptr, [&](const std::string&, at::Tensor&) { ++calls; }), "");
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(gan::ensure_sound_device_maths(torch::kCPU), "");  // the CPU is ensure_sound_cpu_maths's
}

TEST(SelfCheck, LibrariesAreNamed) {
  const std::string s = gan::maths_libraries();
  EXPECT_EQ(s.rfind("LibTorch " + std::to_string(TORCH_VERSION_MAJOR) + ".", 0), 0u) << s;
  if (at::hasMKLDNN()) EXPECT_NE(s.find(", oneDNN v"), std::string::npos) << s;
}

// gan-train repeats what the check found in the run's log: here the note of a process restarted with the cap.
TEST(SelfCheck, TrainLogCarriesTheNote) {
  testutil::TempDir dir;
  gan::Config c = testutil::tiny_train_config(dir, testutil::write_halves_dataset(dir, 32, 16), 1);
  std::ofstream(dir / "tiny.cfg") << gan::to_yaml(c);
  std::string out;
  const std::string cmd = "ONEDNN_MAX_CPU_ISA=AVX2 GAN_ONEDNN_CAPPED_FROM='" + kConvInputGrad + ": relative error 3.06' " + GAN_TRAIN_EXE +
                          " --config " + (dir / "tiny.cfg") + " --name noted";
  ASSERT_EQ(testutil::run(cmd, &out), 0) << out;
  const std::string log = testutil::slurp(dir / "runs/noted/train.log");
  // (On a machine whose oneDNN is wrong with AVX2, the run goes further down the ladder: still restarted.)
  for (const std::string& text : {log, out}) {
    EXPECT_NE(text.find("(" + kConvInputGrad + ": relative error 3.06"), std::string::npos) << text;
    EXPECT_NE(text.find("restarted with ONEDNN_MAX_CPU_ISA="), std::string::npos) << text;
  }
  std::size_t blas_lines = 0;  // a line logged before the check would come twice: from each start
  for (auto at = out.find("BLAS: "); at != std::string::npos; at = out.find("BLAS: ", at + 1)) ++blas_lines;
  EXPECT_EQ(blas_lines, 1u) << out;
  ASSERT_EQ(testutil::run("GAN_SELF_CHECK=0 " + cmd.substr(0, cmd.size() - 5) + "quiet", &out), 0) << out;
  EXPECT_EQ(testutil::slurp(dir / "runs/quiet/train.log").find("ONEDNN_MAX_CPU_ISA"), std::string::npos);
}
