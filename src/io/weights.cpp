#include "gan/weights.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>

#include "gan/errors.h"
#include "gan/files.h"
#include "gan/json.h"
#include "gan/pickle.h"

namespace gan {
namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw UserError(kExitCheckpoint, path + ": " + what);
}

// A weights, tensor or .npy file's bytes; one that cannot be read is bad() like a bad one.
std::string read_input(const std::string& path) {
  try {
    return read_file(path);
  } catch (const UserError&) {
    bad(path, "cannot read it (no such file?)");
  }
}

const std::map<std::string, at::ScalarType>& safetensors_dtypes() {
  static const std::map<std::string, at::ScalarType> m{
      {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf}, {"BF16", at::kBFloat16}, {"I64", at::kLong},
      {"I32", at::kInt},    {"I16", at::kShort}, {"I8", at::kChar},  {"U8", at::kByte},       {"BOOL", at::kBool}};
  return m;
}

StateDict read_safetensors(const std::string& path, const std::string& bytes,
                           std::map<std::string, std::string>* metadata) {
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8) bad(path, "safetensors header longer than the file (truncated?)");
  const std::string header = bytes.substr(8, n);
  Json root;
  try {
    root = parse_json(header);
  } catch (const std::runtime_error& e) {
    bad(path, std::string("bad safetensors header: ") + e.what());
  }
  if (root.kind != Json::kObject) bad(path, "bad safetensors header: not a JSON object");
  const size_t data_begin = 8 + n;
  StateDict out;
  for (const auto& [name, entry] : root.members) {
    if (name == "__metadata__") {
      if (metadata)
        for (const auto& [k, v] : entry.members) (*metadata)[k] = v.text;
      continue;
    }
    const Json* dtype = entry.get("dtype");
    const Json* shape = entry.get("shape");
    const Json* offsets = entry.get("data_offsets");
    if (!dtype || !shape || !offsets || offsets->items.size() != 2)
      bad(path, "bad safetensors header: entry '" + name + "' lacks dtype, shape or data_offsets");
    auto type = safetensors_dtypes().find(dtype->text);
    if (type == safetensors_dtypes().end()) bad(path, "tensor '" + name + "' has dtype " + dtype->text + ", not supported");
    std::vector<std::int64_t> sizes;
    for (const auto& d : shape->items) sizes.push_back(static_cast<std::int64_t>(d.number));
    const auto begin = static_cast<size_t>(offsets->items[0].number), end = static_cast<size_t>(offsets->items[1].number);
    at::Tensor t = torch::empty(sizes, torch::TensorOptions().dtype(type->second));
    const size_t want = static_cast<size_t>(t.numel()) * t.element_size();
    if (end < begin || end - begin != want || data_begin + end > bytes.size())
      bad(path, "tensor '" + name + "' has data_offsets that do not fit its shape or the file (truncated?)");
    std::memcpy(t.data_ptr(), bytes.data() + data_begin + begin, want);
    out.emplace_back(name, t);
  }
  return out;
}

// A read-only view of the file's bytes for PyTorchStreamReader (no copy of a large file).
class BytesAdapter : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BytesAdapter(const std::string& bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= bytes_.size()) return 0;
    n = std::min<size_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  const std::string& bytes_;
};

at::ScalarType dtype_of(const std::string& storage_type) {
  static const std::map<std::string, at::ScalarType> m{
      {"FloatStorage", at::kFloat},         {"DoubleStorage", at::kDouble},         {"HalfStorage", at::kHalf},
      {"BFloat16Storage", at::kBFloat16},   {"LongStorage", at::kLong},             {"IntStorage", at::kInt},
      {"ShortStorage", at::kShort},         {"CharStorage", at::kChar},             {"ByteStorage", at::kByte},
      {"BoolStorage", at::kBool},           {"ComplexFloatStorage", at::kComplexFloat},
      {"ComplexDoubleStorage", at::kComplexDouble}, {"UntypedStorage", at::kByte}};
  return m.at(storage_type);  // pickle::parse makes tensors only of these types
}

// What torch.save wrote, with its storages as CPU tensors (whatever device they were saved from).
struct TorchFile {
  pickle::Parsed pickle;
  std::map<std::string, at::Tensor> storages;
};

TorchFile read_torch_file(const std::string& path, const std::string& bytes) {
  TorchFile f;
  auto storage = [&](const std::string& key, const char* data, size_t n) {
    const pickle::Storage& s = f.pickle.storages.at(key);
    const size_t esize = pickle::element_size(s.type);
    if (esize == 0) return;  // a type no tensor of this file can use (pickle::parse made an Object of it)
    if (n / esize < static_cast<size_t>(s.numel))
      bad(path, "storage " + key + " holds " + std::to_string(n) + " bytes, fewer than its " + std::to_string(s.numel) +
                    " elements need (truncated file?)");
    at::Tensor t = torch::empty({s.numel}, torch::TensorOptions().dtype(dtype_of(s.type)));
    if (s.numel > 0) std::memcpy(t.data_ptr(), data, static_cast<size_t>(s.numel) * esize);
    f.storages[key] = t;
  };
  try {
    if (bytes.size() >= 2 && bytes[0] == 'P' && bytes[1] == 'K') {  // the zip archive of PyTorch >= 1.6
      caffe2::serialize::PyTorchStreamReader reader(std::make_shared<BytesAdapter>(bytes));
      if (reader.hasRecord("byteorder")) {
        auto [order, n] = reader.getRecord("byteorder");
        if (std::string(static_cast<const char*>(order.get()), n) != "little")
          bad(path, "was written on a big-endian machine, which this reader does not read");
      }
      if (!reader.hasRecord("data.pkl")) bad(path, "is a zip archive without data.pkl: not written by torch.save");
      auto [pkl, pkl_size] = reader.getRecord("data.pkl");
      const std::string_view text(static_cast<const char*>(pkl.get()), pkl_size);
      size_t pos = 0;
      f.pickle = pickle::parse(text, &pos);
      for (const auto& [key, s] : f.pickle.storages) {
        if (!reader.hasRecord("data/" + key)) bad(path, "storage " + key + " is missing from the archive");
        auto [data, n] = reader.getRecord("data/" + key);
        storage(key, static_cast<const char*>(data.get()), n);
      }
    } else if (pickle::looks_legacy(bytes)) {  // PyTorch < 1.6, or _use_new_zipfile_serialization=False
      pickle::Legacy legacy = pickle::parse_legacy(bytes);
      f.pickle = std::move(legacy.pickle);
      for (const auto& [key, at] : legacy.data) storage(key, bytes.data() + at.first, at.second);
    } else {
      bad(path, "not a PyTorch file (torch.save writes a zip archive, or before PyTorch 1.6 a pickle stream)");
    }
  } catch (const pickle::Error& e) {
    bad(path, std::string("not a readable PyTorch file: ") + e.what());
  } catch (const c10::Error& e) {
    bad(path, std::string("not a readable PyTorch archive (") + e.what_without_backtrace() + ")");
  }
  return f;
}

// The tensor a pickled tensor refers to: a view of its storage.
at::Tensor tensor_of(const TorchFile& f, const pickle::Value& v) {
  at::Tensor base = f.storages.at(v.text);
  const at::ScalarType dtype = dtype_of(v.storage_type);
  if (base.scalar_type() != dtype) {  // an untyped storage (_rebuild_tensor_v3): its bytes as the tensor's dtype
    const auto esize = static_cast<int64_t>(pickle::element_size(v.storage_type));
    const int64_t n = base.numel() * base.element_size();
    base = base.view(at::kByte).narrow(0, 0, n - n % esize).view(dtype);
  }
  return base.as_strided(v.sizes, v.strides, v.integer);
}

const pickle::Value* entry(const pickle::Value* dict, const std::string& key) {
  if (!dict || dict->kind != pickle::Value::Kind::Dict) return nullptr;
  for (const auto& [k, v] : dict->entries)
    if (k->kind == pickle::Value::Kind::String && k->text == key) return v;
  return nullptr;
}

StateDict read_pt(const std::string& path, const std::string& bytes) {
  using K = pickle::Value::Kind;
  const TorchFile f = read_torch_file(path, bytes);
  const pickle::Value* v = f.pickle.root;
  if (const pickle::Value* sd = entry(v, "state_dict"); sd && sd->kind == K::Dict) v = sd;  // a checkpoint dict
  if (v->kind != K::Dict) bad(path, "holds " + pickle::describe(*v) + ", not a dict of tensors (a state_dict)");
  // A checkpoint of several networks ({"netG": ..., "netD": ..., "epoch": 5}): say which entries are state_dicts.
  std::string nets;
  for (const auto& [k, x] : v->entries)
    if (k->kind == K::String && x->kind == K::Dict && !x->entries.empty() && x->entries[0].second->kind == K::Tensor)
      nets += (nets.empty() ? "" : ", ") + k->text;
  StateDict out;
  for (const auto& [k, x] : v->entries) {
    if (k->kind != K::String) bad(path, "holds a dict with a key that is " + pickle::describe(*k) + ", not a name");
    if (x->kind != K::Tensor)
      bad(path, "entry '" + k->text + "' is " + pickle::describe(*x) + ", not a tensor" +
                    (nets.empty() ? std::string()
                                  : "; the file holds several state_dicts (" + nets +
                                        "): save the one you need alone, e.g. torch.save(ckpt[\"" +
                                        nets.substr(0, nets.find(',')) + "\"], \"G.pt\")"));
    out.emplace_back(k->text, tensor_of(f, *x));
  }
  // Saved from a network wrapped in DataParallel / DistributedDataParallel: every name starts with "module.".
  const std::string wrap = "module.";
  bool wrapped = !out.empty();
  for (const auto& [name, t] : out) wrapped = wrapped && name.compare(0, wrap.size(), wrap) == 0;
  if (wrapped)
    for (auto& [name, t] : out) name.erase(0, wrap.size());
  return out;
}

}  // namespace

StateDict state_dict(torch::nn::Module& module) {
  StateDict out;
  for (const auto& p : module.named_parameters()) out.emplace_back(p.key(), p.value().detach().cpu().contiguous().clone());
  for (const auto& b : module.named_buffers()) out.emplace_back(b.key(), b.value().detach().cpu().contiguous().clone());
  return out;
}

void save_pt(const std::string& path, const StateDict& weights) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  // Contiguous clones: the pickler writes each storage from offset 0.
  for (const auto& [name, t] : weights) dict.insert(name, t.detach().cpu().contiguous().clone());
  std::vector<char> pickle;
  torch::jit::Pickler pickler([&](const char* b, size_t n) { pickle.insert(pickle.end(), b, b + n); }, nullptr,
                              nullptr, nullptr, nullptr, /*tag_aggregates=*/false);  // a plain dict, as torch.save writes
  pickler.protocol();
  pickler.pushIValue(dict);
  pickler.stop();
  std::string bytes;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t n) -> size_t {
      bytes.append(static_cast<const char*>(data), n);
      return n;
    });
    torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), pickler.tensorData(), writer);
    writer.writeEndOfFile();
  }
  write_file_atomic(path, bytes);
}

void save_safetensors(const std::string& path, const StateDict& weights,
                      const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) header += (first ? "" : ",") + json_quote(k) + ":" + json_quote(v), first = false;
    header += "}";
  }
  std::string data;
  for (const auto& [name, t0] : weights) {
    const at::Tensor t = t0.detach().cpu().contiguous();
    std::string dtype;
    for (const auto& [k, v] : safetensors_dtypes())
      if (v == t.scalar_type()) dtype = k;
    TORCH_CHECK(!dtype.empty(), "save_safetensors: ", name, " has an unsupported dtype");
    std::string shape;
    for (auto d : t.sizes()) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    const size_t n = static_cast<size_t>(t.numel()) * t.element_size();
    header += std::string(header.size() > 1 ? "," : "") + json_quote(name) + ":{\"dtype\":\"" + dtype + "\",\"shape\":[" +
              shape + "],\"data_offsets\":[" + std::to_string(data.size()) + "," + std::to_string(data.size() + n) + "]}";
    data.append(static_cast<const char*>(t.data_ptr()), n);
  }
  header += "}";
  while ((8 + header.size()) % 8 != 0) header += ' ';  // the data starts 8-aligned
  std::string bytes(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(&bytes[0], &n, 8);
  write_file_atomic(path, bytes + header + data);
}

StateDict load_weights_file(const std::string& path, std::map<std::string, std::string>* metadata) {
  const std::string bytes = read_input(path);
  if ((bytes.size() >= 2 && bytes[0] == 'P' && bytes[1] == 'K') || pickle::looks_legacy(bytes))
    return read_pt(path, bytes);
  if (bytes.size() >= 9 && bytes[8] == '{') return read_safetensors(path, bytes, metadata);
  bad(path, "neither a PyTorch file (torch.save) nor a safetensors file");
}

at::Tensor load_tensor_file(const std::string& path) {
  const std::string bytes = read_input(path);
  const TorchFile f = read_torch_file(path, bytes);
  const pickle::Value* v = f.pickle.root;
  if (v->kind == pickle::Value::Kind::Dict)
    for (const auto& [k, x] : v->entries)
      if (x->kind == pickle::Value::Kind::Tensor) return tensor_of(f, *x);
  if (v->kind != pickle::Value::Kind::Tensor) bad(path, "holds " + pickle::describe(*v) + ", not a tensor");
  return tensor_of(f, *v);
}

void load_state_dict(torch::nn::Module& module, const StateDict& weights, const std::string& what) {
  std::map<std::string, at::Tensor> given(weights.begin(), weights.end());
  std::vector<std::string> missing, shape, used;
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;
  auto take = [&](const std::string& name, const at::Tensor& target) {
    auto it = given.find(name);
    if (it == given.end()) return missing.push_back(name);
    used.push_back(name);
    if (it->second.sizes() != target.sizes()) {
      std::ostringstream os;
      os << name << " " << it->second.sizes() << " vs model " << target.sizes();
      return shape.push_back(os.str());
    }
    copies.emplace_back(target, it->second);
  };
  for (const auto& p : module.named_parameters()) take(p.key(), p.value());
  for (const auto& b : module.named_buffers()) take(b.key(), b.value());
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : given)
    if (std::find(used.begin(), used.end(), name) == used.end()) unexpected.push_back(name);
  if (!missing.empty() || !shape.empty() || !unexpected.empty()) {
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size() && i < 6; ++i) s += (i ? ", " : "") + v[i];
      if (v.size() > 6) s += " and " + std::to_string(v.size() - 6) + " more";
      return s;
    };
    std::string msg = what + " does not fit the model:";
    if (!missing.empty()) msg += " missing " + list(missing) + ";";
    if (!unexpected.empty()) msg += " unexpected " + list(unexpected) + ";";
    if (!shape.empty()) msg += " different shapes " + list(shape) + ";";
    msg.back() = ' ';
    throw UserError(kExitCheckpoint, msg + "(check the config's model section against the file)");
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, value] : copies) target.copy_(value.to(target.dtype()));
}

void save_npy(const std::string& path, const at::Tensor& array) {
  const at::Tensor t = array.detach().cpu().contiguous();
  const char* descr = t.scalar_type() == at::kFloat    ? "<f4"
                      : t.scalar_type() == at::kDouble ? "<f8"
                      : t.scalar_type() == at::kLong   ? "<i8"
                                                       : nullptr;
  TORCH_CHECK(descr, "save_npy: float32, float64 or int64 only");
  std::string shape;
  for (auto d : t.sizes()) shape += std::to_string(d) + ", ";
  if (t.dim() > 1) shape.resize(shape.size() - 2);  // (n, m) but (n,) for one dimension
  else if (t.dim() == 1) shape.pop_back();
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  const auto n = static_cast<std::uint16_t>(header.size());
  bytes += static_cast<char>(n & 0xFF);
  bytes += static_cast<char>(n >> 8);
  bytes += header;
  bytes.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size());
  write_file_atomic(path, bytes);
}

at::Tensor load_npy(const std::string& path) {
  const std::string bytes = read_input(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) bad(path, "not a NumPy .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | static_cast<unsigned char>(bytes[9]) << 8;
    offset = 10;
  } else if (bytes.size() >= 12) {
    std::uint32_t n;
    std::memcpy(&n, bytes.data() + 8, 4);
    header_len = n;
    offset = 12;
  }
  if (offset + header_len > bytes.size()) bad(path, "truncated .npy header");
  const std::string header = bytes.substr(offset, header_len);
  auto field = [&](const std::string& key) {
    const auto k = header.find("'" + key + "'");
    if (k == std::string::npos) bad(path, ".npy header has no '" + key + "'");
    return header.substr(header.find(':', k) + 1);
  };
  std::string descr = field("descr");
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  const at::ScalarType type = descr == "<f4" ? at::kFloat : descr == "<f8" ? at::kDouble : descr == "<i8" ? at::kLong
                                                                                                           : at::kByte;
  if (type == at::kByte) bad(path, "dtype " + descr + " is not float32, float64 or int64");
  if (field("fortran_order").find("True") < field("fortran_order").find(',')) bad(path, "Fortran order is not supported");
  std::string shape = field("shape");
  shape = shape.substr(shape.find('(') + 1, shape.find(')') - shape.find('(') - 1);
  std::vector<std::int64_t> sizes;
  std::istringstream in(shape);
  for (std::string part; std::getline(in, part, ',');)
    if (part.find_first_not_of(' ') != std::string::npos) sizes.push_back(std::stoll(part));
  at::Tensor t = torch::empty(sizes, torch::TensorOptions().dtype(type));
  const size_t n = static_cast<size_t>(t.numel()) * t.element_size();
  if (offset + header_len + n > bytes.size()) bad(path, "the .npy data is shorter than its shape says (truncated?)");
  std::memcpy(t.data_ptr(), bytes.data() + offset + header_len, n);
  return t;
}

}  // namespace gan
