// libFuzzer target for the torch.save reader (src/io/pickle.cpp): the files that --init-from, gan-sample --checkpoint
// and --latents take from other tools. Build and run with scripts/fuzz.sh.
//
// Input: a file's bytes, read as torch.save's legacy stream when it starts like one, else as one pickle (the data.pkl
// of the zip layout).
// Contract checked: every bad input ends in gan::pickle::Error (any other exception propagates and libFuzzer reports
// it; crashes, hangs, leaks and sanitizer reports are findings too), and what is accepted keeps the promises that
// weights.cpp relies on: every tensor names a storage the result lists, of a known element size, and addresses only
// elements inside it; legacy data ranges lie inside the input. A broken promise abort()s so libFuzzer saves the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "gan/pickle.h"

namespace {

using gan::pickle::Value;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "broken promise: %s\n", what);
    std::abort();
  }
}

// Visits every node once (a pickle may share nodes or make cycles) and checks each tensor against its storage.
void check_tree(const gan::pickle::Parsed& p) {
  check(p.root != nullptr, "no root");
  std::vector<const Value*> pending{p.root};
  std::unordered_set<const Value*> seen;
  while (!pending.empty()) {
    const Value* v = pending.back();
    pending.pop_back();
    if (!seen.insert(v).second) continue;
    (void)gan::pickle::describe(*v);
    if (v->kind == Value::Kind::Tensor) {
      auto it = p.storages.find(v->text);
      check(it != p.storages.end(), "a tensor of an unlisted storage");
      const std::size_t esize = gan::pickle::element_size(v->storage_type);
      const std::size_t ssize = gan::pickle::element_size(it->second.type);
      check(esize > 0 && ssize > 0, "a tensor of an unknown element size");
      check(v->sizes.size() == v->strides.size(), "size and stride of different lengths");
      unsigned __int128 last = static_cast<std::uint64_t>(v->integer);
      bool empty = false;
      for (std::size_t i = 0; i < v->sizes.size(); ++i) {
        check(v->sizes[i] >= 0 && v->strides[i] >= 0, "a negative size or stride");
        if (v->sizes[i] == 0) empty = true;
        else last += static_cast<unsigned __int128>(v->sizes[i] - 1) * static_cast<std::uint64_t>(v->strides[i]);
      }
      check(empty || (last + 1) * esize <= static_cast<unsigned __int128>(it->second.numel) * ssize,
            "a tensor past the end of its storage");
    }
    for (const Value* x : v->items) pending.push_back(x);
    for (const auto& [k, x] : v->entries) pending.push_back(k), pending.push_back(x);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    if (gan::pickle::looks_legacy(bytes)) {
      const gan::pickle::Legacy l = gan::pickle::parse_legacy(bytes);
      check_tree(l.pickle);
      for (const auto& [key, at] : l.data) {
        check(at.first <= size && at.second <= size - at.first, "legacy data outside the input");
        check(l.pickle.storages.count(key) == 1, "legacy data of an unlisted storage");
      }
    } else {
      std::size_t pos = 0;
      const gan::pickle::Parsed p = gan::pickle::parse(bytes, &pos);
      check(pos <= size, "parse ended past the input");
      check_tree(p);
    }
  } catch (const gan::pickle::Error&) {
    // Expected: a clean rejection that weights.cpp turns into one line naming the file.
  }
  return 0;
}
