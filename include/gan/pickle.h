// What torch.save writes, read without Python and without running anything from the file: Python's pickle format
// (the opcodes of protocols 0-5 that pickling dicts, lists, tuples, numbers, strings and tensors produces) turned into
// a tree of values, with torch's tensor-rebuild calls turned into references to storages. Both of torch.save's
// layouts: the zip archive of PyTorch >= 1.6 (the caller reads its data.pkl and data/<key> records) and the older
// "legacy" stream (PyTorch < 1.6, or _use_new_zipfile_serialization=False), which parse_legacy takes apart here.
// Needs no LibTorch (so it is fuzzed on its own: tests/fuzz/pickle_fuzz.cpp); src/io/weights.cpp makes the tensors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gan::pickle {

// Malformed, truncated or unsupported input: what() says what and where (byte offset).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A node of the tree. Nodes are owned by Parsed::arena and point at each other (a pickle may share one object in
// several places, or even make a list that holds itself), so a tree is walked with care for depth, never recursively.
struct Value;
using ValuePtr = const Value*;

struct Value {
  enum class Kind { None, Bool, Int, BigInt, Float, String, Tuple, List, Dict, Global, Object, Storage, Tensor };
  Kind kind = Kind::None;
  bool boolean = false;
  std::int64_t integer = 0;  // Int; Storage: the number of elements; Tensor: the storage offset, in elements
  double number = 0;
  // String: the text (or bytes); BigInt: the little-endian two's complement bytes; Global: "module.name"; Object:
  // what made it ("module.name(...)"); Storage and Tensor: the storage's key.
  std::string text;
  std::vector<Value*> items;                           // Tuple, List
  std::vector<std::pair<Value*, Value*>> entries;      // Dict, in insertion order
  std::string storage_type;  // Storage: its type ("FloatStorage", ...); Tensor: the type of its elements' dtype
  std::vector<std::int64_t> sizes, strides;            // Tensor, in elements
};

// A storage that the pickle refers to: its type (torch's class name, e.g. "FloatStorage"), the device it was saved
// from ("cpu", "cuda:0": the bytes are the same) and its length in elements.
struct Storage {
  std::string type;
  std::string location;
  std::int64_t numel = 0;
};

struct Parsed {
  std::vector<std::unique_ptr<Value>> arena;  // owns every node
  ValuePtr root = nullptr;
  std::map<std::string, Storage> storages;  // by key, every storage a tensor in `root` refers to
};

// One pickle starting at bytes[*pos]; *pos ends just past its STOP. Tensors are checked against their storage's
// length (every element they address lies inside it).
Parsed parse(std::string_view bytes, std::size_t* pos);

// torch.save's legacy stream: magic number, protocol 1001, system info (little-endian only), the object, the list of
// storage keys, then each storage's element count (int64) and bytes. `data` gives each storage's bytes as
// (offset, length) in `bytes`, checked to lie inside it.
struct Legacy {
  Parsed pickle;
  std::map<std::string, std::pair<std::size_t, std::size_t>> data;
};
Legacy parse_legacy(std::string_view bytes);
// Whether `bytes` starts like a legacy stream (a pickle whose first value is the magic number).
bool looks_legacy(std::string_view bytes);

// Bytes per element of a storage type ("FloatStorage" -> 4), 0 for one this reader does not know.
std::size_t element_size(const std::string& storage_type);

// "a dict", "the integer 3", "torch._utils._rebuild_qtensor(...)": for messages.
std::string describe(const Value& v);

}  // namespace gan::pickle
