#include "gan/weights.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/torch.h>

#include <cctype>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>

#include "gan/errors.h"
#include "gan/files.h"
#include "gan/json.h"

namespace gan {
namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw UserError(kExitCheckpoint, path + ": " + what);
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

StateDict read_pt(const std::string& path, const std::string& bytes) {
  c10::IValue v;
  try {
    v = torch::jit::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  } catch (const c10::Error& e) {
    bad(path, std::string("not a readable PyTorch file (") + e.what_without_backtrace() + ")");
  }
  if (v.isGenericDict()) {  // a checkpoint dict holding the weights under "state_dict"
    for (const auto& kv : v.toGenericDict())
      if (kv.key().isString() && kv.key().toStringRef() == "state_dict" && kv.value().isGenericDict()) {
        v = kv.value();
        break;
      }
  }
  if (!v.isGenericDict())
    bad(path, "holds no dict of tensors (an OrderedDict, as model.state_dict() is, reads as nothing here: save it with "
              "torch.save(dict(model.state_dict()), path))");
  StateDict out;
  for (const auto& kv : v.toGenericDict()) {
    if (!kv.key().isString() || !kv.value().isTensor())
      bad(path, "holds a dict whose entries are not all name -> tensor");
    out.emplace_back(kv.key().toStringRef(), kv.value().toTensor());
  }
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
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const UserError&) {
    bad(path, "cannot read it (no such file?)");
  }
  if (bytes.size() >= 2 && bytes[0] == 'P' && bytes[1] == 'K') return read_pt(path, bytes);
  if (bytes.size() >= 9 && bytes[8] == '{') return read_safetensors(path, bytes, metadata);
  bad(path, "neither a PyTorch file (torch.save) nor a safetensors file");
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
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const UserError&) {
    bad(path, "cannot read it (no such file?)");
  }
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
