// Where the batch loader is in the data, as checkpoints keep it (a plain value: the checkpoint code needs no loader).
#pragma once
#include <cstdint>

namespace gan {

// `cursor` images of epoch `epoch`'s order have been consumed.
struct LoaderPosition {
  std::int64_t epoch = 0;
  std::int64_t cursor = 0;
};

}  // namespace gan
