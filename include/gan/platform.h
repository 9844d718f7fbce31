// Machine set-up done once per process: BLAS kernel choice, thread count, device selection.
#pragma once
#include <c10/core/Device.h>

#include <string>

namespace gan {

// OpenBLAS reads OPENBLAS_CORETYPE when it is loaded, before main(). On cloud vCPUs it can pick a kernel far below
// what the CPU supports (e.g. a pre-AVX2 one on an AVX-512 machine: ~5x slower GEMM). If so, and the user has not
// set OPENBLAS_CORETYPE, this re-executes the program with the right value (never returns then). Returns a line
// describing the BLAS in use for the log.
std::string ensure_fast_blas(char** argv);

// Keeps freed tensor memory in the process so that the step's many large, short-lived tensors do not page-fault
// freshly mapped memory every step (+4-6% img/s at 64x64 on the AVX2 development machine, +25% at 64x64 batch 256 on
// the AVX-512 Xeon): installs the caching CPU allocator (gan/cpu_allocator.h), which moves kept pages to where they
// are needed and so keeps live + kept memory within the peak of live tensors (docs/PERFORMANCE.md "Memory").
// GAN_KEEP_FREED_MEMORY=0 leaves glibc's malloc as it is; GAN_KEEP_FREED_MEMORY=heap is the earlier setting (glibc
// keeps its heap: as fast, but its fragmentation added 50-520 MiB of peak RSS at 64x64 batch 64-256).
void keep_freed_memory();
// Gives kept tensor pages and the heap's free pages back to the kernel once (glibc malloc_trim), e.g. after a start-up
// measurement whose tensors the training step does not need.
void release_freed_memory();

// Sets torch's intra-op threads: `threads` > 0, else all cores. Returns the number set.
int configure_threads(int threads);

// One warning line ("" when none) when `threads` (> 1) compute threads will not each have a core: more threads than the
// `cores` this process may use, or other processes keeping `busy` of those cores busy. OpenMP threads spin while they
// wait for each other, so a busy core slows every step, not just one thread (measured: several times slower on a
// 2-core machine shared with a build). `knob` names the setting the warning tells the user to lower.
std::string oversubscription_warning(int threads, int cores, double busy, const std::string& knob = "train.threads");
// Clock ticks of this process's cores (/proc/stat's cpuN lines of its affinity mask): busy (neither idle nor
// waiting for I/O) and in all, and this process's own (/proc/self/stat utime + stime).
struct CpuTicks {
  double busy = 0, total = 0, own = 0;
  bool ok = false;
};
// How many of `cores` other processes kept busy between two readings (-1 when either is unreadable).
double other_cpu_cores(const CpuTicks& a, const CpuTicks& b, int cores);
// The same measured over the next `seconds` on this machine.
double other_cpu_use(double seconds);
// The warning for this machine now: the affinity mask's cores and other_cpu_use over 0.3 s.
std::string oversubscription_warning(int threads, const std::string& knob = "train.threads");

// The CPU's native bf16 instructions as the kernel lists them in /proc/cpuinfo ("avx512_bf16 amx_bf16", "" when
// none). With them oneDNN runs bf16 convolutions faster than float32; without them bf16 is emulated and slower.
std::string cpu_bf16_features();

// This program's version (CMakeLists.txt's project version) and the LibTorch it was built with:
// "gan-train 0.12.0 (LibTorch 1.13.0, CPU, Gloo)".
std::string version_line(const std::string& prog);
// {"gan_trainer": "0.12.0", "libtorch": "1.13.0", "cuda": "12.4" or null}, for summary.json and checkpoints.
std::string versions_json();

// "auto" -> CUDA when available, else CPU. Throws UserError(kExitUsage) for cuda when there is none.
c10::Device resolve_device(const std::string& name);

}  // namespace gan
