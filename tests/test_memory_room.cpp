#include "gan/memory_room.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "gan/cli.h"
#include "gan/cpu_allocator.h"
#include "gan/errors.h"

using namespace gan;
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

// A fake /proc and /sys/fs/cgroup under a temporary folder.
class FakeMachine : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("gan-memroom-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "proc" / "self");
    fs::create_directories(root_ / "cgroup");
  }
  void TearDown() override { fs::remove_all(root_); }

  void write(const std::string& rel, const std::string& text) {
    const fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  void meminfo(std::size_t available_mib, std::size_t swap_free_mib) {
    write("proc/meminfo", "MemTotal:       24000000 kB\nMemFree:          100000 kB\nMemAvailable:   " +
                              std::to_string(available_mib * 1024) + " kB\nSwapTotal: 0 kB\nSwapFree:       " +
                              std::to_string(swap_free_mib * 1024) + " kB\n");
  }
  MemoryRoom room() { return memory_room((root_ / "proc").string(), (root_ / "cgroup").string()); }

  fs::path root_;
};

std::string n(std::size_t mib) { return std::to_string(mib * kMiB) + "\n"; }

}  // namespace

TEST_F(FakeMachine, WithoutCgroupLimitsTheMachinesAvailableMemoryAndFreeSwap) {
  meminfo(5000, 1000);
  write("proc/self/cgroup", "0::/\n");
  write("cgroup/cgroup.controllers", "cpu memory\n");  // pure v2, the root has no memory.max
  const MemoryRoom r = room();
  EXPECT_EQ(r.bytes, 6000 * kMiB);
  EXPECT_EQ(r.bound, "the machine's available memory");
}

TEST_F(FakeMachine, NothingReadableIsUnknown) {
  EXPECT_EQ(room().bytes, kRoomUnknown);
}

TEST_F(FakeMachine, ContainerLimitCgroupV2CountsDroppableFilePagesAsRoom) {
  meminfo(20000, 0);
  write("proc/self/cgroup", "0::/\n");  // docker's own cgroup namespace: the mount's root is the container
  write("cgroup/memory.max", n(1024));
  write("cgroup/memory.current", n(600));
  write("cgroup/memory.stat", "anon 400000000\nfile 180000000\nactive_file " + std::to_string(100 * kMiB) +
                                  "\ninactive_file " + std::to_string(50 * kMiB) + "\nshmem 0\n");
  write("cgroup/memory.swap.max", "0\n");
  const MemoryRoom r = room();
  EXPECT_EQ(r.bytes, (1024 - (600 - 150)) * kMiB);
  EXPECT_EQ(r.bound, "the memory limit of cgroup / (memory.max 1024 MiB)");
}

TEST_F(FakeMachine, AnAncestorsLimitCountsAndFreeSwapWithinTheCgroupsSwapLimit) {
  meminfo(20000, 4000);
  write("proc/self/cgroup", "0::/slice/job\n");
  write("cgroup/slice/memory.max", n(2048));
  write("cgroup/slice/memory.current", n(1900));
  write("cgroup/slice/memory.swap.max", n(300));
  write("cgroup/slice/memory.swap.current", n(100));
  write("cgroup/slice/job/memory.max", "max\n");
  write("cgroup/slice/job/memory.current", n(1800));
  const MemoryRoom r = room();
  EXPECT_EQ(r.bytes, (2048 - 1900 + 200) * kMiB);  // no memory.stat: nothing counted droppable
  EXPECT_EQ(r.bound, "the memory limit of cgroup /slice (memory.max 2048 MiB)");
  // A tighter limit lower down wins.
  write("cgroup/slice/job/memory.max", n(1850));
  EXPECT_EQ(room().bytes, (1850 - 1800 + 200) * kMiB);  // the ancestor's swap limit still holds
  EXPECT_EQ(room().bound, "the memory limit of cgroup /slice/job (memory.max 1850 MiB)");
}

TEST_F(FakeMachine, CgroupV1MemoryControllerOnAHybridMachine) {
  meminfo(20000, 0);
  write("proc/self/cgroup", "9:name=systemd:/\n4:cpu,memory:/jobs/42\n1:cpu:/\n0::/\n");
  fs::create_directories(root_ / "cgroup" / "unified");  // v2 mounted there, without the memory controller
  write("cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");  // v1's "unlimited"
  write("cgroup/memory/memory.usage_in_bytes", n(9000));
  write("cgroup/memory/jobs/42/memory.limit_in_bytes", n(3000));
  write("cgroup/memory/jobs/42/memory.usage_in_bytes", n(2900));
  write("cgroup/memory/jobs/42/memory.stat",
        "cache 1\nactive_file 5\ntotal_active_file " + std::to_string(40 * kMiB) + "\ntotal_inactive_file " +
            std::to_string(10 * kMiB) + "\n");
  const MemoryRoom r = room();
  EXPECT_EQ(r.bytes, (3000 - 2900 + 50) * kMiB);
  EXPECT_EQ(r.bound, "the memory limit of cgroup /jobs/42 (memory.limit_in_bytes 3000 MiB)");
}

TEST_F(FakeMachine, TheMachineBoundsAGenerousContainer) {
  meminfo(700, 0);
  write("proc/self/cgroup", "0::/\n");
  write("cgroup/memory.max", n(8192));
  write("cgroup/memory.current", n(100));
  const MemoryRoom r = room();
  EXPECT_EQ(r.bytes, 700 * kMiB);
  EXPECT_EQ(r.bound, "the machine's available memory");
}

TEST(MemoryRoom, ReadsThisMachine) {
  const MemoryRoom r = memory_room();
  ASSERT_NE(r.bytes, kRoomUnknown) << "no /proc/meminfo?";
  EXPECT_GT(r.bytes, 64 * kMiB);
  EXPECT_FALSE(r.bound.empty());
}

namespace {

MemoryRoom tight_room() { return {128 * kMiB, "the test's limit"}; }
MemoryRoom tiny_room() { return {16 * kMiB, "the test's limit"}; }

class RoomLimitedAllocator : public ::testing::Test {
 protected:
  void SetUp() override {
    install_caching_cpu_allocator();
    release_cached_cpu_blocks();
  }
  void TearDown() override { cpu_allocator_room_probe(nullptr); }
};

}  // namespace

TEST_F(RoomLimitedAllocator, ATensorBeyondTheRoomIsOutOfMemoryNotTheOomKiller) {
  cpu_allocator_room_probe(&tight_room);
  const std::size_t live_before = cpu_allocator_stats().live_bytes;
  testing::internal::CaptureStderr();
  const int code = guarded("gan-test", [] {
    at::Tensor t = torch::ones({200 * static_cast<std::int64_t>(kMiB)}, torch::kUInt8);
    return 0;
  });
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, kExitMemory);
  EXPECT_EQ(err.find("gan-test: error: out of memory: the CPU allocator needs 200 MiB of new memory for a tensor of "
                     "200 MiB, but the test's limit leaves 128 MiB, of which it keeps 64 MiB for the rest of the "
                     "process"),
            0u)
      << err;
  EXPECT_NE(err.find("lower the batch size"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(cpu_allocator_stats().live_bytes, live_before);
  // Tensors inside the room (and the reserve) are still served.
  at::Tensor small = torch::full({16 * static_cast<std::int64_t>(kMiB)}, 3, torch::kUInt8);
  EXPECT_TRUE(small.eq(3).all().item<bool>());
}

TEST_F(RoomLimitedAllocator, KeptPagesServeWhenTheRoomIsShort) {
  const std::int64_t mib = static_cast<std::int64_t>(kMiB);
  at::Tensor a = torch::full({100 * mib}, 1, torch::kUInt8);
  a.reset();  // 100 MiB kept
  // With room, a 60 MiB tensor within the slack gets fresh pages of its own size...
  auto before = cpu_allocator_stats();
  at::Tensor b = torch::full({60 * mib}, 2, torch::kUInt8);
  EXPECT_EQ(cpu_allocator_stats().fresh_bytes, before.fresh_bytes + 60 * kMiB);
  b.reset();
  release_cached_cpu_blocks();
  a = torch::full({100 * mib}, 1, torch::kUInt8);
  a.reset();
  // ...and with too little room it takes the kept pages instead (moved: no new memory).
  cpu_allocator_room_probe(&tiny_room);
  before = cpu_allocator_stats();
  b = torch::full({60 * mib}, 2, torch::kUInt8);
  const auto after = cpu_allocator_stats();
  cpu_allocator_room_probe(nullptr);  // the check below needs 60 MiB more
  EXPECT_EQ(after.fresh_bytes, before.fresh_bytes);
  EXPECT_GT(after.moved_bytes, before.moved_bytes);
  EXPECT_TRUE(b.eq(2).all().item<bool>());
  EXPECT_EQ(after.live_bytes, before.live_bytes + 60 * kMiB);
  // Below the 64 MiB reserve, the 40 MiB it did not take went back to the kernel for the rest of the process.
  EXPECT_EQ(after.cached_bytes, 0u);
  EXPECT_EQ(before.cached_bytes, 100 * kMiB);
}
