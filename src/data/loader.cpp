#include "gan/loader.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <cstring>
#include <random>

#include "gan/errors.h"

namespace gan {

void bytes_to_unit_range(const std::uint8_t* in, float* out, std::size_t n) {
  // A plain loop the compiler vectorises; x / 127.5f - 1.0f rounds exactly like torch's div_(127.5).sub_(1.0).
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]) / 127.5f - 1.0f;
}

BatchLoader::BatchLoader(ImageSource& source, int batch_size, std::uint64_t seed, LoaderPosition start, int workers,
                         int prefetch, bool pin_memory, int shard, int shards, bool xflip)
    : source_(source), batch_size_(batch_size), seed_(seed),
      workers_(std::max(1, workers > 0 ? workers : static_cast<int>(std::thread::hardware_concurrency()))),
      prefetch_(static_cast<size_t>(std::max(1, prefetch))), pin_memory_(pin_memory), shard_(shard),
      shards_(std::max(1, shards)), xflip_(xflip), start_(start) {
  TORCH_CHECK(batch_size_ % shards_ == 0 && shard_ >= 0 && shard_ < shards_, "BatchLoader: batch ", batch_size_,
              " cannot be split into ", shards_, " shards");
  if (source_.size() < batch_size_)
    throw UserError(kExitData, "the dataset has " + std::to_string(source_.size()) +
                                   " images, fewer than train.batch_size = " + std::to_string(batch_size_) +
                                   "; lower the batch size or add images");
  thread_ = std::thread([this] { produce(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool BatchLoader::mirrored(std::uint64_t seed, std::int64_t epoch, std::int64_t place) {
  std::uint64_t z = seed * 0x9e3779b97f4a7c15ull ^ static_cast<std::uint64_t>(epoch) * 0xbf58476d1ce4e5b9ull ^
                    static_cast<std::uint64_t>(place) * 0x94d049bb133111ebull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;  // splitmix64's finaliser
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return ((z ^ (z >> 31)) >> 17) & 1u;
}

std::int64_t BatchLoader::batches_per_epoch() const { return source_.size() / batch_size_; }

std::vector<std::int64_t> BatchLoader::epoch_order(std::int64_t n, std::uint64_t seed, std::int64_t epoch) {
  std::vector<std::int64_t> order(static_cast<size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) order[i] = i;
  std::seed_seq seq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                    static_cast<std::uint32_t>(epoch), static_cast<std::uint32_t>(epoch >> 32), 0x5eedu};
  std::mt19937_64 rng(seq);
  // Fisher-Yates with our own index draw: std::shuffle's output differs between standard libraries.
  for (std::int64_t i = n - 1; i > 0; --i) {
    std::int64_t j = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

// Assembles one batch from `order` starting at pos.cursor. Returns false when the epoch runs out first.
bool BatchLoader::fill(std::vector<std::int64_t>& order, LoaderPosition& pos, Batch& out) {
  const std::int64_t n = static_cast<std::int64_t>(order.size());
  const std::int64_t c = source_.channels(), s = source_.image_size();
  const size_t per = static_cast<size_t>(c * s * s);
  std::unique_ptr<std::uint8_t[]> bytes(new std::uint8_t[static_cast<size_t>(batch_size_) * per]);
  std::uint8_t* dst = bytes.get();
  std::int64_t filled = 0;
  std::vector<char> ok;
  const bool labelled = source_.num_classes() > 0;
  std::vector<std::int64_t> labels(labelled ? static_cast<size_t>(batch_size_) : 0);
  while (filled < batch_size_) {
    const std::int64_t want = batch_size_ - filled;
    if (n - pos.cursor < want) return false;
    // Decode straight into the free slots, then close the gaps that undecodable files left.
    ok.assign(static_cast<size_t>(want), 0);
    const std::int64_t first = pos.cursor;
    // Each thread takes the next image as it finishes one (a static split waits for the slowest core; on shared
    // vCPUs one is often slower). Slot k is fixed, so the batch does not depend on which thread decoded what.
    std::atomic<std::int64_t> next{0};
    auto work = [&] {
      for (std::int64_t k = next++; k < want; k = next++) ok[k] = source_.load(order[first + k], dst + (filled + k) * per);
    };
    const std::int64_t threads = source_.in_memory() ? 1 : std::min<std::int64_t>(workers_, want);
    std::vector<std::thread> pool;
    for (std::int64_t t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
    pos.cursor += want;
    std::int64_t w = filled;
    for (std::int64_t k = 0; k < want; ++k) {
      if (!ok[k]) continue;
      if (w != filled + k) std::memmove(dst + w * per, dst + (filled + k) * per, per);
      if (xflip_ && mirrored(seed_, pos.epoch, first + k))
        for (std::uint8_t* row = dst + w * per; row < dst + (w + 1) * per; row += s) std::reverse(row, row + s);
      if (labelled) labels[static_cast<size_t>(w)] = source_.label(order[first + k]);
      ++w;
    }
    filled = w;
  }
  const std::int64_t rows = batch_size_ / shards_, first_row = shard_ * rows;  // this shard's rows
  out.images = torch::empty({rows, c, s, s},  // [B / shards, C, S, S] in [-1, 1]
                            torch::TensorOptions().dtype(torch::kFloat).pinned_memory(pin_memory_));
  bytes_to_unit_range(dst + first_row * per, out.images.data_ptr<float>(), static_cast<size_t>(rows) * per);
  if (labelled)
    out.labels = torch::from_blob(labels.data() + first_row, {rows}, torch::kLong).clone();  // [B / shards]
  out.after = pos;
  return true;
}

void BatchLoader::produce() {
  try {
    LoaderPosition pos = start_;
    auto order = epoch_order(source_.size(), seed_, pos.epoch);
    bool got_one_this_epoch = pos.cursor > 0;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || queue_.size() < prefetch_; });
        if (stop_) return;
      }
      Batch b;
      const bool complete = fill(order, pos, b);
      source_.check_health();
      if (!complete) {
        if (!got_one_this_epoch)
          throw UserError(kExitData, "no batch of " + std::to_string(batch_size_) +
                                         " decodable images in a whole epoch (" +
                                         std::to_string(source_.bad_count()) + " bad files); check the dataset");
        pos.epoch += 1;
        pos.cursor = 0;
        order = epoch_order(source_.size(), seed_, pos.epoch);
        got_one_this_epoch = false;
        continue;
      }
      got_one_this_epoch = true;
      {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(std::move(b));
      }
      cv_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = std::current_exception();
    cv_.notify_all();
  }
}

Batch BatchLoader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || error_; });
  if (queue_.empty()) std::rethrow_exception(error_);
  Batch b = std::move(queue_.front());
  queue_.pop_front();
  cv_.notify_all();
  return b;
}

}  // namespace gan
