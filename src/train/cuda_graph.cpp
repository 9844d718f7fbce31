#include "gan/cuda_graph.h"

#include <stdexcept>

#ifdef GAN_WITH_CUDA  // set by CMakeLists.txt when the LibTorch has CUDA (Debian's has no CUDA headers)
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <mutex>

namespace gan {

struct CudaGraph::Impl {
  c10::DeviceIndex index;
  c10::cuda::CUDAStream side;
  at::cuda::CUDAGraph graph;
};

CudaGraph::CudaGraph(const c10::Device& device) {
  TORCH_CHECK(device.is_cuda(), "CudaGraph needs a CUDA device, not ", device.str());
  const c10::DeviceIndex index = device.has_index() ? device.index() : c10::cuda::current_device();
  impl_.reset(new Impl{index, c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index), {}});
}

CudaGraph::~CudaGraph() = default;

bool CudaGraph::compiled() { return true; }

void CudaGraph::on_side_stream(const std::function<void()>& fn) {
  c10::cuda::CUDAGuard device_guard(impl_->index);
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(impl_->index);
  at::cuda::CUDAEvent queued;
  queued.record(current);
  queued.block(impl_->side);
  {
    c10::cuda::CUDAStreamGuard guard(impl_->side);
    fn();
  }
  at::cuda::CUDAEvent done;
  done.record(impl_->side);
  done.block(current);
}

void CudaGraph::capture(const std::function<void()>& fn) {
  on_side_stream([&] {
    const bool cache = at::autocast::is_autocast_cache_enabled();
    at::autocast::set_autocast_cache_enabled(false);  // cached casts would outlive the capture's memory pool
    // Thread-local capture mode: the loader thread keeps preparing pinned batches meanwhile, and its host
    // allocator's cudaHostAlloc/cudaEventQuery are "unsafe during capture" calls that the default (global) mode
    // refuses in every thread of the process, so the batch being prepared would fail. Unsafe calls in
    // the capturing thread itself (a sync inside the step) are still refused, which is what the capture must catch.
    impl_->graph.capture_begin(/*pool=*/{0, 0}, cudaStreamCaptureModeThreadLocal);
    try {
      fn();
    } catch (...) {
      try {
        impl_->graph.capture_end();
      } catch (...) {  // the capture was invalidated by what failed: ending it is all that is left to do
      }
      impl_->graph.reset();
      at::autocast::set_autocast_cache_enabled(cache);
      throw;
    }
    impl_->graph.capture_end();
    at::autocast::set_autocast_cache_enabled(cache);
  });
}

void CudaGraph::replay() {
  on_side_stream([&] { impl_->graph.replay(); });
}

at::Tensor CudaGraph::rng_state() const {
  at::Generator gen = at::cuda::detail::getDefaultCUDAGenerator(impl_->index);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void CudaGraph::set_rng_state(const at::Tensor& state) {
  at::Generator gen = at::cuda::detail::getDefaultCUDAGenerator(impl_->index);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

}  // namespace gan

#else  // a LibTorch without CUDA

namespace gan {

struct CudaGraph::Impl {};

CudaGraph::CudaGraph(const c10::Device&) {
  throw std::runtime_error("CUDA graphs need a build against a LibTorch with CUDA");
}
CudaGraph::~CudaGraph() = default;
bool CudaGraph::compiled() { return false; }
void CudaGraph::on_side_stream(const std::function<void()>& fn) { fn(); }
void CudaGraph::capture(const std::function<void()>&) {}
void CudaGraph::replay() {}
at::Tensor CudaGraph::rng_state() const { return {}; }
void CudaGraph::set_rng_state(const at::Tensor&) {}

}  // namespace gan

#endif
