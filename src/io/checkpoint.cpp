#include "gan/checkpoint.h"

#include <torch/torch.h>

#include <deque>
#include <filesystem>
#include <sstream>

#include "gan/errors.h"
#include "gan/files.h"
#include "gan/platform.h"

namespace gan {
namespace {

const char* kMagic = "gan-trainer checkpoint";

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw UserError(kExitCheckpoint, "checkpoint " + path + ": " + what);
}

// Opens the checkpoint at `path`, or its `bytes` when given (read by another process), and checks its header.
void open_archive(const std::string& path, const c10::Device& device, torch::serialize::InputArchive& ar,
                  const std::string* bytes = nullptr) {
  if (!bytes && !std::filesystem::is_regular_file(path)) bad(path, "no such file (give a .pt file written by gan-train)");
  try {
    if (bytes) ar.load_from(bytes->data(), bytes->size(), device);
    else ar.load_from(path, device);
  } catch (const c10::Error&) {
    bad(path, "unreadable: truncated, corrupt or not a gan-train checkpoint");
  }
  c10::IValue magic, format;
  if (!ar.try_read("magic", magic) || !magic.isString() || magic.toStringRef() != kMagic)
    bad(path, "not a gan-train checkpoint (it is a torch archive without our header)");
  if (!ar.try_read("format", format) || !format.isInt()) bad(path, "has no format version");
  if (format.toInt() > kCheckpointFormat)
    bad(path, "format " + std::to_string(format.toInt()) + " is newer than this program's " +
                  std::to_string(kCheckpointFormat) + "; use a newer gan-train");
}

std::string read_string(torch::serialize::InputArchive& ar, const std::string& path, const char* key) {
  c10::IValue v;
  if (!ar.try_read(key, v) || !v.isString()) bad(path, std::string("has no '") + key + "' entry");
  return v.toStringRef();
}

std::int64_t read_int(torch::serialize::InputArchive& ar, const std::string& path, const char* key) {
  c10::IValue v;
  if (!ar.try_read(key, v) || !v.isInt()) bad(path, std::string("has no '") + key + "' entry");
  return v.toInt();
}

// Names of parameters and buffers in `m` whose presence or shape differs from those in the archive `ar`.
std::string mismatch(torch::nn::Module& m, torch::serialize::InputArchive& ar) {
  std::string diff;
  int shown = 0;
  auto check = [&](const std::string& name, const at::Tensor& t) {
    // Module::save nests archives per submodule: "main.0.weight" is main -> 0 -> weight.
    at::Tensor stored;
    bool found = true;
    torch::serialize::InputArchive* cur = &ar;
    std::deque<torch::serialize::InputArchive> path;  // stable addresses
    size_t begin = 0, dot;
    while (found && (dot = name.find('.', begin)) != std::string::npos) {
      path.emplace_back();
      found = cur->try_read(name.substr(begin, dot - begin), path.back());
      cur = &path.back();
      begin = dot + 1;
    }
    found = found && cur->try_read(name.substr(begin), stored, /*is_buffer=*/true);
    if (found && stored.sizes() == t.sizes()) return;
    if (shown++ < 6) {
      std::ostringstream os;
      os << name << (found ? " stored " : " missing") ;
      if (found) os << stored.sizes() << " vs model " << t.sizes();
      diff += (diff.empty() ? "" : ", ") + os.str();
    }
  };
  for (const auto& p : m.named_parameters()) check(p.key(), p.value());
  for (const auto& b : m.named_buffers()) check(b.key(), b.value());
  return diff;
}

void load_module(torch::nn::Module& m, torch::serialize::InputArchive& ar, const char* key, const std::string& path) {
  torch::serialize::InputArchive sub;
  if (!ar.try_read(key, sub)) bad(path, std::string("has no '") + key + "' weights");
  std::string diff = mismatch(m, sub);
  if (!diff.empty()) bad(path, std::string(key) + " does not match the config's architecture: " + diff);
  m.load(sub);
}

std::vector<std::string> read_class_names(torch::serialize::InputArchive& ar) {
  std::vector<std::string> out;
  c10::IValue v;
  if (!ar.try_read("class_names", v) || !v.isString()) return out;
  const std::string& s = v.toStringRef();
  size_t begin = 0, nl;
  while ((nl = s.find('\n', begin)) != std::string::npos) {
    out.push_back(s.substr(begin, nl - begin));
    begin = nl + 1;
  }
  return out;
}

}  // namespace

std::string checkpoint_dir(const std::string& run_dir) { return run_dir + "/checkpoints"; }

std::string resolve_checkpoint_arg(const std::string& arg) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string run = arg;
  while (run.size() > 1 && run.back() == '/') run.pop_back();
  std::string which = "latest";
  if (!fs::exists(run, ec)) {
    const auto slash = run.find_last_of('/');
    const std::string last = slash == std::string::npos ? run : run.substr(slash + 1);
    if (last != "best" && last != "latest") return arg;  // a file name: the loader says it is missing
    which = last;
    run = slash == std::string::npos ? "." : run.substr(0, slash);
  } else if (!fs::is_directory(run, ec)) {
    return arg;
  }
  const std::string file = checkpoint_dir(run) + "/" + which + ".pt";
  if (fs::exists(file, ec)) return file;
  if (!fs::exists(checkpoint_dir(run), ec))
    throw UserError(kExitUsage, arg + " is not a run folder (it has no checkpoints/); give a checkpoint .pt, a run "
                                      "folder written by gan-train, or RUN/best");
  if (which == "best")
    throw UserError(kExitUsage, run + " has no checkpoints/best.pt: it is written when the run evaluates (eval.every "
                                      "> 0); give " + run + " for its latest checkpoint");
  throw UserError(kExitUsage, run + " has no checkpoints/latest.pt yet; give one of its step_*.pt files");
}

void save_checkpoint(const std::string& path, const Config& cfg, Generator& g, Discriminator& d,
                     torch::optim::Optimizer& opt_g, torch::optim::Optimizer& opt_d, const TrainingState& state,
                     Generator* g_ema) {
  torch::serialize::OutputArchive ar;
  ar.write("magic", c10::IValue(std::string(kMagic)));
  ar.write("format", c10::IValue(kCheckpointFormat));
  ar.write("config", c10::IValue(to_yaml(cfg)));
  ar.write("config_name", c10::IValue(cfg.name));
  ar.write("step", c10::IValue(state.step));
  ar.write("epoch", c10::IValue(state.data.epoch));
  ar.write("cursor", c10::IValue(state.data.cursor));
  ar.write("world_size", c10::IValue(static_cast<std::int64_t>(state.world_size)));
  ar.write("versions", c10::IValue(versions_json()));
  if (!state.last_eval.empty()) ar.write("eval", c10::IValue(state.last_eval));
  if (!state.upconv_forms.empty()) ar.write("upconv_forms", c10::IValue(state.upconv_forms));
  if (!state.downconv_forms.empty()) ar.write("downconv_forms", c10::IValue(state.downconv_forms));
  ar.write("augment", torch::tensor({state.augment_p, state.ada_sum}, torch::kDouble), /*is_buffer=*/true);
  if (state.ada_from >= 0) ar.write("ada_from", c10::IValue(state.ada_from));
  if (state.ada_regressions > 0)
    ar.write("ada_regressions", c10::IValue(static_cast<std::int64_t>(state.ada_regressions)));
  ar.write("rng_state", state.rng_state, /*is_buffer=*/true);
  if (state.device_rng_state.defined()) ar.write("device_rng_state", state.device_rng_state.cpu(), /*is_buffer=*/true);
  if (state.loss_scale > 0)
    ar.write("loss_scale", torch::tensor({state.loss_scale, static_cast<double>(state.loss_scale_good_steps)},
                                         torch::kDouble), /*is_buffer=*/true);
  ar.write("fixed_noise", state.fixed_noise.cpu(), /*is_buffer=*/true);
  if (state.fixed_labels.defined()) ar.write("fixed_labels", state.fixed_labels.cpu(), /*is_buffer=*/true);
  std::string names;
  for (const auto& n : state.class_names) names += n + "\n";
  ar.write("class_names", c10::IValue(names));
  if (g_ema) {
    torch::serialize::OutputArchive ema;
    (*g_ema)->save(ema);
    ar.write("generator_ema", ema);
  }
  torch::serialize::OutputArchive gen, dis, og, od;
  g->save(gen);
  d->save(dis);
  opt_g.save(og);
  opt_d.save(od);
  ar.write("generator", gen);
  ar.write("discriminator", dis);
  ar.write("optimizer_g", og);
  ar.write("optimizer_d", od);
  // Serialise to memory first: torch's file writer throws from its destructor when a write fails (disk full), which
  // would terminate the process; our own writer turns the failure into a clean error and keeps the old file.
  std::string bytes;
  ar.save_to([&bytes](const void* data, size_t n) -> size_t {
    bytes.append(static_cast<const char*>(data), n);
    return n;
  });
  write_file_atomic(path, bytes);
}

Config read_checkpoint_config(const std::string& path) {
  torch::serialize::InputArchive ar;
  open_archive(path, torch::kCPU, ar);
  Config cfg = parse_config(read_string(ar, path, "config"), path + " (stored config)");
  cfg.name = read_string(ar, path, "config_name");
  return cfg;
}

void load_checkpoint(const std::string& path, const c10::Device& device, Generator& g, Discriminator* d,
                     torch::optim::Optimizer* opt_g, torch::optim::Optimizer* opt_d, TrainingState* state,
                     Generator* g_ema) {
  load_checkpoint_bytes(nullptr, path, device, g, d, opt_g, opt_d, state, g_ema);
}

void load_checkpoint_bytes(const std::string* bytes, const std::string& path, const c10::Device& device, Generator& g,
                           Discriminator* d, torch::optim::Optimizer* opt_g, torch::optim::Optimizer* opt_d,
                           TrainingState* state, Generator* g_ema) {
  torch::serialize::InputArchive ar;
  open_archive(path, device, ar, bytes);
  load_module(*g, ar, "generator", path);
  if (g_ema) {
    torch::serialize::InputArchive sub;
    if (ar.try_read("generator_ema", sub)) load_module(**g_ema, ar, "generator_ema", path);
    else copy_weights(*g, **g_ema);
  }
  if (d) load_module(**d, ar, "discriminator", path);
  try {
    torch::serialize::InputArchive sub;
    if (opt_g) {
      if (!ar.try_read("optimizer_g", sub)) bad(path, "has no optimizer_g state");
      opt_g->load(sub);
    }
    if (opt_d) {
      if (!ar.try_read("optimizer_d", sub)) bad(path, "has no optimizer_d state");
      opt_d->load(sub);
    }
  } catch (const c10::Error&) {
    bad(path, "optimizer state does not match the model");
  }
  if (state) {
    state->step = read_int(ar, path, "step");
    state->data.epoch = read_int(ar, path, "epoch");
    state->data.cursor = read_int(ar, path, "cursor");
    if (!ar.try_read("rng_state", state->rng_state, true) || !ar.try_read("fixed_noise", state->fixed_noise, true))
      bad(path, "has no RNG state or fixed noise");
    state->rng_state = state->rng_state.cpu();
    at::Tensor device_rng;  // absent from runs on the CPU and from checkpoints written before 2026-12-03
    state->device_rng_state = ar.try_read("device_rng_state", device_rng, true) ? device_rng.cpu() : at::Tensor();
    at::Tensor scale;  // absent without fp16 and before 2026-12-03: the scale starts again
    state->loss_scale = 0;
    state->loss_scale_good_steps = 0;
    if (ar.try_read("loss_scale", scale, true) && scale.numel() == 2) {
      scale = scale.cpu().to(torch::kDouble);
      state->loss_scale = scale[0].item<double>();
      state->loss_scale_good_steps = static_cast<std::int64_t>(scale[1].item<double>());
    }
    at::Tensor labels;
    state->fixed_labels = ar.try_read("fixed_labels", labels, true) ? labels.cpu() : at::Tensor();
    state->class_names = read_class_names(ar);
    c10::IValue world;  // absent before distributed training: one process
    state->world_size = ar.try_read("world_size", world) && world.isInt() ? static_cast<int>(world.toInt()) : 1;
    c10::IValue eval;
    state->last_eval = ar.try_read("eval", eval) && eval.isString() ? eval.toStringRef() : "";
    c10::IValue forms;  // absent before measured upconv forms, or when not measured: measured again
    state->upconv_forms = ar.try_read("upconv_forms", forms) && forms.isString() ? forms.toStringRef() : "";
    c10::IValue dforms;
    state->downconv_forms = ar.try_read("downconv_forms", dforms) && dforms.isString() ? dforms.toStringRef() : "";
    at::Tensor aug;  // absent before augmentation: p = 0
    if (ar.try_read("augment", aug, true) && aug.numel() == 2) {
      aug = aug.cpu().to(torch::kDouble);
      state->augment_p = aug[0].item<double>();
      state->ada_sum = aug[1].item<double>();
    }
    c10::IValue from;  // absent unless train.augment auto switched ADA on
    state->ada_from = ar.try_read("ada_from", from) && from.isInt() ? from.toInt() : -1;
    c10::IValue streak;  // absent when the last evaluations did not regress
    state->ada_regressions =
        ar.try_read("ada_regressions", streak) && streak.isInt() ? static_cast<int>(streak.toInt()) : 0;
  }
}

std::string read_checkpoint_eval(const std::string& path, std::int64_t* step) {
  read_checkpoint_config(path);  // a clear error for a missing or foreign file
  torch::serialize::InputArchive ar;
  open_archive(path, torch::kCPU, ar);
  if (step) *step = read_int(ar, path, "step");
  c10::IValue eval;
  return ar.try_read("eval", eval) && eval.isString() ? eval.toStringRef() : "";
}

std::string describe_checkpoint(const std::string& path) {
  Config cfg = read_checkpoint_config(path);
  torch::serialize::InputArchive ar;
  open_archive(path, torch::kCPU, ar);
  auto text = [&](const char* key, const std::string& none) {
    c10::IValue v;
    return ar.try_read(key, v) && v.isString() ? v.toStringRef() : none;
  };
  auto number = [&](const char* key, std::int64_t none) {
    c10::IValue v;
    return ar.try_read(key, v) && v.isInt() ? v.toInt() : none;
  };
  const ModelConfig& m = cfg.model;
  Generator g(m);  // on the CPU, for the parameter counts; the stored weights are not loaded
  Discriminator d(m);
  torch::serialize::InputArchive sub;
  const bool ema = ar.try_read("generator_ema", sub);
  auto grouped = [](std::int64_t v) {
    std::string s = std::to_string(v);
    for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
    return s;
  };
  std::ostringstream os;
  os << "checkpoint " << path << "\n";
  os << "format " << number("format", 0) << "; written by " << text("versions", "a gan-train from before versions were recorded")
     << "\n";
  os << "step " << number("step", 0) << ", epoch " << number("epoch", 0) + 1 << " (image " << number("cursor", 0)
     << " of its order), saved by " << number("world_size", 1) << " process" << (number("world_size", 1) == 1 ? "" : "es")
     << "\n";
  os << "model: " << m.image_size << "x" << m.image_size << "x" << m.channels << ", nz " << m.nz << ", ngf " << m.ngf
     << ", ndf " << m.ndf << ", D norm " << m.d_norm << (m.spectral_norm ? ", spectral norm" : "")
     << (m.minibatch_std ? ", minibatch std" : "")
     << (m.conditional ? ", conditional on " + std::to_string(m.num_classes) + " classes (" + m.d_conditioning + " D)"
                       : "")
     << "\n";
  os << "parameters: G " << grouped(parameter_count(*g)) << ", D " << grouped(parameter_count(*d)) << "; EMA generator: "
     << (ema ? "yes (decay " + format_number(cfg.train.ema_decay) + ")" : "no") << "\n";
  const std::vector<std::string> names = read_class_names(ar);
  if (!names.empty()) {
    os << "classes:";
    for (const auto& n : names) os << " " << n;
    os << "\n";
  }
  os << "last evaluation: " << text("eval", "none") << "\n";
  os << "config (" << cfg.name << "):\n" << to_yaml(cfg);
  return os.str();
}

void copy_weights(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto src_p = from.named_parameters(), dst_p = to.named_parameters();
  for (auto& p : dst_p) p.value().copy_(src_p[p.key()]);
  auto src_b = from.named_buffers(), dst_b = to.named_buffers();
  for (auto& b : dst_b) b.value().copy_(src_b[b.key()]);
}

SamplingModel load_generator(const std::string& path, const c10::Device& device) {
  SamplingModel m;
  m.cfg = read_checkpoint_config(path);
  torch::serialize::InputArchive ar;
  open_archive(path, device, ar);
  m.g = Generator(m.cfg.model);
  torch::serialize::InputArchive sub;
  m.ema = ar.try_read("generator_ema", sub);
  load_module(*m.g, ar, m.ema ? "generator_ema" : "generator", path);
  m.class_names = read_class_names(ar);
  m.g->to(device);
  m.g->eval();
  return m;
}

}  // namespace gan
