#include "gan/memory_room.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <vector>

namespace gan {
namespace {

bool read_text(const std::string& path, std::string& out) {
  std::ifstream f(path);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

bool is_dir(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The number a file holds ("max", a missing file or a v1 "unlimited" value near 2^63 give false).
bool read_limit(const std::string& path, std::size_t& out) {
  std::string text;
  if (!read_text(path, text)) return false;
  const char* s = text.c_str();
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (end == s || v >= (1ull << 60)) return false;
  out = static_cast<std::size_t>(v);
  return true;
}

// The value of `key` in "key value" (memory.stat) or "Key:   value kB" (meminfo) lines, times `unit`.
bool field(const std::string& text, const std::string& key, std::size_t unit, std::size_t& out) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0 || line.size() == key.size()) continue;
    const char next = line[key.size()];
    if (next != ' ' && next != ':' && next != '\t') continue;
    const char* s = line.c_str() + key.size() + (next == ':' ? 1 : 0);
    char* end = nullptr;
    const unsigned long long v = std::strtoull(s, &end, 10);
    if (end == s) return false;
    out = static_cast<std::size_t>(v) * unit;
    return true;
  }
  return false;
}

struct Hierarchy {
  bool v2;
  std::string root;  // where it is mounted
  std::string path;  // this process's cgroup in it ("/" or "/docker/ab12")
};

// This process's memory cgroups from /proc/self/cgroup: the v2 one ("0::/path") and a v1 one whose controller list
// names memory.
std::vector<Hierarchy> memory_hierarchies(const std::string& proc, const std::string& cgroup_root) {
  std::vector<Hierarchy> out;
  std::string text;
  if (!read_text(proc + "/self/cgroup", text)) return out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const auto a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (controllers.empty()) {
      // Pure v2 is mounted at the root itself; a hybrid machine mounts it at unified/.
      out.push_back({true, is_dir(cgroup_root + "/unified") ? cgroup_root + "/unified" : cgroup_root, path});
    } else if (("," + controllers + ",").find(",memory,") != std::string::npos) {
      out.push_back({false, cgroup_root + "/memory", path});
    }
  }
  return out;
}

std::string mib(std::size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

}  // namespace

MemoryRoom memory_room(const std::string& proc, const std::string& cgroup_root) {
  // Room in RAM and room in swap are bounded separately (a cgroup with little RAM left may still swap, within its
  // own and its ancestors' swap limits); the room is their sum.
  MemoryRoom room;
  std::string meminfo;
  std::size_t ram = kRoomUnknown, swap = 0, available = 0;
  if (read_text(proc + "/meminfo", meminfo)) {
    field(meminfo, "SwapFree", 1024, swap);
    if (field(meminfo, "MemAvailable", 1024, available)) {
      ram = available;
      room.bound = "the machine's available memory";
    }
  }
  for (const Hierarchy& h : memory_hierarchies(proc, cgroup_root)) {
    // Inside a container with its own cgroup namespace the path may not exist under the mount: its root is ours.
    std::string rel = h.path;
    if (!is_dir(h.root + rel)) rel = "/";
    while (true) {
      const std::string dir = h.root + (rel == "/" ? "" : rel);
      std::size_t limit = 0, usage = 0;
      const bool limited = h.v2 ? read_limit(dir + "/memory.max", limit) && read_limit(dir + "/memory.current", usage)
                                : read_limit(dir + "/memory.limit_in_bytes", limit) &&
                                      read_limit(dir + "/memory.usage_in_bytes", usage);
      if (limited) {
        std::string stat;
        std::size_t active = 0, inactive = 0;
        if (read_text(dir + "/memory.stat", stat)) {
          const std::string prefix = h.v2 ? "" : "total_";  // v1: the hierarchical figures
          field(stat, prefix + "active_file", 1, active);
          field(stat, prefix + "inactive_file", 1, inactive);
        }
        const std::size_t held = usage - std::min(usage, active + inactive);  // what reclaim cannot drop
        const std::size_t here = limit - std::min(limit, held);
        if (here < ram) {
          ram = here;
          room.bound = "the memory limit of cgroup " + rel + " (" + (h.v2 ? "memory.max " : "memory.limit_in_bytes ") +
                       mib(limit) + ")";
        }
      }
      std::size_t swap_limit = 0, swap_used = 0;
      if (h.v2 && read_limit(dir + "/memory.swap.max", swap_limit)) {
        read_limit(dir + "/memory.swap.current", swap_used);
        swap = std::min(swap, swap_limit - std::min(swap_limit, swap_used));
      }
      if (rel == "/" || rel.empty()) break;
      const auto slash = rel.find_last_of('/');
      rel = slash == 0 || slash == std::string::npos ? "/" : rel.substr(0, slash);
    }
  }
  if (ram != kRoomUnknown) room.bytes = ram + swap;
  return room;
}

}  // namespace gan
