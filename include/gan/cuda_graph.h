// A CUDA graph of one callable, captured and replayed on a side stream of its own: the CUDA-only part of
// train.cuda_graphs (GanStep decides what to capture and when). Compiled with CUDA where the LibTorch has it; in a
// build without CUDA, constructing one throws.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <memory>

namespace gan {

class CudaGraph {
 public:
  explicit CudaGraph(const c10::Device& device);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  // True when this build has CUDA.
  static bool compiled();
  // Runs `fn` on the side stream, after the work queued on the current stream; the current stream then waits for it.
  void on_side_stream(const std::function<void()>& fn);
  // Records the kernels `fn` launches without running them (on the side stream, with autocast's weight cache off).
  // The capture is thread-local: other threads may go on calling CUDA (pinning the next batch) meanwhile.
  // If `fn` throws, the capture is ended and discarded and the error rethrown.
  void capture(const std::function<void()>& fn);
  // Runs the recorded kernels once (on the side stream, ordered like on_side_stream).
  void replay();
  // The device's default CUDA generator state, so that an eager run can draw what a replay drew.
  at::Tensor rng_state() const;
  void set_rng_state(const at::Tensor& state);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gan
