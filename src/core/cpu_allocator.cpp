#include "gan/cpu_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace gan {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kAlignment = 64;     // c10's alignment for CPU tensors (AVX-512 loads)
constexpr std::size_t kMaxSegments = 20000;  // well below Linux's default vm.max_map_count (65530)
constexpr std::size_t kMaxKeptBlocks = 1024;  // a step has a few hundred large tensors

// The bookkeeping behind the allocator. A large block is a range of whole pages; its physical pages can be moved to
// another address without copying or faulting (mremap moves page-table entries). So a freed block serves any later
// size: the same size as it is; a smaller one by splitting it; a larger one by moving several kept blocks' pages into
// one new range. New pages are mapped only while live + kept stays within the peak of live bytes + the slack
// (kKeptSlack, grown when a step needs it up to cap_: kKeptSlackMax, raised up to twice the live peak while moving
// pages takes more than kMoveShareMax of the time); beyond that kept pages are used first, so live + kept never exceeds
// that bound.
class BlockCache {
 public:
  using Clock = std::chrono::steady_clock;
  // One piece of a block that lies in a single kernel mapping (mremap moves only such pieces).
  struct Segment {
    char* addr;
    std::size_t len;
  };
  struct Block {
    char* addr = nullptr;
    std::size_t size = 0;
    std::vector<Segment> segments;  // cover [addr, addr + size) in order
  };

  void* allocate(std::size_t n) {
    if (n == 0) return nullptr;
    if (n < kCachedBlockMin) {
      void* p = nullptr;
      if (posix_memalign(&p, kAlignment, n) != 0) p = nullptr;
      TORCH_CHECK_WITH(OutOfMemoryError, p, "CPU allocator: not enough memory for ", n, " bytes");
      return p;
    }
    const std::size_t size = (n + kPage - 1) / kPage * kPage;
    std::lock_guard<std::mutex> lock(mu_);
    Block b;
    auto fit = kept_.lower_bound(size);
    if (fit != kept_.end() && fit->first == size) {  // the same size freed before (the newest of them)
      fit = std::prev(kept_.upper_bound(size));
      b = take(fit);
      ++stats_.hits;
    } else if (within_slack(size)) {
      // Fresh pages, kept for the next step in their own size: splitting a kept block instead would take a size
      // that the next step asks for again, and mismatches would then move pages every step.
      b = assemble(size, /*use_kept=*/false);
    } else if (fit != kept_.end()) {  // the head of the smallest larger kept block; the tail stays kept (keep_tail)
      b = take(fit);
      keep_tail(split(b, size));
      ++stats_.hits;
    } else {
      b = assemble(size, /*use_kept=*/true);
    }
    live_ += size;
    peak_live_ = std::max(peak_live_, live_);
    peak_total_ = std::max(peak_total_, live_ + cached_);
    char* p = b.addr;
    live_blocks_.emplace(p, std::move(b));
    return p;
  }

  void free(void* p) {
    if (!p) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = live_blocks_.find(p);
      if (it != live_blocks_.end()) {
        live_ -= it->second.size;
        keep(std::move(it->second));
        live_blocks_.erase(it);
        return;
      }
    }
    std::free(p);  // a small block (from malloc)
  }

  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    unmap_kept();
    peak_live_ = peak_total_ = live_;
    slack_ = kKeptSlack;
    cap_ = kKeptSlackMax;
    window_start_ = {};
  }

  void set_room_probe(MemoryRoom (*probe)()) {
    std::lock_guard<std::mutex> lock(mu_);
    probe_ = probe ? probe : &default_room;
    probed_at_ = {};  // ask it at the next fresh mapping
  }

  void set_slack_max(std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    slack_max_ = bytes;
    if (bytes) slack_ = std::min(slack_, std::max(kKeptSlack, bytes));
  }

  void set_move_share(double share) {
    std::lock_guard<std::mutex> lock(mu_);
    move_share_max_ = share;
  }

  void set_whole_moves(bool on) {
    std::lock_guard<std::mutex> lock(mu_);
    whole_moves_ = on;
  }

  CpuAllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    CpuAllocatorStats s = stats_;
    s.installed = true;
    s.live_bytes = live_;
    s.cached_bytes = cached_;
    s.peak_live_bytes = peak_live_;
    s.peak_total_bytes = peak_total_;
    s.segments = segments_;
    s.kept_blocks = kept_.size();
    s.slack_bytes = slack_;
    return s;
  }

 private:
  Block take(std::multimap<std::size_t, Block>::iterator it) {
    Block b = std::move(it->second);
    kept_.erase(it);
    cached_ -= b.size;
    return b;
  }

  void keep(Block b) {
    if (b.size == 0) return;
    cached_ += b.size;
    kept_.emplace(b.size, std::move(b));
  }

  // A split's tail is kept for a later split or move unless it is smaller than kCachedBlockMin (no allocation could
  // take it whole) or kMaxKeptBlocks are kept already: kept tails of sizes nobody asks for can pile up (measured: 3,839
  // kept blocks of ~30 KiB after 300 steps of a small model whose step needed more than the slack, each moved
  // separately, the step at 40% of its speed), and this bounds their number whatever the step does.
  void keep_tail(Block tail) {
    if (tail.size < kCachedBlockMin || kept_.size() >= kMaxKeptBlocks)
      unmap(tail);
    else
      keep(std::move(tail));
  }

  // Cuts b after `head` bytes; b keeps the head, the tail is returned. A segment spanning the cut becomes two.
  Block split(Block& b, std::size_t head) {
    Block tail;
    tail.addr = b.addr + head;
    tail.size = b.size - head;
    std::vector<Segment> mine;
    for (const Segment& s : b.segments) {
      const std::size_t begin = s.addr - b.addr, end = begin + s.len;
      if (end <= head) {
        mine.push_back(s);
      } else if (begin >= head) {
        tail.segments.push_back(s);
      } else {
        mine.push_back({s.addr, head - begin});
        tail.segments.push_back({b.addr + head, end - head});
        ++segments_;
      }
    }
    b.segments = std::move(mine);
    b.size = head;
    return tail;
  }

  // A new range of `size` bytes: fresh pages, after moving in kept ones when `use_kept` (largest blocks first, the
  // last one split).
  Block assemble(std::size_t size, bool use_kept) {
    // Fresh pages only where the machine (or the container) has room for them and kRoomReserve more: beyond it
    // Linux's OOM killer would end the process without a word. Kept pages moved in take no new memory, so they are
    // used first when room is short.
    std::size_t fresh = use_kept ? size - std::min(size, cached_) : size;
    if (!has_room(fresh) && !use_kept && cached_ > 0) {
      use_kept = true;
      fresh = size - std::min(size, cached_);
    }
    TORCH_CHECK_WITH(OutOfMemoryError, has_room(fresh), "the CPU allocator needs ", fresh >> 20,
                     " MiB of new memory for a tensor of ", size >> 20, " MiB, but ", room_.bound, " leaves ",
                     room_left_ >> 20, " MiB, of which it keeps ", kRoomReserve >> 20,
                     " MiB for the rest of the process (", live_ >> 20,
                     " MiB of tensors live): lower the batch size or the image size");
    if (room_left_ != kRoomUnknown) room_left_ -= fresh;
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {  // give every kept page back and try once more
      unmap_kept();
      p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      TORCH_CHECK_WITH(OutOfMemoryError, p != MAP_FAILED, "the CPU allocator could not map ", size >> 20,
                       " MiB for a tensor (", live_ >> 20,
                       " MiB of tensors live): lower the batch size or the image size");
    }
    Block b;
    b.addr = static_cast<char*>(p);
    b.size = size;
    const auto started = Clock::now();
    std::size_t off = 0;
    while (use_kept && off < size && !kept_.empty()) {
      if (segments_ + 8 > kMaxSegments) {  // too many mappings: give the kept pages back instead
        unmap_kept();
        break;
      }
      auto it = kept_.lower_bound(size - off);
      if (it == kept_.end()) it = std::prev(kept_.end());  // none large enough: the largest, whole
      Block from = take(it);
      if (from.size > size - off) keep_tail(split(from, size - off));
      move(from, b.addr + off, b);
      off += from.size;
    }
    // The fresh mapping's pages not replaced: one segment at the end (pieces moved in front split it there). The
    // segments are in address order: each move appends at the next offset.
    if (off < size) {
      b.segments.push_back({b.addr + off, size - off});
      ++segments_;
      stats_.fresh_bytes += size - off;
    }
    if (off > 0) {
      ++stats_.assembled;
      const auto now = Clock::now();
      const double moving_s = std::chrono::duration<double>(now - started).count();
      stats_.moving_s += moving_s;
      raise_cap(now, moving_s, size);
    }
    // Short of the reserve: the kept pages this allocation did not take go back to the kernel for the rest of the
    // process (malloc, thread stacks), and the next allocation that needs fresh pages fails cleanly instead.
    while (room_left_ < kRoomReserve && !kept_.empty()) {
      Block spare = take(kept_.begin());
      room_left_ += spare.size;
      unmap(spare);
    }
    return b;
  }

  // Moves `from`'s pages to `to` and records them as segments of `into`. One mremap when the kernel moves the whole
  // range (it lies in one mapping, or the kernel moves several: Linux 6.17+), else one per segment.
  void move(const Block& from, char* to, Block& into) {
    if (from.segments.size() > 1 && whole_moves_ &&
        mremap(from.addr, from.size, from.size, MREMAP_MAYMOVE | MREMAP_FIXED, to) != MAP_FAILED) {
      segments_ -= from.segments.size() - 1;
      into.segments.push_back({to, from.size});
      stats_.moved_bytes += from.size;
      ++stats_.moves;
      return;
    }
    for (const Segment& s : from.segments) {
      char* dst = to + (s.addr - from.addr);
      if (mremap(s.addr, s.len, s.len, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == MAP_FAILED) {
        munmap(s.addr, s.len);  // the destination keeps its fresh pages there
        stats_.fresh_bytes += s.len;
      } else {
        stats_.moved_bytes += s.len;
      }
      into.segments.push_back({dst, s.len});
      ++stats_.moves;
    }
  }

  // Moving pages costs TLB shoot-downs on every core the process runs on; keeping more pages costs memory. When
  // assembling has taken more than move_share_max_ of the time since the window began (counted as at least 1 s; a
  // window lasts 10 s), cap_ rises by this block's size, up to twice the live peak, and the kept blocks go back to the
  // kernel: they are what the old bound left (split tails, sizes the step does not ask for as they are), and with
  // them kept the new room would fill with more of the same (measured: with the bound raised but the blocks kept, the
  // folder config went on moving pages for a quarter of its time). The next steps then map a block of each size they
  // need, within the new bound. The window restarts, so the bound rises again only if moving stays costly.
  void raise_cap(Clock::time_point now, double moving_s, std::size_t size) {
    if (slack_max_) return;  // a fixed bound (tests) is not raised, and its kept blocks stay
    if (window_start_ == Clock::time_point{} || now - window_start_ > std::chrono::seconds(10)) {
      window_start_ = now;
      window_moving_s_ = 0;
    }
    window_moving_s_ += moving_s;
    const double elapsed = std::max(1.0, std::chrono::duration<double>(now - window_start_).count());
    const std::size_t raised = std::min(2 * peak_live_, cap_ + size);
    if (window_moving_s_ <= move_share_max_ * elapsed || raised <= cap_) return;
    cap_ = raised;
    unmap_kept();
    window_start_ = now;
    window_moving_s_ = 0;
  }

  // Whether fresh pages for `size` keep live + kept within the live peak + the slack. When they do not, the slack
  // grows to make them fit, up to cap_: a step then keeps a block of every size it needs at once, where mismatches
  // would split or move pages (a TLB shoot-down each) every step.
  bool within_slack(std::size_t size) {
    const std::size_t total = live_ + cached_ + size, base = std::max(peak_live_, live_ + size);
    if (total <= base + slack_) return true;
    const std::size_t cap = slack_max_ ? std::max(kKeptSlack, slack_max_) : cap_;
    if (total - base > cap) return false;
    slack_ = total - base;
    return true;
  }

  // Whether `fresh` new bytes and kRoomReserve fit in the room last measured, measuring again when it is half used or
  // half a second old (reading /proc and the cgroup files takes ~50 us; steps map fresh pages only while they grow).
  bool has_room(std::size_t fresh) {
    if (fresh == 0) return true;
    const auto now = std::chrono::steady_clock::now();
    if (fresh > room_left_ / 2 || now - probed_at_ > std::chrono::milliseconds(500)) {
      room_ = probe_();
      room_left_ = room_.bytes;
      probed_at_ = now;
    }
    return room_left_ == kRoomUnknown || fresh + kRoomReserve <= room_left_;
  }

  static MemoryRoom default_room() { return memory_room(); }

  void unmap(const Block& b) {
    munmap(b.addr, b.size);
    segments_ -= std::min(segments_, b.segments.size());
  }

  void unmap_kept() {
    while (!kept_.empty()) unmap(take(kept_.begin()));
  }

  std::mutex mu_;
  std::size_t live_ = 0, cached_ = 0, peak_live_ = 0, peak_total_ = 0;
  std::size_t segments_ = 0;  // in all blocks, live and kept
  bool whole_moves_ = true;
  std::size_t slack_ = kKeptSlack;  // grows up to cap_, or to slack_max_ where a test sets one (within_slack)
  std::size_t slack_max_ = 0;  // for tests: a fixed bound for the slack instead of cap_ (0: cap_)
  std::size_t cap_ = kKeptSlackMax;  // how far the slack may grow: raised while moving pages is costly (raise_cap)
  double move_share_max_ = kMoveShareMax;
  Clock::time_point window_start_{};  // raise_cap's window
  double window_moving_s_ = 0;
  MemoryRoom (*probe_)() = &default_room;
  MemoryRoom room_;                 // as last measured
  std::size_t room_left_ = kRoomUnknown;  // room_.bytes less the fresh pages mapped since
  std::chrono::steady_clock::time_point probed_at_{};
  std::unordered_map<void*, Block> live_blocks_;
  std::multimap<std::size_t, Block> kept_;  // by size; among equal sizes the newest last
  CpuAllocatorStats stats_;
};

BlockCache* g_cache = nullptr;  // created once, never destroyed: tensors freed at exit still find it

void delete_block(void* p) { g_cache->free(p); }

class CachingCpuAllocator final : public c10::Allocator {
 public:
// LibTorch 2.3 made allocate() non-const and added copy_data().
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(std::size_t n) override { return make(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#else
  c10::DataPtr allocate(std::size_t n) const override { return make(n); }
#endif
  c10::DeleterFnPtr raw_deleter() const override { return &delete_block; }

 private:
  static c10::DataPtr make(std::size_t n) {
    void* p = g_cache->allocate(n);
    return {p, p, &delete_block, c10::Device(c10::DeviceType::CPU)};
  }
};

}  // namespace

void install_caching_cpu_allocator() {
  static std::once_flag once;
  std::call_once(once, [&] {
    g_cache = new BlockCache();
    static auto* allocator = new CachingCpuAllocator();
    c10::SetCPUAllocator(allocator, /*priority=*/1);
  });
}

CpuAllocatorStats cpu_allocator_stats() { return g_cache ? g_cache->stats() : CpuAllocatorStats{}; }

std::string describe(const CpuAllocatorStats& s) {
  char line[400];
  std::snprintf(line, sizeof line,
                "live_mib=%.0f kept_mib=%.0f kept_blocks=%zu slack_mib=%.0f peak_live_mib=%.0f peak_total_mib=%.0f "
                "hits=%lld assembled=%lld moves=%lld moved_mib=%.0f moving_ms=%.0f fresh_mib=%.0f segments=%zu",
                s.live_bytes / 1048576.0, s.cached_bytes / 1048576.0, s.kept_blocks, s.slack_bytes / 1048576.0,
                s.peak_live_bytes / 1048576.0,
                s.peak_total_bytes / 1048576.0, static_cast<long long>(s.hits), static_cast<long long>(s.assembled),
                static_cast<long long>(s.moves), s.moved_bytes / 1048576.0, s.moving_s * 1e3, s.fresh_bytes / 1048576.0,
                s.segments);
  return line;
}

void cpu_allocator_room_probe(MemoryRoom (*probe)()) {
  if (g_cache) g_cache->set_room_probe(probe);
}

void cpu_allocator_max_slack(std::size_t bytes) {
  if (g_cache) g_cache->set_slack_max(bytes);
}

void cpu_allocator_move_share(double share) {
  if (g_cache) g_cache->set_move_share(share);
}

void cpu_allocator_whole_moves(bool on) {
  if (g_cache) g_cache->set_whole_moves(on);
}

void release_cached_cpu_blocks() {
  if (g_cache) g_cache->release();
}

}  // namespace gan
