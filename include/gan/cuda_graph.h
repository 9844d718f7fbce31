// A CUDA graph of one callable, captured and replayed on a side stream of its own: the CUDA-only part of
// train.cuda_graphs (GanStep decides what to capture and when). Compiled with CUDA where the LibTorch has it; in a
// build without CUDA, constructing one for a CUDA device throws.
//
// For tests, a host stand-in (set_host_stand_in) lets GanStep's graph logic run on the CPU: "capture" keeps the
// callable without running it and each "replay" calls it again, with replaying() true so that host bookkeeping a
// real replay would not do (DeviceAdam's host step counts) is skipped. It cannot show values frozen into a real
// graph (tests/test_cuda_graph.cpp checks the capturable form for that); the programs never turn it on.
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
  // Whether a graph can be made for `device`: a CUDA device in a CUDA build, or any device with the host stand-in.
  static bool available(const c10::Device& device);
  static void set_host_stand_in(bool on);
  // True on the thread that runs a stand-in replay, while it runs (never during a real replay: it runs no host code).
  static bool replaying();
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
