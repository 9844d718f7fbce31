#include "gan/platform.h"

#include <dlfcn.h>
#include <sched.h>
#include <malloc.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "gan/cpu_allocator.h"
#include "gan/errors.h"

namespace gan {

void keep_freed_memory() {
  const char* env = std::getenv("GAN_KEEP_FREED_MEMORY");
  if (env && std::strcmp(env, "0") == 0) return;
  if (env && std::strcmp(env, "heap") == 0) {
#ifdef M_MMAP_THRESHOLD
    mallopt(M_MMAP_THRESHOLD, 1 << 30);  // allocations below 1 GiB come from the heap, reused after free
    mallopt(M_TRIM_THRESHOLD, 1 << 30);  // and the heap is not shrunk while less than 1 GiB of it is free
#endif
    return;
  }
  install_caching_cpu_allocator();
}

void release_freed_memory() {
  release_cached_cpu_blocks();
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

std::string ensure_fast_blas(char** argv) {
  using CoreName = char* (*)();
  auto core_fn = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (!core_fn) {
    void* h = dlopen("libblas.so.3", RTLD_NOW | RTLD_NOLOAD);
    if (h) core_fn = reinterpret_cast<CoreName>(dlsym(h, "openblas_get_corename"));
  }
  if (!core_fn)
    return "BLAS: not OpenBLAS (reference BLAS is ~4x slower for transposed convolutions; "
           "apt-get install libopenblas0-openmp)";
  const std::string core = core_fn();
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  if (env) return "BLAS: OpenBLAS " + core + " (OPENBLAS_CORETYPE=" + env + ")";
  auto in = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (strcasecmp(core.c_str(), n) == 0) return true;
    return false;
  };
  const char* better = nullptr;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && !in({"SkylakeX", "CooperLake", "SapphireRapids"})) better = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           !in({"Haswell", "Zen", "SkylakeX", "CooperLake", "SapphireRapids", "Excavator"}))
    better = "Haswell";
  if (!better) return "BLAS: OpenBLAS " + core;
  if (std::getenv("GAN_NO_BLAS_FIX"))
    return "BLAS: OpenBLAS " + core + " although the CPU supports " + better +
           " kernels (GAN_NO_BLAS_FIX is set; export OPENBLAS_CORETYPE=" + better + " for ~2-5x faster GEMM)";
  setenv("OPENBLAS_CORETYPE", better, 1);
  setenv("GAN_BLAS_FIXED_FROM", core.c_str(), 1);
  execv("/proc/self/exe", argv);
  return "BLAS: OpenBLAS " + core + " (re-exec with OPENBLAS_CORETYPE=" + better + " failed: " + strerror(errno) + ")";
}

#ifndef GAN_VERSION  // set by CMakeLists.txt from the project version
#define GAN_VERSION "unknown"
#endif

namespace {
std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}
}  // namespace

std::string version_line(const std::string& prog) {
  std::string extras;
#ifdef GAN_BUILT_WITH_CUDA
  extras = ", CUDA";
#else
  extras = ", CPU";
#endif
  return prog + " " + GAN_VERSION + " (LibTorch " + torch_version() + extras + ")";
}

std::string versions_json() {
  return std::string("{\"gan_trainer\": \"") + GAN_VERSION + "\", \"libtorch\": \"" + torch_version() + "\"}";
}

int configure_threads(int threads) {
  int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  if (n < 1) n = 1;
  torch::set_num_threads(n);
  return n;
}

std::string oversubscription_warning(int threads, int cores, double busy, const std::string& knob) {
  // One thread waits for no other: a busy core slows it in proportion, which needs no warning.
  if (threads <= 1 || cores < 1) return "";
  const double free_cores = std::max(0.0, cores - std::max(0.0, busy));
  if (threads <= cores && threads <= free_cores + 0.5) return "";
  const int suggest = std::max(1, std::min(cores, static_cast<int>(free_cores + 0.5)));
  char buf[400];
  if (threads > cores)
    std::snprintf(buf, sizeof buf, "%d compute threads on %d cores: OpenMP threads spin while they wait for each "
                  "other, so oversubscribed cores slow every step; set %s to %d", threads, cores, knob.c_str(),
                  suggest);
  else
    std::snprintf(buf, sizeof buf, "the machine is busy: other processes keep %.1f of %d cores busy, leaving about "
                  "%.1f for %d compute threads; OpenMP threads spin while they wait for each other, so a step can "
                  "become several times slower: stop the other jobs or set %s to %d", busy, cores, free_cores,
                  threads, knob.c_str(), suggest);
  return buf;
}

namespace {
CpuTicks read_cpu_ticks(const cpu_set_t& set) {
  CpuTicks t;
  if (std::FILE* f = std::fopen("/proc/stat", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f)) {
      int cpu = -1, used = 0;
      if (std::sscanf(line, "cpu%d %n", &cpu, &used) != 1 || cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &set))
        continue;
      double v[10] = {0};  // user nice system idle iowait irq softirq steal guest guest_nice
      std::sscanf(line + used, "%lf %lf %lf %lf %lf %lf %lf %lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                  &v[7]);
      double sum = 0;
      for (int i = 0; i < 8; ++i) sum += v[i];
      t.total += sum;
      t.busy += sum - v[3] - v[4];
      t.ok = true;
    }
    std::fclose(f);
  }
  if (std::FILE* f = std::fopen("/proc/self/stat", "r")) {
    char buf[1024];
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    const char* p = std::strrchr(buf, ')');  // "pid (name) S ppid ...": utime and stime are fields 14 and 15
    double utime = 0, stime = 0;
    if (!p || std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lf %lf", &utime, &stime) != 2)
      t.ok = false;
    t.own = utime + stime;
  } else {
    t.ok = false;
  }
  return t;
}
}  // namespace

double other_cpu_cores(const CpuTicks& a, const CpuTicks& b, int cores) {
  const double total = b.total - a.total;
  if (!a.ok || !b.ok || total <= 0) return -1;
  return std::max(0.0, (b.busy - a.busy) - (b.own - a.own)) / total * cores;
}

double other_cpu_use(double seconds) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
  const CpuTicks a = read_cpu_ticks(set);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return other_cpu_cores(a, read_cpu_ticks(set), CPU_COUNT(&set));
}

std::string oversubscription_warning(int threads, const std::string& knob) {
  cpu_set_t set;
  int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (sched_getaffinity(0, sizeof set, &set) == 0) cores = CPU_COUNT(&set);
  if (threads > cores) return oversubscription_warning(threads, cores, 0.0, knob);
  if (threads <= 1) return "";
  // Measured, not the load average: that is the last minute's and still reads busy right after another job ended
  // (a benchmark's previous run), and a momentary kernel thread is not a job either.
  const double busy = other_cpu_use(0.3);
  if (busy < 0) return "";
  return oversubscription_warning(threads, cores, busy, knob);
}

std::string cpu_bf16_features() {
  std::FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (!f) return "";
  char line[8192];
  std::string found;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "flags", 5) != 0) continue;
    const std::string flags = std::string(" ") + line;
    for (const char* flag : {"avx512_bf16", "amx_bf16"})
      if (flags.find(std::string(" ") + flag + " ") != std::string::npos ||
          flags.find(std::string(" ") + flag + "\n") != std::string::npos)
        found += (found.empty() ? "" : " ") + std::string(flag);
    break;  // the first processor's flags
  }
  std::fclose(f);
  return found;
}

c10::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  const bool have_cuda = torch::cuda::is_available();
  if (name == "auto") return have_cuda ? c10::Device(torch::kCUDA, 0) : c10::Device(torch::kCPU);
  if (!have_cuda)
    throw UserError(kExitUsage, "train.device = " + name +
                                    " but this build or machine has no CUDA device; use --device cpu or auto");
  c10::Device dev(name);
  if (dev.has_index() && dev.index() >= static_cast<int>(torch::cuda::device_count()))
    throw UserError(kExitUsage, "train.device = " + name + " but only " + std::to_string(torch::cuda::device_count()) +
                                    " CUDA device(s) exist");
  return dev.has_index() ? dev : c10::Device(torch::kCUDA, 0);
}

}  // namespace gan
