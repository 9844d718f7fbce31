// Data-parallel training over several processes with PyTorch's own engine (c10d): the launcher's environment read as
// torchrun's env:// rendezvous reads it, the TCPStore and process group (Gloo on CPU, NCCL on CUDA builds), the
// collectives the trainer uses, gradient averaging in buckets, and what happens when a peer stops responding.
// A run of one process never creates any of this.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gan/config.h"
#include "gan/step.h"
#include "gan/sync_batch_norm.h"

namespace c10d {
struct TCPStoreOptions;
}

namespace gan {

// What a launcher tells each worker (torchrun, or gan-train --nproc-per-node).
struct LaunchEnv {
  bool present = false;          // RANK or WORLD_SIZE is set: this process is one worker of several
  int rank = 0, world_size = 1;  // RANK, WORLD_SIZE
  int local_rank = 0, local_world_size = 1;  // LOCAL_RANK, LOCAL_WORLD_SIZE (this machine's workers)
  std::string master_addr;       // MASTER_ADDR: where the rendezvous store listens
  int master_port = 0;           // MASTER_PORT
  bool agent_store = false;      // TORCHELASTIC_USE_AGENT_STORE=True: the launcher hosts the store, every rank is a client
  int restart_count = 0;         // TORCHELASTIC_RESTART_COUNT: the launcher's restarts so far (keys /worker/attempt_N)
};

// Reads the variables above as PyTorch's env:// rendezvous does. Throws UserError(kExitUsage) naming a variable that
// is missing or malformed once RANK or WORLD_SIZE is set.
LaunchEnv read_launch_env();

// Whether this build has c10d's Gloo process group (the CPU backend; CMake finds gloo's headers or leaves it out).
bool gloo_available();
// Whether this build has c10d's NCCL process group (CUDA builds of LibTorch define USE_C10D_NCCL).
bool nccl_available();

// The device of one worker: with train.device auto or cuda, a machine's workers take cuda:LOCAL_RANK each; an explicit
// cuda:N or cpu is used as given.
c10::Device worker_device(const std::string& train_device, const LaunchEnv& env);

class DistContext {
 public:
  // Joins the rendezvous and the process group (dist.backend on `device`); returns once every rank has joined.
  // Throws UserError(kExitDistributed) when that takes longer than dist.timeout.
  DistContext(const LaunchEnv& env, const DistConfig& cfg, const c10::Device& device);
  ~DistContext();
  DistContext(const DistContext&) = delete;
  DistContext& operator=(const DistContext&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int local_rank() const;
  int local_world_size() const;
  const c10::Device& device() const;
  bool is_main() const { return rank_ == 0; }
  const std::string& backend() const { return backend_; }
  std::string describe() const;  // "rank 1 of 2 (gloo, store 127.0.0.1:29500)"

  // Collectives: every rank calls them in the same order, with tensors of the same shapes. A peer that stops
  // responding, or does not answer within dist.timeout (`timeout` where given), ends the run with
  // UserError(kExitDistributed) naming the rank(s) that stopped and the last checkpoint (set_last_checkpoint).
  // `what` names the collective in failure messages.
  void all_reduce_sum(at::Tensor& t, const char* what = "an all-reduce");  // in place
  void all_reduce_max(at::Tensor& t, const char* what = "an all-reduce");  // in place
  void broadcast(std::vector<at::Tensor>& tensors);   // rank 0's values everywhere
  std::string broadcast_bytes(const std::string& bytes_on_rank0);  // any size, through the process group
  void barrier(std::chrono::milliseconds timeout);
  // An AllReduceSum for SyncBatchNorm2d.
  AllReduceSum sum_function();
  // Runs `f` (which issues collectives); a failure becomes UserError(kExitDistributed) as described above.
  void guard(const char* what, const std::function<void()>& f);
  // Runs `work` on rank 0 only (preparing data or evaluation, evaluating) while the other ranks wait, however long it
  // takes, as long as rank 0 shows signs of life through the store; one that is silent for dist.timeout is reported.
  // A UserError on rank 0 ends every rank with its exit code ("rank 0 failed while <what>: ...").
  void run_on_main(const std::string& what, const std::function<void()>& work);

  // For failure messages: the newest checkpoint of the run, and what the run is doing.
  void set_last_checkpoint(const std::string& path) { last_checkpoint_ = path; }
  void set_activity(const std::string& what) { activity_ = what; }

  class Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, world_ = 1;
  std::string backend_;
  std::string last_checkpoint_, activity_;
  int main_turns_ = 0;
};

// Averages G's and D's gradients across the ranks every update (GanStep calls it around each backward pass). The
// parameters are grouped, last layer first, into flat buckets of about dist.bucket_mb; with dist.overlap a bucket's
// all-reduce starts during the backward pass as soon as its last gradient arrives (tensor hooks), else after it.
// Buckets go out in a fixed order, so every rank issues the same collectives.
class GradientReducer : public GradientSync {
 public:
  GradientReducer(DistContext& dist, const std::vector<at::Tensor>& d_params, const std::vector<at::Tensor>& g_params,
                  double bucket_mb, bool overlap);
  ~GradientReducer() override;
  void before_backward(int net) override;
  void after_backward(int net) override;

  struct Figures {
    std::int64_t bytes = 0;          // bytes all-reduced so far (each rank's share of the buckets)
    std::int64_t reductions = 0;     // bucket all-reduces so far
    double wait_s = 0;               // time spent waiting for them after the backward pass (not hidden by it)
    int buckets_d = 0, buckets_g = 0;
  };
  const Figures& figures() const { return figures_; }

 private:
  struct Net;
  DistContext& dist_;
  std::unique_ptr<Net> nets_[2];
  Figures figures_;
};

// The per-step agreement of a distributed run: one small all-reduce of the step's statistics (averaged, so that rank
// 0 logs what one process would) and of each rank's reasons to stop (a signal, train.max_time), so that every rank
// stops after the same step. On CUDA the verdict is read one step late, so that the host never waits for the device.
class StepVote {
 public:
  explicit StepVote(DistContext& dist, bool lag_one_step);
  ~StepVote();
  struct Verdict {
    bool known = false;   // false on CUDA for the first step
    int sigint = 0, sigterm = 0, out_of_time = 0;  // how many ranks want to stop, and why
  };
  // Averages `stats` in place (on the device) and returns the verdict of this step (CPU) or of the previous one (CUDA).
  Verdict cast(at::Tensor& stats, int signal, bool out_of_time);

 private:
  struct State;
  DistContext& dist_;
  std::unique_ptr<State> state_;
};

// The first line of an exception's text, without a C++ backtrace or gloo's "[file.cc:123] " prefix.
std::string short_cause(const std::exception& e);

// A TCPStore's options as this program uses them (the classic server, not LibTorch 2.4+'s libuv one).
c10d::TCPStoreOptions store_options();

// A 64-bit fingerprint of the exact bytes of the parameters and buffers of `tensors` (for checking that every rank
// holds the same weights).
std::uint64_t fingerprint(const std::vector<at::Tensor>& tensors);

}  // namespace gan
