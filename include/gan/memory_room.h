// How much more memory this process can take before Linux's OOM killer ends it: the machine's, or its container's.
#pragma once
#include <cstddef>
#include <string>

namespace gan {

constexpr std::size_t kRoomUnknown = static_cast<std::size_t>(-1);

struct MemoryRoom {
  std::size_t bytes = kRoomUnknown;  // kRoomUnknown when nothing could be read
  // What sets it, for an error message: "the machine's available memory" or
  // "the container's memory limit (cgroup /docker/ab12 memory.max 4096 MiB)".
  std::string bound;
};

// The smaller of
// - the machine's room: /proc/meminfo MemAvailable + SwapFree (the kernel's estimate, page cache it can drop included);
// - for this process's memory cgroup and each of its ancestors that has a limit (cgroup v2 memory.max, or v1
//   memory.limit_in_bytes): limit - usage + the file pages it can drop (active_file + inactive_file) + free swap
//   (v2: within memory.swap.max).
// `proc` and `cgroup_root` are /proc and /sys/fs/cgroup except in tests. Reads a few small files (~50 us).
MemoryRoom memory_room(const std::string& proc = "/proc", const std::string& cgroup_root = "/sys/fs/cgroup");

}  // namespace gan
