#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <vector>

#include "gan/errors.h"
#include "gan/platform.h"
#include "gan/self_check.h"

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc + 1);  // as given: InitGoogleTest takes its --gtest_* flags out of argv
  ::testing::InitGoogleTest(&argc, argv);
  spdlog::set_level(spdlog::level::warn);  // keep test output readable
  gan::keep_freed_memory();  // the CPU allocator the programs run with
  // As the programs do: on a machine whose oneDNN computes wrong convolutions this restarts the tests with the remedy.
  try {
    if (const std::string note = gan::ensure_sound_cpu_maths(args.data()); !note.empty())
      std::fprintf(stderr, "gan-tests: warning: %s\n", note.c_str());
  } catch (const gan::UserError& e) {  // nothing right: one line and exit code 9, as the programs do
    std::fprintf(stderr, "gan-tests: error: %s\n", e.what());
    return e.code();
  }
  return RUN_ALL_TESTS();
}
