#include "gan/pickle.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

namespace gan::pickle {
namespace {

// What torch's tensor classes and dtypes are called in a pickle, and their element sizes.
const std::map<std::string, std::size_t>& storage_sizes() {
  static const std::map<std::string, std::size_t> m{
      {"FloatStorage", 4}, {"DoubleStorage", 8}, {"HalfStorage", 2},          {"BFloat16Storage", 2},
      {"LongStorage", 8},  {"IntStorage", 4},    {"ShortStorage", 2},         {"CharStorage", 1},
      {"ByteStorage", 1},  {"BoolStorage", 1},   {"ComplexFloatStorage", 8},  {"ComplexDoubleStorage", 16},
      {"UntypedStorage", 1}};
  return m;
}

// _rebuild_tensor_v3 names the dtype (torch.float32, ...) rather than a typed storage.
std::string storage_of_dtype(const std::string& dtype) {
  static const std::map<std::string, std::string> m{
      {"float32", "FloatStorage"},   {"float", "FloatStorage"},  {"float64", "DoubleStorage"},
      {"double", "DoubleStorage"},   {"float16", "HalfStorage"}, {"half", "HalfStorage"},
      {"bfloat16", "BFloat16Storage"}, {"int64", "LongStorage"}, {"long", "LongStorage"},
      {"int32", "IntStorage"},       {"int", "IntStorage"},      {"int16", "ShortStorage"},
      {"short", "ShortStorage"},     {"int8", "CharStorage"},    {"uint8", "ByteStorage"},
      {"bool", "BoolStorage"},       {"complex64", "ComplexFloatStorage"}, {"cfloat", "ComplexFloatStorage"},
      {"complex128", "ComplexDoubleStorage"}, {"cdouble", "ComplexDoubleStorage"}};
  auto it = m.find(dtype);
  return it == m.end() ? std::string() : it->second;
}

using K = Value::Kind;

class Machine {
 public:
  Machine(std::string_view bytes, std::size_t pos, Parsed& out) : b_(bytes), pos_(pos), out_(out) {}

  std::size_t run() {
    for (;;) {
      if (pos_ >= b_.size()) fail("the pickle ends before its STOP (truncated file?)");
      op_at_ = pos_;
      const unsigned char op = static_cast<unsigned char>(b_[pos_++]);
      switch (op) {
        case 0x80: take(1); break;  // PROTO
        case 0x95: take(8); break;  // FRAME: a length hint
        case '.':                   // STOP
          if (stack_.size() != 1)
            fail("the pickle stops with " + std::to_string(stack_.size()) + " values on its stack");
          out_.root = stack_.back();
          return pos_;
        case '(': marks_.push_back(stack_.size()); break;
        case '0': pop(); break;
        case '1': pop_mark(); break;
        case '2': push(top()); break;
        case 'N': push(make(K::None)); break;
        case 0x88: push(boolean(true)); break;
        case 0x89: push(boolean(false)); break;
        case 'I': {  // INT: text; "01"/"00" are True/False in protocol 0
          const std::string line = readline();
          if (line == "01" || line == "00") push(boolean(line == "01"));
          else push(integer(parse_int(line)));
          break;
        }
        case 'L': {  // LONG: text, optionally ending in L
          std::string line = readline();
          if (!line.empty() && line.back() == 'L') line.pop_back();
          push(integer(parse_int(line)));
          break;
        }
        case 'J': push(integer(static_cast<std::int32_t>(le(4)))); break;
        case 'K': push(integer(static_cast<std::int64_t>(le(1)))); break;
        case 'M': push(integer(static_cast<std::int64_t>(le(2)))); break;
        case 0x8a: push(long_int(le(1))); break;                  // LONG1
        case 0x8b: push(long_int(length(le(4), true))); break;    // LONG4
        case 'F': {
          const std::string line = readline();
          char* end = nullptr;
          errno = 0;
          const double d = std::strtod(line.c_str(), &end);
          if (line.empty() || *end != '\0' || errno == ERANGE) fail("bad FLOAT '" + line + "'");
          Value* v = make(K::Float);
          v->number = d;
          push(v);
          break;
        }
        case 'G': {  // BINFLOAT: big-endian double
          const std::string_view s = take(8);
          std::uint64_t u = 0;
          for (char c : s) u = (u << 8) | static_cast<unsigned char>(c);
          Value* v = make(K::Float);
          std::memcpy(&v->number, &u, 8);
          push(v);
          break;
        }
        case 'S': {  // STRING: a quoted repr, taken without its quotes
          std::string line = readline();
          if (line.size() < 2 || (line[0] != '\'' && line[0] != '"') || line.back() != line[0])
            fail("bad STRING " + line.substr(0, 40));
          push(string(line.substr(1, line.size() - 2)));
          break;
        }
        case 'V': push(string(readline())); break;                        // UNICODE (raw text)
        case 'T': push(string(take(length(le(4), true)))); break;         // BINSTRING
        case 'U': push(string(take(le(1)))); break;                       // SHORT_BINSTRING
        case 'X': push(string(take(length(le(4), false)))); break;        // BINUNICODE
        case 0x8c: push(string(take(le(1)))); break;                      // SHORT_BINUNICODE
        case 0x8d: push(string(take(length(le(8), false)))); break;       // BINUNICODE8
        case 'B': push(string(take(length(le(4), false)))); break;        // BINBYTES
        case 'C': push(string(take(le(1)))); break;                       // SHORT_BINBYTES
        case 0x8e: case 0x96: push(string(take(length(le(8), false)))); break;  // BINBYTES8, BYTEARRAY8
        case ')': push(make(K::Tuple)); break;
        case 't': push(sequence(K::Tuple, pop_mark())); break;
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          const std::size_t n = op - 0x84u;
          need(n);
          std::vector<Value*> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
          stack_.resize(stack_.size() - n);
          push(sequence(K::Tuple, std::move(items)));
          break;
        }
        case ']': push(make(K::List)); break;
        case 'l': push(sequence(K::List, pop_mark())); break;
        case 0x8f: push(make(K::List)); break;  // EMPTY_SET: kept as a list
        case 0x91: push(sequence(K::List, pop_mark())); break;  // FROZENSET
        case 'a': {
          Value* x = pop();
          list_target(top())->items.push_back(x);
          break;
        }
        case 'e': case 0x90: {  // APPENDS, ADDITEMS
          std::vector<Value*> xs = pop_mark();
          Value* l = list_target(top());
          l->items.insert(l->items.end(), xs.begin(), xs.end());
          break;
        }
        case '}': push(make(K::Dict)); break;
        case 'd': {
          std::vector<Value*> xs = pop_mark();
          Value* d = make(K::Dict);
          set_items(d, xs);
          push(d);
          break;
        }
        case 's': {
          Value* v = pop();
          Value* k = pop();
          dict_target(top())->entries.emplace_back(k, v);
          break;
        }
        case 'u': {
          std::vector<Value*> xs = pop_mark();
          set_items(dict_target(top()), xs);
          break;
        }
        case 'c': {  // GLOBAL module\nname\n
          std::string module = readline();
          std::string name = readline();
          push(global(module + "." + name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Value* name = pop();
          Value* module = pop();
          if (module->kind != K::String || name->kind != K::String) fail("STACK_GLOBAL without two strings");
          push(global(module->text + "." + name->text));
          break;
        }
        case 'R': {
          Value* args = pop();
          Value* f = pop();
          push(call(f, args));
          break;
        }
        case 0x81: {  // NEWOBJ cls args
          Value* args = pop();
          Value* cls = pop();
          push(call(cls, args));
          break;
        }
        case 0x92: {  // NEWOBJ_EX cls args kwargs
          pop();
          Value* args = pop();
          Value* cls = pop();
          push(call(cls, args));
          break;
        }
        case 'o': {  // OBJ: mark, class, args...
          std::vector<Value*> xs = pop_mark();
          if (xs.empty()) fail("OBJ without a class");
          Value* args = sequence(K::Tuple, std::vector<Value*>(xs.begin() + 1, xs.end()));
          push(call(xs[0], args));
          break;
        }
        case 'i': {  // INST module\nname\n, args from the mark
          std::string module = readline();
          std::string name = readline();
          Value* args = sequence(K::Tuple, pop_mark());
          push(call(global(module + "." + name), args));
          break;
        }
        case 'b': pop(); top(); break;  // BUILD: an object's state (OrderedDict's _metadata, ...), not needed here
        case 'p': memo_[parse_index(readline())] = top(); break;
        case 'q': memo_[le(1)] = top(); break;
        case 'r': memo_[le(4)] = top(); break;
        case 0x94: memo_[memo_.size()] = top(); break;  // MEMOIZE
        case 'g': push(memo(parse_index(readline()))); break;
        case 'h': push(memo(le(1))); break;
        case 'j': push(memo(le(4))); break;
        case 'Q': push(persistent(pop())); break;
        case 'P': fail("a text persistent id (PERSID), which torch.save does not write");
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("opcode ") + hex + " is not one that torch.save writes");
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error("pickle at byte " + std::to_string(op_at_) + ": " + what);
  }

  Value* make(K kind) {
    out_.arena.push_back(std::make_unique<Value>());
    out_.arena.back()->kind = kind;
    return out_.arena.back().get();
  }
  Value* boolean(bool b) {
    Value* v = make(K::Bool);
    v->boolean = b;
    return v;
  }
  Value* integer(std::int64_t i) {
    Value* v = make(K::Int);
    v->integer = i;
    return v;
  }
  // A String, Global ("module.name") or Object (what made it) value.
  Value* text(K kind, std::string_view s) {
    Value* v = make(kind);
    v->text = std::string(s);
    return v;
  }
  Value* string(std::string_view s) { return text(K::String, s); }
  Value* global(const std::string& name) { return text(K::Global, name); }
  Value* object(const std::string& what) { return text(K::Object, what); }
  Value* sequence(K kind, std::vector<Value*> items) {
    Value* v = make(kind);
    v->items = std::move(items);
    return v;
  }
  // LONG1/LONG4: little-endian two's complement of n bytes; an Int where it fits in 64 bits.
  Value* long_int(std::size_t n) {
    const std::string_view s = take(n);
    if (n <= 8) {
      std::uint64_t u = 0;
      for (std::size_t i = 0; i < n; ++i) u |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[i])) << (8 * i);
      if (n > 0 && n < 8 && (static_cast<unsigned char>(s[n - 1]) & 0x80)) u |= ~std::uint64_t{0} << (8 * n);
      return integer(static_cast<std::int64_t>(u));
    }
    Value* v = make(K::BigInt);
    v->text = std::string(s);
    return v;
  }

  void push(Value* v) { stack_.push_back(v); }
  void need(std::size_t n) const {
    const std::size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() < floor + n) fail("the stack holds too few values for this opcode");
  }
  Value* top() const {
    need(1);
    return stack_.back();
  }
  Value* pop() {
    need(1);
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::vector<Value*> pop_mark() {
    if (marks_.empty()) fail("no MARK to return to");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value*> xs(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return xs;
  }
  Value* memo(std::uint64_t i) const {
    auto it = memo_.find(i);
    if (it == memo_.end()) fail("memo entry " + std::to_string(i) + " was never stored");
    return it->second;
  }

  std::string_view take(std::size_t n) {
    if (n > b_.size() - pos_) fail("the file ends inside a value (truncated file?)");
    const std::string_view s = b_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::uint64_t le(std::size_t n) {
    const std::string_view s = take(n);
    std::uint64_t u = 0;
    for (std::size_t i = 0; i < n; ++i) u |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[i])) << (8 * i);
    return u;
  }
  // A length read from the file: signed 32-bit ones must not be negative; all must fit in what is left.
  std::size_t length(std::uint64_t n, bool signed32) const {
    if (signed32 && (n & 0x80000000u)) fail("a negative length");
    if (n > b_.size() - pos_)
      fail("a length of " + std::to_string(n) + " bytes runs past the end of the file (truncated file?)");
    return static_cast<std::size_t>(n);
  }
  std::string readline() {
    const std::size_t nl = b_.find('\n', pos_);
    if (nl == std::string_view::npos) fail("a text argument without its newline (truncated file?)");
    std::string s(b_.substr(pos_, nl - pos_));
    pos_ = nl + 1;
    return s;
  }
  std::int64_t parse_int(const std::string& s) const {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno == ERANGE) fail("bad integer '" + s.substr(0, 40) + "'");
    return v;
  }
  std::uint64_t parse_index(const std::string& s) const {
    const std::int64_t v = parse_int(s);
    if (v < 0) fail("a negative memo index");
    return static_cast<std::uint64_t>(v);
  }

  // APPEND/SETITEM on an object of a class this reader does not know (a list or dict subclass): it becomes one.
  Value* list_target(Value* v) const { return target(v, K::List, "APPEND to "); }
  Value* dict_target(Value* v) const { return target(v, K::Dict, "SETITEM on "); }
  Value* target(Value* v, K kind, const char* op) const {
    if (v->kind == K::Object && v->items.empty() && v->entries.empty()) v->kind = kind;
    if (v->kind != kind) fail(op + describe(*v));
    return v;
  }
  void set_items(Value* d, const std::vector<Value*>& xs) const {
    if (xs.size() % 2) fail("SETITEMS with an odd number of values");
    for (std::size_t i = 0; i < xs.size(); i += 2) d->entries.emplace_back(xs[i], xs[i + 1]);
  }

  std::int64_t int_arg(const Value* v, const char* what) const {
    if (v->kind != K::Int) fail(std::string(what) + " is " + describe(*v) + ", not an integer");
    return v->integer;
  }
  std::vector<std::int64_t> ints_arg(const Value* v, const char* what) const {
    if (v->kind != K::Tuple && v->kind != K::List) fail(std::string(what) + " is " + describe(*v) + ", not a tuple");
    std::vector<std::int64_t> out;
    for (const Value* x : v->items) {
      const std::int64_t i = int_arg(x, what);
      if (i < 0) fail(std::string(what) + " holds a negative number");
      out.push_back(i);
    }
    return out;
  }

  // ('storage', torch.FloatStorage, key, location, numel[, view_metadata]): the zip layout's and the legacy stream's
  // persistent id of a storage.
  Value* persistent(const Value* pid) {
    if (pid->kind != K::Tuple || pid->items.size() < 5 || pid->items[0]->kind != K::String ||
        pid->items[0]->text != "storage")
      fail("a persistent id other than a storage: " + describe(*pid));
    const Value* type = pid->items[1];
    const Value* key = pid->items[2];
    const Value* location = pid->items[3];
    if (type->kind != K::Global || key->kind != K::String || location->kind != K::String)
      fail("a storage id without a type, key and location");
    if (pid->items.size() > 5 && pid->items[5]->kind != K::None)
      fail("a storage view (a file of PyTorch before 1.0): load it with PyTorch and save it again");
    const std::string type_name = type->text.substr(type->text.rfind('.') + 1);
    const std::int64_t numel = int_arg(pid->items[4], "a storage's length");
    if (numel < 0) fail("a storage of negative length");
    auto [it, fresh] = out_.storages.try_emplace(key->text, Storage{type_name, location->text, numel});
    if (!fresh && (it->second.type != type_name || it->second.numel != numel))
      fail("storage " + key->text + " is named twice with different types or lengths");
    Value* v = make(K::Storage);
    v->text = key->text;
    v->storage_type = type_name;
    v->integer = numel;
    return v;
  }

  Value* tensor(const Value* storage, const Value* offset, const Value* sizes, const Value* strides,
                std::string type) {
    if (storage->kind != K::Storage) fail("a tensor rebuilt from " + describe(*storage) + ", not a storage");
    if (type.empty()) type = storage->storage_type;
    const std::size_t esize = element_size(type), ssize = element_size(storage->storage_type);
    if (esize == 0 || ssize == 0) return object("a tensor of " + type + ", which this reader does not support");
    Value* t = make(K::Tensor);
    t->text = storage->text;
    t->storage_type = type;
    t->integer = int_arg(offset, "a tensor's storage offset");
    t->sizes = ints_arg(sizes, "a tensor's size");
    t->strides = ints_arg(strides, "a tensor's stride");
    if (t->integer < 0) fail("a negative storage offset");
    if (t->sizes.size() != t->strides.size()) fail("a tensor whose size and stride differ in length");
    // Every element it addresses must lie inside the storage: (offset + sum((size - 1) * stride) + 1) elements.
    unsigned __int128 last = static_cast<std::uint64_t>(t->integer);
    bool empty = false;
    for (std::size_t i = 0; i < t->sizes.size(); ++i) {
      if (t->sizes[i] == 0) empty = true;
      else last += static_cast<unsigned __int128>(t->sizes[i] - 1) * static_cast<std::uint64_t>(t->strides[i]);
    }
    const unsigned __int128 need = (last + 1) * esize, have = static_cast<unsigned __int128>(storage->integer) * ssize;
    if (!empty && need > have) fail("a tensor reaches past the end of its storage " + storage->text);
    return t;
  }

  Value* call(Value* f, const Value* args) {
    if (args->kind != K::Tuple) fail("a call whose arguments are " + describe(*args) + ", not a tuple");
    const std::vector<Value*>& a = args->items;
    if (f->kind != K::Global) return object("a call of " + describe(*f));
    const std::string& n = f->text;
    if (n == "collections.OrderedDict" || n == "builtins.dict" || n == "__builtin__.dict") {
      Value* d = make(K::Dict);
      if (!a.empty() && (a[0]->kind == K::List || a[0]->kind == K::Tuple))
        for (Value* kv : a[0]->items) {
          if ((kv->kind != K::Tuple && kv->kind != K::List) || kv->items.size() != 2) fail("OrderedDict of non-pairs");
          d->entries.emplace_back(kv->items[0], kv->items[1]);
        }
      return d;
    }
    if ((n == "torch._utils._rebuild_tensor_v2" || n == "torch._utils._rebuild_tensor") && a.size() >= 4)
      return tensor(a[0], a[1], a[2], a[3], "");
    if (n == "torch._utils._rebuild_tensor_v3" && a.size() >= 7) {
      if (a[6]->kind != K::Global) fail("_rebuild_tensor_v3 without a dtype");
      const std::string dtype = a[6]->text.substr(a[6]->text.rfind('.') + 1);
      const std::string type = storage_of_dtype(dtype);
      if (type.empty()) return object("a tensor of dtype " + dtype + ", which this reader does not support");
      return tensor(a[0], a[1], a[2], a[3], type);
    }
    if ((n == "torch._utils._rebuild_parameter" || n == "torch._utils._rebuild_parameter_with_state") &&
        !a.empty() && a[0]->kind == K::Tensor)
      return a[0];
    if (n == "torch.Size" || n == "builtins.tuple" || n == "__builtin__.tuple")
      return sequence(K::Tuple, a.empty() ? std::vector<Value*>{} : iterable(a[0]));
    if (n == "builtins.set" || n == "builtins.frozenset" || n == "builtins.list" || n == "__builtin__.set" ||
        n == "__builtin__.list")
      return sequence(K::List, a.empty() ? std::vector<Value*>{} : iterable(a[0]));
    return object(n + "(...)");
  }
  std::vector<Value*> iterable(const Value* v) const {
    if (v->kind != K::Tuple && v->kind != K::List) fail("a sequence made from " + describe(*v));
    return v->items;
  }

  std::string_view b_;
  std::size_t pos_, op_at_ = 0;
  Parsed& out_;
  std::vector<Value*> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, Value*> memo_;
};

const Value* dict_get(const Value* d, const std::string& key) {
  if (!d || d->kind != K::Dict) return nullptr;
  for (const auto& [k, v] : d->entries)
    if (k->kind == K::String && k->text == key) return v;
  return nullptr;
}

}  // namespace

Parsed parse(std::string_view bytes, std::size_t* pos) {
  Parsed out;
  if (*pos > bytes.size()) throw Error("pickle: starts past the end of the file");
  *pos = Machine(bytes, *pos, out).run();
  return out;
}

// torch.serialization's MAGIC_NUMBER 0x1950a86a20f9469cfc6c as LONG1's 10 little-endian bytes: the first pickle of a
// legacy stream (after PROTO, and FRAME from protocol 4).
constexpr char kMagic[] = "\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

bool looks_legacy(std::string_view bytes) {
  if (bytes.empty() || static_cast<unsigned char>(bytes[0]) != 0x80) return false;
  try {
    std::size_t pos = 0;
    const Parsed first = parse(bytes.substr(0, 64), &pos);
    return first.root->kind == K::BigInt && first.root->text == std::string_view(kMagic, sizeof kMagic - 1);
  } catch (const Error&) {
    return false;
  }
}

Legacy parse_legacy(std::string_view bytes) {
  if (!looks_legacy(bytes)) throw Error("not torch.save's legacy format (no magic number)");
  std::size_t pos = 0;
  parse(bytes, &pos);  // the magic number, checked by looks_legacy
  const Parsed version = parse(bytes, &pos);
  if (version.root->kind != K::Int || version.root->integer != 1001)
    throw Error("legacy format: protocol version " + describe(*version.root) + ", not 1001");
  const Parsed info = parse(bytes, &pos);
  const Value* little = dict_get(info.root, "little_endian");
  if (!little || little->kind != K::Bool) throw Error("legacy format: no byte order in its system info");
  if (!little->boolean) throw Error("legacy format: written on a big-endian machine, which this reader does not read");
  Legacy out;
  out.pickle = parse(bytes, &pos);
  const Parsed keys = parse(bytes, &pos);
  if (keys.root->kind != K::List) throw Error("legacy format: no list of storage keys after the object");
  for (const Value* k : keys.root->items) {
    if (k->kind != K::String) throw Error("legacy format: a storage key that is not a string");
    auto it = out.pickle.storages.find(k->text);
    if (it == out.pickle.storages.end()) throw Error("legacy format: storage " + k->text + " is listed but never used");
    if (bytes.size() - pos < 8) throw Error("legacy format: storage " + k->text + " is cut off (truncated file?)");
    std::uint64_t numel = 0;
    for (int i = 0; i < 8; ++i)
      numel |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[pos + i])) << (8 * i);
    pos += 8;
    const std::size_t esize = element_size(it->second.type);
    if (numel != static_cast<std::uint64_t>(it->second.numel))
      throw Error("legacy format: storage " + k->text + " holds " + std::to_string(numel) + " elements, its id says " +
                  std::to_string(it->second.numel));
    if (esize == 0) throw Error("legacy format: storage " + k->text + " is a " + it->second.type + ", not supported");
    if (numel > (bytes.size() - pos) / esize)
      throw Error("legacy format: storage " + k->text + " runs past the end of the file (truncated file?)");
    out.data[k->text] = {pos, static_cast<std::size_t>(numel) * esize};
    pos += static_cast<std::size_t>(numel) * esize;
  }
  for (const auto& [key, s] : out.pickle.storages)
    if (!out.data.count(key)) throw Error("legacy format: storage " + key + " has no data");
  return out;
}

std::size_t element_size(const std::string& storage_type) {
  auto it = storage_sizes().find(storage_type);
  return it == storage_sizes().end() ? 0 : it->second;
}

std::string describe(const Value& v) {
  switch (v.kind) {
    case K::None: return "None";
    case K::Bool: return v.boolean ? "True" : "False";
    case K::Int: return "the integer " + std::to_string(v.integer);
    case K::BigInt: return "a large integer";
    case K::Float: return "a float";
    case K::String: return "the string '" + v.text.substr(0, 40) + (v.text.size() > 40 ? "...'" : "'");
    case K::Tuple: return "a tuple of " + std::to_string(v.items.size());
    case K::List: return "a list of " + std::to_string(v.items.size());
    case K::Dict: return "a dict of " + std::to_string(v.entries.size());
    case K::Global: return "the name " + v.text;
    case K::Object: return v.text;
    case K::Storage: return "a storage";
    case K::Tensor: return "a tensor";
  }
  return "a value";
}

}  // namespace gan::pickle
