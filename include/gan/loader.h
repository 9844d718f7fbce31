// Shuffled, seeded batches from an ImageSource, assembled ahead of time on a background thread.
#pragma once
#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "gan/datasets.h"
#include "gan/loader_position.h"

namespace gan {

struct Batch {
  at::Tensor images;       // [B, C, S, S] float in [-1, 1], CPU (this process's B rows of a sharded batch)
  at::Tensor labels;       // [B] int64 class indices when the source has labels, else undefined
  LoaderPosition after;    // position once this batch is consumed (store it in checkpoints)
};

// out[i] = in[i] / 127.5 - 1 in float, bit-identical to torch's `x.to(kFloat).div_(127.5).sub_(1.0)`; vectorised.
void bytes_to_unit_range(const std::uint8_t* in, float* out, std::size_t n);

class BatchLoader {
 public:
  // Epoch e's order is a permutation drawn from (seed, e), so any position can be resumed exactly.
  // The last incomplete batch of an epoch is dropped. Files that fail to decode are replaced by the next ones.
  // With `pin_memory` (CUDA training) batches are in page-locked memory, so the copy to the GPU is asynchronous.
  // With `shards` > 1 (a distributed run) every batch is still assembled whole, files that fail to decode replaced as
  // in one process, and this loader hands out rows [shard * B / shards, (shard + 1) * B / shards) of it: the
  // position and the epoch order are those of the global batch, whatever the number of processes.
  // With `xflip` (data.xflip) each image is mirrored left-right when a hash of (seed, epoch, its place in the epoch's
  // order) says so, half of the time: the same on resume and for any number of processes.
  BatchLoader(ImageSource& source, int batch_size, std::uint64_t seed, LoaderPosition start, int workers,
              int prefetch = 3, bool pin_memory = false, int shard = 0, int shards = 1, bool xflip = false);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The next batch (blocks until ready). Throws UserError(kExitData) if an entire epoch yields no batch.
  Batch next();
  std::int64_t batches_per_epoch() const;

  static std::vector<std::int64_t> epoch_order(std::int64_t n, std::uint64_t seed, std::int64_t epoch);
  // Whether data.xflip mirrors the image at `place` of epoch `epoch`'s order.
  static bool mirrored(std::uint64_t seed, std::int64_t epoch, std::int64_t place);

 private:
  void produce();
  bool fill(std::vector<std::int64_t>& order, LoaderPosition& pos, Batch& out);

  ImageSource& source_;
  const int batch_size_;
  const std::uint64_t seed_;
  const int workers_;
  const size_t prefetch_;
  const bool pin_memory_;
  const int shard_, shards_;
  const bool xflip_;
  LoaderPosition start_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace gan
