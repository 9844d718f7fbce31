#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "gan/platform.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  spdlog::set_level(spdlog::level::warn);  // keep test output readable
  gan::keep_freed_memory();  // the CPU allocator the programs run with
  return RUN_ALL_TESTS();
}
