#include "gan/cuda_graph.h"

#include <ATen/core/grad_mode.h>

#include <atomic>
#include <stdexcept>

#include "gan/snapshot.h"

namespace gan {
namespace {
std::atomic<bool> g_host_stand_in{false};
thread_local bool t_replaying = false;

// The host stand-in (tests): the kept callable, called again by every replay.
struct StandIn {
  std::function<void()> recorded;
  bool grad_mode = true;  // the autograd mode of the capture, which a real graph's kernels carry
  void capture(const std::function<void()>& fn) {
    recorded = fn;
    grad_mode = at::GradMode::is_enabled();
  }
  void replay() {
    TORCH_CHECK(recorded, "CudaGraph stand-in: replay before capture");
    struct Flag {
      Flag() { t_replaying = true; }
      ~Flag() { t_replaying = false; }
    } flag;
    at::AutoGradMode mode(grad_mode);
    recorded();
  }
};
}  // namespace

void CudaGraph::set_host_stand_in(bool on) { g_host_stand_in = on; }
bool CudaGraph::replaying() { return t_replaying; }
bool CudaGraph::available(const c10::Device& device) { return device.is_cuda() ? compiled() : g_host_stand_in.load(); }

}  // namespace gan

#ifdef GAN_WITH_CUDA  // set by CMakeLists.txt when the LibTorch has CUDA (Debian's has no CUDA headers)
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>


namespace gan {

struct CudaGraph::Impl {
  struct Cuda {
    c10::DeviceIndex index;
    c10::cuda::CUDAStream side;
    at::cuda::CUDAGraph graph;
  };
  c10::Device device{c10::kCPU};
  std::unique_ptr<Cuda> cuda;  // null: the host stand-in
  StandIn stand_in;
};

CudaGraph::CudaGraph(const c10::Device& device) : impl_(new Impl) {
  impl_->device = device;
  if (!device.is_cuda()) {
    TORCH_CHECK(g_host_stand_in, "CudaGraph needs a CUDA device, not ", device.str());
    return;
  }
  const c10::DeviceIndex index = device.has_index() ? device.index() : c10::cuda::current_device();
  impl_->device = c10::Device(c10::kCUDA, index);
  impl_->cuda.reset(new Impl::Cuda{index, c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index), {}});
}

CudaGraph::~CudaGraph() = default;

bool CudaGraph::compiled() { return true; }

void CudaGraph::on_side_stream(const std::function<void()>& fn) {
  if (!impl_->cuda) return fn();
  Impl::Cuda& c = *impl_->cuda;
  c10::cuda::CUDAGuard device_guard(c.index);
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(c.index);
  at::cuda::CUDAEvent queued;
  queued.record(current);
  queued.block(c.side);
  {
    c10::cuda::CUDAStreamGuard guard(c.side);
    fn();
  }
  at::cuda::CUDAEvent done;
  done.record(c.side);
  done.block(current);
}

void CudaGraph::capture(const std::function<void()>& fn) {
  if (!impl_->cuda) return impl_->stand_in.capture(fn);
  at::cuda::CUDAGraph& graph = impl_->cuda->graph;
  on_side_stream([&] {
    const bool cache = at::autocast::is_autocast_cache_enabled();
    at::autocast::set_autocast_cache_enabled(false);  // cached casts would outlive the capture's memory pool
    // Thread-local capture mode: the loader thread keeps preparing pinned batches meanwhile, and its host
    // allocator's cudaHostAlloc/cudaEventQuery are "unsafe during capture" calls that the default (global) mode
    // refuses in every thread of the process, so the batch being prepared would fail. Unsafe calls in
    // the capturing thread itself (a sync inside the step) are still refused, which is what the capture must catch.
    graph.capture_begin(/*pool=*/{0, 0}, cudaStreamCaptureModeThreadLocal);
    try {
      fn();
    } catch (...) {
      try {
        graph.capture_end();
      } catch (...) {  // the capture was invalidated by what failed: ending it is all that is left to do
      }
      graph.reset();
      at::autocast::set_autocast_cache_enabled(cache);
      throw;
    }
    graph.capture_end();
    at::autocast::set_autocast_cache_enabled(cache);
  });
}

void CudaGraph::replay() {
  if (!impl_->cuda) return impl_->stand_in.replay();
  on_side_stream([&] { impl_->cuda->graph.replay(); });
}

at::Tensor CudaGraph::rng_state() const { return generator_state(impl_->device); }
void CudaGraph::set_rng_state(const at::Tensor& state) { set_generator_state(impl_->device, state); }

}  // namespace gan

#else  // a LibTorch without CUDA

namespace gan {

struct CudaGraph::Impl {
  c10::Device device{c10::kCPU};
  StandIn stand_in;
};

CudaGraph::CudaGraph(const c10::Device& device) {
  if (device.is_cuda() || !g_host_stand_in)
    throw std::runtime_error("CUDA graphs need a build against a LibTorch with CUDA");
  impl_.reset(new Impl{device, {}});
}
CudaGraph::~CudaGraph() = default;
bool CudaGraph::compiled() { return false; }
void CudaGraph::on_side_stream(const std::function<void()>& fn) { fn(); }
void CudaGraph::capture(const std::function<void()>& fn) { impl_->stand_in.capture(fn); }
void CudaGraph::replay() { impl_->stand_in.replay(); }
at::Tensor CudaGraph::rng_state() const { return generator_state(impl_->device); }
void CudaGraph::set_rng_state(const at::Tensor& state) { set_generator_state(impl_->device, state); }

}  // namespace gan

#endif
