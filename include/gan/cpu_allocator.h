// The CPU tensor allocator: large blocks freed by one training step are kept for the next, within the peak of live
// tensors (so the speed of a kept heap without its memory).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "gan/memory_room.h"

namespace gan {

// What the caching allocator has done since it was installed (all zero when it is not installed).
struct CpuAllocatorStats {
  bool installed = false;
  std::size_t live_bytes = 0;        // large blocks held by tensors now
  std::size_t cached_bytes = 0;      // large blocks freed and kept for reuse
  std::size_t peak_live_bytes = 0;   // highest live_bytes (since the last release)
  std::size_t peak_total_bytes = 0;  // highest live_bytes + cached_bytes (since the last release)
  std::size_t segments = 0;          // kernel mappings the blocks are made of (about)
  std::size_t kept_blocks = 0;       // blocks kept now
  std::size_t slack_bytes = 0;       // how far live + kept may exceed the live peak now
  std::int64_t hits = 0;             // large allocations served by one kept block (its whole or its head)
  std::int64_t assembled = 0;        // large allocations made from several kept blocks' pages and fresh ones
  std::int64_t moves = 0;            // mremap calls for those
  std::uint64_t moved_bytes = 0;     // kept pages moved to a new address for those (no copy, no page fault)
  std::uint64_t fresh_bytes = 0;     // pages mapped new (zero-filled by the kernel on first touch)
  double moving_s = 0;               // time spent assembling (moving pages) in those
};

// Block sizes from this many bytes up are cached; smaller ones go to malloc as before.
constexpr std::size_t kCachedBlockMin = 128 * 1024;

// Kept pages may exceed the peak of live bytes by this much, so that blocks of the sizes a step needs at the same
// time can all be kept as they are (moving pages costs a TLB shoot-down on every core the process runs on: in a VM
// ~0.5 ms each, which made a small 32x32 step 30% slower when every mismatch moved pages).
constexpr std::size_t kKeptSlack = 64u << 20;
// When a step needs more than that to keep a block of every size it uses at once, the slack grows as far as this
// (the shipped 64x64 folder config, ngf=ndf=32 bf16 batch 64, needs 86-100 MiB above a 95 MiB peak; with 64 MiB it
// split and moved pages ~100 times a step and ran at 40% of its speed).
constexpr std::size_t kKeptSlackMax = 128u << 20;
// A step that needs still more keeps assembling blocks from kept pages. Memory comes first: the bound rises beyond
// kKeptSlackMax (by each assembled block's size, up to twice the live peak) only while moving pages takes more than
// this share of the time (over windows of 10 s, at least 1 s). configs/celeba.cfg (ngf=ndf=64, batch 128) moves 200 MiB
// of pages in 13 mremaps a step, 4 ms of its 1.3 s (0.3%; 0.99x the kept heap's img/s at 946 against 1247 MiB); keeping
// every size would cost it 170 MiB more RSS, and gan-bench step at batch 128 / 256 would then use more memory than the
// Python reference (951 / 1586 MiB against 862 / 1213).
constexpr double kMoveShareMax = 0.02;

// Memory the allocator leaves to the rest of the process (small tensors from malloc, data buffers, thread stacks) when
// the machine's or the container's room runs short (see install_caching_cpu_allocator).
constexpr std::size_t kRoomReserve = 64u << 20;

// Installs the caching allocator as c10's CPU allocator (once; later calls do nothing). Blocks of at least
// kCachedBlockMin bytes are whole pages mapped from the kernel and kept when freed. An allocation takes, in order: a
// kept block of its size; fresh pages while live + kept + new bytes stay within the peak of live bytes + the slack
// (kKeptSlack, grown when needed up to kKeptSlackMax, or up to twice the live peak while moving pages is costly); the
// head of the smallest larger kept block (its tail kept when at least kCachedBlockMin); else a new range into which
// kept blocks' pages are moved (mremap: no copy, no page fault) before fresh ones are used. Live + kept bytes so never
// exceed the live peak + that bound, and a step that repeats its allocations runs without page faults after the first
// one. Fresh pages are mapped only where memory_room() (the machine's available memory, or the memory cgroup's limit: a
// container's) has room for them and kRoomReserve more; else kept pages are moved in, and when those do not suffice the
// allocation throws c10::OutOfMemoryError, which the programs turn into one line and exit code 8, where Linux's OOM
// killer would have ended the process without a word (exit 137). Below the reserve, kept pages the allocation does not
// take are given back.
void install_caching_cpu_allocator();
CpuAllocatorStats cpu_allocator_stats();
// "live_mib=.. kept_mib=.. kept_blocks=.. slack_mib=.. peak_live_mib=.. peak_total_mib=.. hits=.. assembled=.. moves=..
// moved_mib=.. moving_ms=.. fresh_mib=.. segments=.." (gan-bench's step.cpu_blocks line, gan-train's debug log).
std::string describe(const CpuAllocatorStats& s);
// Gives every kept block back to the kernel and restarts the peaks from the live bytes now (after a start-up
// measurement whose blocks the training step does not need).
void release_cached_cpu_blocks();
// For tests: where the allocator learns the room left (memory_room by default; nullptr restores that).
void cpu_allocator_room_probe(MemoryRoom (*probe)());
// For tests: how far the slack may grow (0, the default: kKeptSlackMax, raised while moving pages takes more than
// the move share of the time; any other value: a fixed bound, never raised, the move share then plays no part).
void cpu_allocator_max_slack(std::size_t bytes);
// For tests: the share of the time moving pages may take before the bound rises (kMoveShareMax by default; 0: every
// assembly raises it; 1: never).
void cpu_allocator_move_share(double share);
// For tests: with `on` false, blocks are moved one segment (one kernel mapping) at a time, as kernels before Linux
// 6.17 require (they refuse to move a range spanning several mappings).
void cpu_allocator_whole_moves(bool on);

}  // namespace gan
