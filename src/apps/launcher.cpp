#include "gan/launcher.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "gan/distributed.h"
#include "gan/errors.h"

extern char** environ;

namespace gan {
namespace {

std::atomic<int> g_forward{0};  // a signal to pass on to the workers

extern "C" void on_launcher_signal(int sig) { g_forward.store(sig); }

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  return std::string("signal ") + strsignal(WTERMSIG(status));
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

}  // namespace

std::vector<std::string> without_launcher_options(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc-per-node") {
      ++i;  // and its value
      continue;
    }
    if (args[i].rfind("--nproc-per-node=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

int launch_local_workers(int nproc, const std::vector<std::string>& args, double grace_seconds) {
  // The rendezvous store, as torchrun's agent hosts it: every worker is a client.
  c10d::TCPStoreOptions o = store_options();
  o.port = 0;  // a free port
  o.isServer = true;
  o.waitWorkers = false;
  o.numWorkers = nproc;
  c10::intrusive_ptr<c10d::TCPStore> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", o);
  } catch (const std::exception& e) {
    throw UserError(kExitDistributed, "--nproc-per-node: cannot start the rendezvous store: " + short_cause(e));
  }
  const std::string port = std::to_string(store->getPort());
  char run_id[17];
  std::snprintf(run_id, sizeof run_id, "%016llx", static_cast<unsigned long long>(std::random_device{}()) << 20 ^
                                                      static_cast<unsigned long long>(::getpid()));
  spdlog::info("--nproc-per-node: starting {} workers (rendezvous store on 127.0.0.1:{})", nproc, port);

  struct sigaction sa {};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  std::vector<pid_t> pids;
  for (int r = 0; r < nproc; ++r) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      const std::string kv = *e;
      const std::string key = kv.substr(0, kv.find('='));
      static const char* ours[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                                   "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE",
                                   "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS", "TORCHELASTIC_RUN_ID",
                                   "GROUP_WORLD_SIZE"};
      if (std::none_of(std::begin(ours), std::end(ours), [&](const char* k) { return key == k; })) env.push_back(kv);
    }
    const std::string n = std::to_string(nproc), rank = std::to_string(r);
    for (const std::string& kv : std::vector<std::string>{"RANK=" + rank, "LOCAL_RANK=" + rank, "GROUP_RANK=0", "ROLE_RANK=" + rank, "WORLD_SIZE=" + n,
          "LOCAL_WORLD_SIZE=" + n, "ROLE_WORLD_SIZE=" + n, "GROUP_WORLD_SIZE=1", "MASTER_ADDR=127.0.0.1",
          "MASTER_PORT=" + port, "TORCHELASTIC_USE_AGENT_STORE=True", "TORCHELASTIC_RESTART_COUNT=0",
          "TORCHELASTIC_MAX_RESTARTS=0", std::string("TORCHELASTIC_RUN_ID=") + run_id})
      env.push_back(kv);
    std::vector<char*> argv, envp;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      for (pid_t p : pids) kill(p, SIGKILL);
      throw UserError(kExitInternal, std::string("--nproc-per-node: fork failed: ") + strerror(errno));
    }
    if (pid == 0) {
      setpgid(0, 0);                      // a terminal's Ctrl-C reaches the launcher only; it passes it on once
      prctl(PR_SET_PDEATHSIG, SIGTERM);   // the launcher died: stop after this step, with a checkpoint
      if (getppid() != parent) _exit(143);
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      execve("/proc/self/exe", argv.data(), envp.data());
      _exit(127);
    }
    pids.push_back(pid);
  }

  // Wait for them all, passing signals on, and end the stragglers once one has failed.
  std::vector<int> status(nproc, -1);
  int running = nproc, first_failure = -1, first_cause = -1;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  bool killed = false;
  while (running > 0) {
    if (const int sig = g_forward.exchange(0)) {
      spdlog::info("--nproc-per-node: passing {} on to the workers", strsignal(sig));
      for (int r = 0; r < nproc; ++r)
        if (status[r] < 0) kill(pids[r], sig);
    }
    int st = 0;
    const pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid > 0) {
      const auto it = std::find(pids.begin(), pids.end(), pid);
      if (it == pids.end()) continue;
      const int r = static_cast<int>(it - pids.begin());
      status[r] = st;
      --running;
      const int code = exit_code(st);
      if (code != 0) {
        if (first_failure < 0) {
          first_failure = r;
          deadline = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(static_cast<std::int64_t>(grace_seconds * 1000));
        }
        if (first_cause < 0 && code != kExitDistributed) first_cause = r;
        if (code != kExitInterrupted && code != kExitTerminated)
          spdlog::warn("--nproc-per-node: rank {} ended with {}", r, describe_status(st));
      }
      continue;
    }
    if (pid < 0 && errno != EINTR && errno != ECHILD) break;
    if (!killed && std::chrono::steady_clock::now() > deadline) {
      spdlog::warn("--nproc-per-node: rank {} failed {:.0f} s ago; killing the workers still running", first_failure,
                   grace_seconds);
      for (int r = 0; r < nproc; ++r)
        if (status[r] < 0) kill(pids[r], SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  if (first_failure < 0) return kExitOk;
  return exit_code(status[first_cause >= 0 ? first_cause : first_failure]);
}

}  // namespace gan
