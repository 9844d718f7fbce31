#include "gan/distributed.h"

#include <spdlog/spdlog.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#ifdef GAN_WITH_GLOO  // set by CMakeLists.txt where gloo's headers are found (LibTorch's own or libgloo-dev)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#include <torch/version.h>
#ifdef USE_C10D_NCCL  // defined by CUDA builds of LibTorch that have NCCL (Debian's 1.13 is CPU-only)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#ifdef GAN_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <thread>

#include "gan/errors.h"
#include "gan/platform.h"

namespace gan {
namespace {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// LibTorch 2.x splits a process group into ProcessGroup and the Backend that does the work (Gloo, NCCL); in 1.13 the
// backends are process groups themselves. Both have the same collective methods.
#if TORCH_VERSION_MAJOR >= 2
using Backend = c10d::Backend;
#else
using Backend = c10d::ProcessGroup;
#endif
using WorkPtr = decltype(std::declval<Backend&>().barrier());

std::vector<std::uint8_t> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string from_bytes(const std::vector<std::uint8_t>& b) { return {b.begin(), b.end()}; }

const char* getenv_nonempty(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = getenv_nonempty(name);
  if (!v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi)
    throw UserError(kExitUsage, std::string("environment variable ") + name + "='" + v + "' is not an integer in [" +
                                    std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(x);
}

}  // namespace

std::string short_cause(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  std::string s = c10 ? c10->what_without_backtrace() : e.what();
  if (auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  if (!s.empty() && s[0] == '[')
    if (auto close = s.find("] "); close != std::string::npos) s = s.substr(close + 2);
  return s;
}

// A TCPStore without LibTorch 2.4+'s default libuv server, which Debian's 2.x is built without; the classic server
// talks to clients of either kind.
c10d::TCPStoreOptions store_options() {
  c10d::TCPStoreOptions o;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 2)
  o.useLibUV = false;
#endif
  return o;
}

namespace {

std::string join_ranks(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size(); ++i)
    out += (i == 0 ? "" : i + 1 == ranks.size() ? " and " : ", ") + std::to_string(ranks[i]);
  return out;
}

}  // namespace

LaunchEnv read_launch_env() {
  LaunchEnv e;
  e.present = getenv_nonempty("RANK") || getenv_nonempty("WORLD_SIZE");
  if (!e.present) return e;
  for (const char* required : {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"})
    if (!getenv_nonempty(required))
      throw UserError(kExitUsage, std::string("environment variable ") + required +
                                      " is not set, but RANK/WORLD_SIZE are: launch with torchrun, or gan-train "
                                      "--nproc-per-node N, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT");
  e.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 20);
  e.rank = env_int("RANK", 0, 0, e.world_size - 1);
  e.local_rank = env_int("LOCAL_RANK", e.rank, 0, 1 << 20);
  e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size, 1, 1 << 20);
  e.master_addr = getenv_nonempty("MASTER_ADDR");
  e.master_port = env_int("MASTER_PORT", 0, 0, 65535);
  const char* agent = getenv_nonempty("TORCHELASTIC_USE_AGENT_STORE");
  e.agent_store = agent && std::string(agent) == "True";  // exactly as torch.distributed.rendezvous tests it
  e.restart_count = env_int("TORCHELASTIC_RESTART_COUNT", 0, 0, 1 << 30);
  return e;
}

bool gloo_available() {
#ifdef GAN_WITH_GLOO
  return true;
#else
  return false;
#endif
}

bool nccl_available() {
#ifdef USE_C10D_NCCL
  return true;
#else
  return false;
#endif
}

c10::Device worker_device(const std::string& train_device, const LaunchEnv& env) {
  // One GPU named for every worker of this machine: NCCL would stop at the first barrier ("Duplicate GPU detected").
  if (env.present && env.local_world_size > 1 && train_device.rfind("cuda:", 0) == 0)
    throw UserError(kExitUsage, "train.device = " + train_device + " puts all " +
                                    std::to_string(env.local_world_size) + " workers of this machine on one GPU; set "
                                    "train.device cuda (each worker takes the GPU of its LOCAL_RANK)");
  c10::Device d = resolve_device(train_device);
  if (env.present && d.is_cuda() && (train_device == "auto" || train_device == "cuda")) {
    if (env.local_rank >= static_cast<int>(torch::cuda::device_count()))
      throw UserError(kExitUsage, "LOCAL_RANK " + std::to_string(env.local_rank) + " has no GPU of its own (" +
                                      std::to_string(torch::cuda::device_count()) +
                                      " CUDA devices here): start at most that many workers per machine");
    d = c10::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  }
  return d;
}

class DistContext::Impl {
 public:
  LaunchEnv env;
  c10::Device device{torch::kCPU};
  Millis timeout{0};
  c10::intrusive_ptr<c10d::Store> store;    // the rendezvous store (with torchrun's prefix under its agent)
  c10::intrusive_ptr<Backend> pg;
  bool nccl = false;
  bool store_host = false;  // this process runs the store's server (rank 0 without a launcher's store)
  bool failed = false;
  // Signs of life: a thread with its own store connection bumps gan/beat/<rank> every kBeat, whatever the main thread
  // is doing (waiting in a collective, evaluating). A rank whose counter stands still is stopped or dead.
  c10::intrusive_ptr<c10d::Store> beat_store;
  std::thread beat_thread;
  std::mutex beat_mu;
  std::condition_variable beat_cv;
  bool beat_stop = false;

  void start_beating(int rank);
  void stop_beating();
};

namespace {
constexpr Millis kBeat(200);
std::string beat_key(int rank) { return "gan/beat/" + std::to_string(rank); }
}  // namespace

void DistContext::Impl::start_beating(int rank) {
  beat_thread = std::thread([this, rank] {
    std::unique_lock<std::mutex> lock(beat_mu);
    for (std::int64_t i = 1; !beat_stop; ++i) {
      try {
        beat_store->set(beat_key(rank), to_bytes(std::to_string(i)));
      } catch (const std::exception&) {
        return;  // the store is gone: the main thread finds out at its next collective
      }
      beat_cv.wait_for(lock, kBeat, [this] { return beat_stop; });
    }
  });
}

void DistContext::Impl::stop_beating() {
  {
    std::lock_guard<std::mutex> lock(beat_mu);
    beat_stop = true;
  }
  beat_cv.notify_all();
  if (beat_thread.joinable()) beat_thread.join();
}

DistContext::DistContext(const LaunchEnv& env, const DistConfig& cfg, const c10::Device& device)
    : impl_(std::make_unique<Impl>()), rank_(env.rank), world_(env.world_size) {
  Impl& m = *impl_;
  m.env = env;
  m.device = device;
  m.timeout = Millis(static_cast<std::int64_t>(parse_duration(cfg.timeout) * 1000));
  std::string backend = cfg.backend;
  if (backend == "auto") {
#ifdef USE_C10D_NCCL
    backend = device.is_cuda() ? "nccl" : "gloo";
#else
    backend = "gloo";
#endif
  }
  if (backend == "nccl") {
#ifndef USE_C10D_NCCL
    throw UserError(kExitUsage, "dist.backend = nccl, but this build's LibTorch has no NCCL (Debian's is CPU-only); "
                                "use dist.backend gloo, or build against a CUDA LibTorch");
#endif
    if (!device.is_cuda())
      throw UserError(kExitUsage, "dist.backend = nccl needs train.device cuda; on the CPU use dist.backend gloo");
  }
  if (backend == "gloo" && !gloo_available())
    throw UserError(kExitUsage, "dist.backend = gloo, but this build has no Gloo (gloo's headers were not found when "
                                "it was built: install libgloo-dev and rebuild)" +
                                    std::string(device.is_cuda() ? "; on CUDA use dist.backend nccl" : ""));
  backend_ = backend;
  m.nccl = backend == "nccl";
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  try {
    c10d::TCPStoreOptions o = store_options();
    o.port = static_cast<std::uint16_t>(env.master_port);
    o.timeout = m.timeout;
    if (env.agent_store) {  // the launcher hosts the store; every rank is a client (torch.distributed.rendezvous)
      o.isServer = false;
      o.numWorkers = env.world_size;
      auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
      m.store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(env.restart_count), tcp);
    } else {  // rank 0 hosts it and waits for the others to connect
      o.isServer = env.rank == 0;
      o.numWorkers = env.world_size;
      o.waitWorkers = true;
      o.multiTenant = true;
      m.store_host = o.isServer;
      m.store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
    }
    c10d::TCPStoreOptions b = store_options();  // a second client of the same store, for the heartbeat thread
    b.port = static_cast<std::uint16_t>(env.master_port);
    b.timeout = m.timeout;
    b.isServer = false;  // and no numWorkers: it must not count as a worker joining
    auto beat_tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, b);
    m.beat_store = env.agent_store ? c10::intrusive_ptr<c10d::Store>(c10::make_intrusive<c10d::PrefixStore>(
                                         "/worker/attempt_" + std::to_string(env.restart_count), beat_tcp))
                                   : c10::intrusive_ptr<c10d::Store>(beat_tcp);
    m.start_beating(rank_);
  } catch (const std::exception& e) {
    throw UserError(kExitDistributed, "rank " + std::to_string(rank_) + " of " + std::to_string(world_) +
                                          ": cannot join the rendezvous store at " + where + " within dist.timeout = " +
                                          cfg.timeout + " (" + short_cause(e) +
                                          "); check MASTER_ADDR/MASTER_PORT and that every rank was started");
  }
  auto pg_store = c10::make_intrusive<c10d::PrefixStore>("default_pg", m.store);  // as init_process_group does
  try {
    if (m.nccl) {
#ifdef USE_C10D_NCCL
#ifdef GAN_WITH_CUDA
      c10::cuda::set_device(device.index());
#endif
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = m.timeout;
      m.pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(pg_store, rank_, world_, opts);
#endif
    } else {
#ifdef GAN_WITH_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create(m.timeout);
      // As torch.distributed does: GLOO_SOCKET_IFNAME names the interfaces, else this host's address (or loopback).
      if (const char* ifnames = getenv_nonempty("GLOO_SOCKET_IFNAME")) {
        std::string list = ifnames;
        for (size_t b = 0, e; b <= list.size(); b = e + 1) {
          e = list.find(',', b);
          if (e == std::string::npos) e = list.size();
          if (e > b) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(list.substr(b, e - b)));
        }
      }
      if (opts->devices.empty()) opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      opts->threads = 2;
      m.pg = c10::make_intrusive<c10d::ProcessGroupGloo>(pg_store, rank_, world_, opts);
#endif
    }
  } catch (const std::exception& e) {
    throw UserError(kExitDistributed, "rank " + std::to_string(rank_) + " of " + std::to_string(world_) +
                                          ": the " + backend_ + " process group did not form within dist.timeout = " +
                                          cfg.timeout + " (" + short_cause(e) + ")");
  }
  set_activity("joining the process group");
  barrier(m.timeout);
}

DistContext::~DistContext() { impl_->stop_beating(); }

std::string DistContext::describe() const {
  return "rank " + std::to_string(rank_) + " of " + std::to_string(world_) + " (" + backend_ + ", store " +
         impl_->env.master_addr + ":" + std::to_string(impl_->env.master_port) +
         (impl_->env.agent_store ? " hosted by the launcher" : impl_->store_host ? " hosted here" : "") + ")";
}

namespace {

// The ranks whose heartbeat stands still for `window` and that did not say they are leaving because of the failure
// (a rank that diagnosed it first may exit while this one looks), or {-1} when the store itself is gone.
std::vector<int> silent_ranks(c10d::Store& store, int rank, int world, Millis window) {
  auto leaving = [](int r) { return "gan/leaving/" + std::to_string(r); };
  try {
    store.set(leaving(rank), to_bytes("1"));
    auto read = [&] {
      std::vector<std::string> beats(world);
      for (int r = 0; r < world; ++r)
        if (store.check({beat_key(r)})) beats[r] = from_bytes(store.get(beat_key(r)));
      return beats;
    };
    const std::vector<std::string> before = read();
    std::this_thread::sleep_for(window);
    const std::vector<std::string> after = read();
    std::vector<int> silent;
    for (int r = 0; r < world; ++r)
      if (before[r] == after[r] && !store.check({leaving(r)})) silent.push_back(r);
    store.add("gan/diagnosed", 1);
    return silent;
  } catch (const std::exception&) {
    return {-1};
  }
}

}  // namespace

// Runs a collective; a failure becomes one line naming the rank(s) that stopped responding and the last checkpoint.
void DistContext::guard(const char* what, const std::function<void()>& f) {
  Impl& m = *impl_;
  try {
    f();
    return;
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    const std::string cause = short_cause(e);
    std::string msg;
    if (!m.failed) {
      m.failed = true;
      // A live rank's heartbeat moves every kBeat even while its main thread waits; ten beats tell.
      std::vector<int> silent = silent_ranks(*m.store, rank_, world_, 10 * kBeat);
      if (silent == std::vector<int>{-1}) {
        msg = m.env.agent_store ? "the launcher's rendezvous store at " + m.env.master_addr + ":" +
                                      std::to_string(m.env.master_port) + " is gone (did the launcher stop?)"
                                : "rank 0 stopped responding (it also hosted the rendezvous store)";
      } else if (!silent.empty()) {
        msg = std::string(silent.size() == 1 ? "rank " : "ranks ") + join_ranks(silent) + " of " +
              std::to_string(world_) + " stopped responding";
      } else {
        msg = std::string(what) + " failed on rank " + std::to_string(rank_);
      }
      if (m.store_host && silent != std::vector<int>{-1}) {
        // Keep the store up until every live rank has made its own diagnosis: they notice the failure when their own
        // collective fails, at the latest after dist.timeout.
        const std::int64_t live = world_ - static_cast<std::int64_t>(silent.size());
        const auto end = Clock::now() + m.timeout + 20 * kBeat;
        try {
          while (Clock::now() < end && m.store->add("gan/diagnosed", 0) < live)
            std::this_thread::sleep_for(Millis(100));
        } catch (const std::exception&) {
        }
      }
    } else {
      msg = std::string(what) + " failed on rank " + std::to_string(rank_);
    }
    throw UserError(kExitDistributed,
                    msg + " during " + what + (activity_.empty() ? "" : " (" + activity_ + ")") + ": " + cause +
                        "; the last checkpoint is " + (last_checkpoint_.empty() ? "none yet" : last_checkpoint_) +
                        ": restart every rank with --resume auto (torchrun --max_restarts does it by itself)");
  }
}

namespace {

// Collectives need tensors on the device the process group serves: NCCL's are CUDA tensors.
at::Tensor on_group_device(const DistContext::Impl& m, const at::Tensor& t) {
  return m.nccl && !t.is_cuda() ? t.to(m.device) : t;
}

}  // namespace

void DistContext::all_reduce_sum(at::Tensor& t, const char* what) {
  Impl& m = *impl_;
  guard(what, [&] {
    std::vector<at::Tensor> v{on_group_device(m, t)};
    m.pg->allreduce(v)->wait();
    if (!v[0].is_same(t)) t.copy_(v[0]);
  });
}

void DistContext::all_reduce_max(at::Tensor& t, const char* what) {
  Impl& m = *impl_;
  guard(what, [&] {
    std::vector<at::Tensor> v{on_group_device(m, t)};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::MAX;
    m.pg->allreduce(v, o)->wait();
    if (!v[0].is_same(t)) t.copy_(v[0]);
  });
}

void DistContext::broadcast(std::vector<at::Tensor>& tensors) {
  Impl& m = *impl_;
  guard("a broadcast from rank 0", [&] {
    torch::NoGradGuard no_grad;
    for (auto& t : tensors) {
      std::vector<at::Tensor> v{on_group_device(m, t.contiguous())};
      m.pg->broadcast(v)->wait();
      if (!v[0].is_same(t)) t.copy_(v[0]);
    }
  });
}

std::string DistContext::broadcast_bytes(const std::string& bytes) {
  at::Tensor size = torch::tensor({static_cast<std::int64_t>(bytes.size())}, torch::kLong);
  std::vector<at::Tensor> v{size};
  broadcast(v);
  const std::int64_t n = v[0].item<std::int64_t>();
  at::Tensor data = torch::empty({n}, torch::kUInt8);
  if (rank_ == 0 && n > 0) std::memcpy(data.data_ptr<std::uint8_t>(), bytes.data(), static_cast<size_t>(n));
  std::vector<at::Tensor> d{data};
  if (n > 0) broadcast(d);
  const at::Tensor out = d[0].cpu();
  return std::string(reinterpret_cast<const char*>(out.data_ptr<std::uint8_t>()), static_cast<size_t>(n));
}

void DistContext::barrier(Millis timeout) {
  Impl& m = *impl_;
  guard("a barrier", [&] {
    c10d::BarrierOptions o;
    o.timeout = timeout;
    if (m.nccl) o.device_ids = {m.device.index()};
    m.pg->barrier(o)->wait();
  });
}

int DistContext::local_rank() const { return impl_->env.local_rank; }
int DistContext::local_world_size() const { return impl_->env.local_world_size; }
const c10::Device& DistContext::device() const { return impl_->device; }

void DistContext::run_on_main(const std::string& what, const std::function<void()>& work) {
  Impl& m = *impl_;
  const std::string key = "gan/main/" + std::to_string(++main_turns_);
  const std::string saved_activity = activity_;
  set_activity(what);
  if (rank_ == 0) {  // its heartbeat thread keeps beating for the waiting ranks while this runs
    std::string outcome = "ok";
    std::exception_ptr error;
    try {
      work();
    } catch (const UserError& e) {
      outcome = "E" + std::to_string(static_cast<int>(e.code())) + " " + e.what();
      error = std::current_exception();
    } catch (const std::exception& e) {
      outcome = "E" + std::to_string(static_cast<int>(kExitInternal)) + " internal error: " + short_cause(e);
      error = std::current_exception();
    }
    guard("telling the other ranks", [&] { m.store->set(key, to_bytes(outcome)); });
    if (error) std::rethrow_exception(error);
    set_activity(saved_activity);
    return;
  }
  std::string last_beat;
  auto last_change = Clock::now();
  while (true) {
    bool done = false;
    std::string beat;
    guard(what.c_str(), [&] {
      done = m.store->check({key});
      if (!done && m.store->check({beat_key(0)})) beat = from_bytes(m.store->get(beat_key(0)));
    });
    if (done) {
      std::string outcome;
      guard(what.c_str(), [&] { outcome = from_bytes(m.store->get(key)); });
      if (outcome.size() > 1 && outcome[0] == 'E') {
        const auto space = outcome.find(' ');
        const int code = std::atoi(outcome.substr(1, space - 1).c_str());
        throw UserError(static_cast<ExitCode>(code), "stopping because rank 0 failed while " + what + ": " +
                                                          outcome.substr(space + 1));
      }
      set_activity(saved_activity);
      return;
    }
    if (beat != last_beat) {
      last_beat = beat;
      last_change = Clock::now();
    } else if (Clock::now() - last_change > m.timeout) {
      throw UserError(kExitDistributed, "rank 0 stopped responding while " + what + " (no sign of life for " +
                                            std::to_string(m.timeout.count() / 1000) + " s, dist.timeout); the last "
                                            "checkpoint is " + (last_checkpoint_.empty() ? "none yet" : last_checkpoint_) +
                                            ": restart every rank with --resume auto");
    }
    std::this_thread::sleep_for(Millis(20));
  }
}

AllReduceSum DistContext::sum_function() {
  return [this](at::Tensor& t) { all_reduce_sum(t, "BatchNorm's global statistics"); };
}

// ---- Gradient buckets ----

namespace {

struct Bucket {
  at::Tensor flat;                  // [numel]: the members' gradients back to back, each in its parameter's layout
  std::vector<size_t> members;      // indices into Net::params
  size_t pending = 0;               // members whose gradient has not arrived in this backward pass
  bool launched = false;
  WorkPtr work;
};

}  // namespace

struct GradientReducer::Net {
  std::vector<at::Tensor> params;
  std::vector<size_t> bucket_of;
  std::vector<std::int64_t> offset;  // in its bucket's flat tensor
  std::vector<char> arrived;
  std::vector<Bucket> buckets;
  size_t next = 0;                   // the next bucket to launch (they go out in order on every rank)
  bool armed = false;
  std::exception_ptr error;          // a launch that failed inside the backward pass
  std::mutex mu;

  at::Tensor slot(size_t i) {  // parameter i's gradient inside its bucket, with the parameter's shape and strides
    const at::Tensor& p = params[i];
    return buckets[bucket_of[i]].flat.narrow(0, offset[i], p.numel()).as_strided(p.sizes(), p.strides());
  }
};

GradientReducer::GradientReducer(DistContext& dist, const std::vector<at::Tensor>& d_params,
                                 const std::vector<at::Tensor>& g_params, double bucket_mb, bool overlap)
    : dist_(dist) {
  const double cap = bucket_mb * 1024 * 1024;
  for (int net = 0; net < 2; ++net) {
    nets_[net] = std::make_unique<Net>();
    Net& n = *nets_[net];
    for (const auto& p : net == 0 ? d_params : g_params)
      if (p.requires_grad()) n.params.push_back(p);
    n.bucket_of.resize(n.params.size());
    n.offset.resize(n.params.size());
    n.arrived.assign(n.params.size(), 0);
    // Last layer first: that is the order in which the backward pass produces the gradients.
    double bytes = cap;
    std::int64_t numel = 0;
    for (size_t k = n.params.size(); k-- > 0;) {
      const at::Tensor& p = n.params[k];
      TORCH_CHECK(p.is_non_overlapping_and_dense(), "GradientReducer: parameter ", k, " is not dense");
      const double size = static_cast<double>(p.numel() * p.element_size());
      if (n.buckets.empty() || bytes + size > cap || n.params[n.buckets.back().members.front()].dtype() != p.dtype()) {
        if (!n.buckets.empty()) n.buckets.back().flat = torch::empty({numel}, n.params[n.buckets.back().members.front()].options());
        n.buckets.emplace_back();
        bytes = 0;
        numel = 0;
      }
      n.bucket_of[k] = n.buckets.size() - 1;
      n.offset[k] = numel;
      n.buckets.back().members.push_back(k);
      numel += p.numel();
      bytes += size;
    }
    if (!n.buckets.empty()) n.buckets.back().flat = torch::empty({numel}, n.params[n.buckets.back().members.front()].options());
    for (auto& b : n.buckets) b.pending = b.members.size();
    (net == 0 ? figures_.buckets_d : figures_.buckets_g) = static_cast<int>(n.buckets.size());
    if (!overlap) continue;
    for (size_t k = 0; k < n.params.size(); ++k) {
      Net* np = &n;
      n.params[k].register_hook([this, np, k](const at::Tensor& grad) {
        std::lock_guard<std::mutex> lock(np->mu);
        if (!np->armed) return;
        torch::NoGradGuard no_grad;
        if (np->arrived[k]) {  // a second gradient for the same parameter in one pass: accumulate it
          np->slot(k).add_(grad);
          return;
        }
        np->slot(k).copy_(grad);
        np->arrived[k] = 1;
        Bucket& b = np->buckets[np->bucket_of[k]];
        if (--b.pending > 0) return;
        // Launch every complete bucket, in order.
        while (np->next < np->buckets.size() && np->buckets[np->next].pending == 0) {
          Bucket& ready = np->buckets[np->next++];
          std::vector<at::Tensor> v{ready.flat};
          try {
            ready.work = dist_.impl().pg->allreduce(v);
          } catch (const std::exception&) {  // reported by after_backward, outside the autograd engine
            np->error = std::current_exception();
          }
          ready.launched = true;
          figures_.bytes += ready.flat.numel() * ready.flat.element_size();
          ++figures_.reductions;
        }
      });
    }
  }
}

GradientReducer::~GradientReducer() = default;

void GradientReducer::before_backward(int net) {
  Net& n = *nets_[net];
  std::lock_guard<std::mutex> lock(n.mu);
  n.armed = true;
}

void GradientReducer::after_backward(int net) {
  Net& n = *nets_[net];
  std::lock_guard<std::mutex> lock(n.mu);
  n.armed = false;
  torch::NoGradGuard no_grad;
  const auto t0 = Clock::now();
  // Launch what the backward pass has not: every bucket without overlap, buckets with parameters that got no gradient.
  DistContext::Impl& m = dist_.impl();
  for (; n.next < n.buckets.size(); ++n.next) {
    Bucket& b = n.buckets[n.next];
    for (size_t k : b.members) {
      if (n.arrived[k]) continue;
      const at::Tensor& g = n.params[k].grad();
      if (g.defined()) n.slot(k).copy_(g);
      else n.slot(k).zero_();
    }
    dist_.guard("the gradient all-reduce", [&] {
      std::vector<at::Tensor> v{b.flat};
      b.work = m.pg->allreduce(v);
    });
    b.launched = true;
    figures_.bytes += b.flat.numel() * b.flat.element_size();
    ++figures_.reductions;
  }
  const double inv_world = 1.0 / dist_.world_size();
  for (auto& b : n.buckets) {
    dist_.guard("the gradient all-reduce", [&] {
      if (n.error) std::rethrow_exception(std::exchange(n.error, nullptr));
      b.work->wait();
    });
    b.work = WorkPtr();
    b.launched = false;
    b.pending = b.members.size();
    b.flat.mul_(inv_world);
    for (size_t k : b.members) {
      n.params[k].mutable_grad() = n.slot(k);  // a view into the bucket: the average over all ranks
      n.arrived[k] = 0;
    }
  }
  n.next = 0;
  figures_.wait_s += std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- Step vote ----

struct StepVote::State {
  bool lag = false;
  bool pending = false;
  at::Tensor host;  // [3] the previous step's flags, copied back without waiting (pinned on CUDA)
  std::unique_ptr<c10::Event> done;
};

StepVote::StepVote(DistContext& dist, bool lag_one_step) : dist_(dist), state_(std::make_unique<State>()) {
  state_->lag = lag_one_step;
}

StepVote::~StepVote() = default;

StepVote::Verdict StepVote::cast(at::Tensor& stats, int signal, bool out_of_time) {
  State& s = *state_;
  const std::int64_t n = stats.numel();
  const bool flags[3] = {signal == SIGINT, signal == SIGTERM, out_of_time};
  // Made on the device with fills (kernel launches): a copy from host memory would make the host wait for the
  // device's whole step here, every step (a blocking host-to-device copy synchronises the stream).
  at::Tensor mine = torch::zeros({3}, stats.options().dtype(torch::kFloat));  // [3]
  for (int i = 0; i < 3; ++i)
    if (flags[i]) mine[i].fill_(1.0);
  at::Tensor v = torch::cat({stats.to(torch::kFloat).reshape({-1}), mine});  // [n + 3]
  dist_.all_reduce_sum(v, "the step vote");
  stats = v.narrow(0, 0, n).div(dist_.world_size()).view(stats.sizes());  // the global batch's statistics
  const at::Tensor votes = v.narrow(0, n, 3);
  auto verdict_of = [](const at::Tensor& h) {
    Verdict out;
    out.known = true;
    const float* f = h.data_ptr<float>();
    out.sigint = static_cast<int>(f[0] + 0.5f);
    out.sigterm = static_cast<int>(f[1] + 0.5f);
    out.out_of_time = static_cast<int>(f[2] + 0.5f);
    return out;
  };
  if (!s.lag || !votes.is_cuda()) return verdict_of(votes.cpu());
  // CUDA: return the previous step's verdict (done long ago), then start copying this one back.
  Verdict previous;
  if (s.pending) {
    while (!s.done->query()) std::this_thread::yield();
    previous = verdict_of(s.host);
  }
  if (!s.host.defined()) s.host = torch::empty({3}, torch::TensorOptions().dtype(torch::kFloat).pinned_memory(true));
  if (!s.done) s.done = std::make_unique<c10::Event>(votes.device().type());
  s.host.copy_(votes, /*non_blocking=*/true);
  s.done->record(c10::impl::VirtualGuardImpl(votes.device().type()).getStream(votes.device()));
  s.pending = true;
  return previous;
}

std::uint64_t fingerprint(const std::vector<at::Tensor>& tensors) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the bytes, 8 at a time
  for (const auto& t : tensors) {
    const at::Tensor c = t.detach().cpu().contiguous();
    const auto* p = static_cast<const unsigned char*>(c.data_ptr());
    const size_t n = static_cast<size_t>(c.numel() * c.element_size());
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      std::uint64_t w;
      std::memcpy(&w, p + i, 8);
      h = (h ^ w) * 1099511628211ull;
    }
    for (; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  return h;
}

}  // namespace gan
