#include "gan/self_check.h"

#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <regex>
#include <sstream>
#include <tuple>
#include <vector>

#include "gan/errors.h"

namespace gan {

namespace {

using torch::Tensor;
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// One computation of the check: its inputs' shapes and the function of them.
struct MathsCase {
  std::string name;
  std::vector<std::vector<std::int64_t>> shapes;  // inputs; the first is the activation, the rest parameters
  Fn fn;
  bool four_d;  // convolutions and batch norm: also checked in channels_last
};

// Deterministic values in [-1, 1] without a random generator (the check must not move the run's RNG streams).
Tensor pattern(const std::vector<std::int64_t>& shape, double phase) {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  return torch::sin(torch::arange(n, torch::kDouble) * 0.731 + phase).reshape(shape);
}

std::vector<MathsCase> maths_cases() {
  std::vector<MathsCase> cases;
  cases.push_back({"conv2d [1, 3, 4, 4] k3 s1 p1",
                   {{1, 3, 4, 4}, {5, 3, 3, 3}, {5}},
                   [](const std::vector<Tensor>& in) { return torch::conv2d(in[0], in[1], in[2], 1, 1); },
                   true});  // out [1, 5, 4, 4]: the shape on which trixie's oneDNN was seen wrong
  cases.push_back({"conv2d [2, 4, 16, 16] k3 s1 p1",
                   {{2, 4, 16, 16}, {8, 4, 3, 3}, {8}},
                   [](const std::vector<Tensor>& in) { return torch::conv2d(in[0], in[1], in[2], 1, 1); },
                   true});  // out [2, 8, 16, 16]
  cases.push_back({"conv2d [2, 8, 8, 8] k4 s2 p1",
                   {{2, 8, 8, 8}, {16, 8, 4, 4}},
                   [](const std::vector<Tensor>& in) { return torch::conv2d(in[0], in[1], {}, 2, 1); },
                   true});  // out [2, 16, 4, 4]: D's downsampling convolution
  // The backward-data kernels of trixie's oneDNN 3.7.2 are wrong for some shapes and right for others, also when
  // capped at AVX2 (1,051 of 3,072 small shapes there; docs/PERFORMANCE.md): these four are wrong with and without
  // that cap, so the check sees the fault whichever kernel family oneDNN picks.
  for (const auto& [shape, k, pad, cout] : std::vector<std::tuple<std::vector<std::int64_t>, int, int, int>>{
           {{2, 1, 4, 4}, 2, 0, 5}, {{2, 8, 4, 4}, 2, 1, 20}, {{2, 3, 8, 8}, 4, 1, 5}, {{2, 4, 8, 8}, 4, 0, 4}}) {
    const std::int64_t p = pad;
    cases.push_back({"conv2d [" + std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + ", " +
                         std::to_string(shape[2]) + ", " + std::to_string(shape[3]) + "] k" + std::to_string(k) +
                         " s1 p" + std::to_string(pad),
                     {shape, {cout, shape[1], k, k}},
                     [p](const std::vector<Tensor>& in) { return torch::conv2d(in[0], in[1], {}, 1, p); },
                     true});  // k2 p1 is G's phase form (a 2x2 convolution to 4x the channels)
  }
  // Trixie's oneDNN 3.7.2 also computes wrong forward results when the input channels exceed a vector's width and are
  // not a multiple of it (8 floats at AVX and AVX2, 16 at AVX-512): 20 is such a count at every width, e.g. a
  // concat-conditional D's input (3 + 17 classes). At the AVX cap only such shapes are wrong (586 of 3,072 shapes in
  // scripts/conv_sweep.py), so without this case the ladder stopped there.
  cases.push_back({"conv2d [2, 20, 8, 8] k3 s1 p1",
                   {{2, 20, 8, 8}, {6, 20, 3, 3}},
                   [](const std::vector<Tensor>& in) { return torch::conv2d(in[0], in[1], {}, 1, 1); },
                   true});  // out [2, 6, 8, 8]
  cases.push_back({"conv_transpose2d [2, 16, 4, 4] k4 s2 p1",
                   {{2, 16, 4, 4}, {16, 8, 4, 4}},
                   [](const std::vector<Tensor>& in) { return torch::conv_transpose2d(in[0], in[1], {}, 2, 1); },
                   true});  // out [2, 8, 8, 8]: G's upsampling convolution
  cases.push_back({"linear [4, 64] -> 32",
                   {{4, 64}, {32, 64}, {32}},
                   [](const std::vector<Tensor>& in) { return torch::linear(in[0], in[1], in[2]); },
                   false});  // out [4, 32]: a matrix product (BLAS)
  cases.push_back({"batch_norm [4, 8, 4, 4]",
                   {{4, 8, 4, 4}, {8}, {8}},
                   [](const std::vector<Tensor>& in) {
                     return torch::batch_norm(in[0], in[1], in[2], {}, {}, /*training=*/true, 0.1, 1e-5, false);
                   },
                   true});  // out [4, 8, 4, 4]
  return cases;
}

const char* kResultNames[] = {"input gradient", "weight gradient", "bias gradient"};

// max |a - ref| / max |ref|, inf when `a` holds a non-finite value.
double relative_error(const Tensor& a, const Tensor& ref) {
  Tensor a64 = a.detach().to(torch::kCPU, torch::kDouble);
  if (!torch::isfinite(a64).all().item<bool>()) return std::numeric_limits<double>::infinity();
  const double scale = std::max(ref.abs().max().item<double>(), 1e-12);
  return (a64 - ref).abs().max().item<double>() / scale;
}

std::string format_error(double e) {
  if (!std::isfinite(e)) return "non-finite values";
  std::ostringstream s;
  s.precision(3);
  s << "relative error " << e;
  return s.str();
}

bool check_disabled() {
  const char* env = std::getenv("GAN_SELF_CHECK");
  return env && (std::strcmp(env, "0") == 0 || strcasecmp(env, "off") == 0);
}

bool onednn_in_use() { return at::hasMKLDNN() && at::globalContext().userEnabledMkldnn(); }

std::string onednn_version() {
  static const std::regex re("(?:MKL-DNN|oneDNN) (v[0-9][0-9.]*)");
  std::smatch m;
  const std::string config = at::show_config();
  return std::regex_search(config, m, re) ? m[1].str() : std::string("(version unknown)");
}

}  // namespace

MathsCheck check_float32_maths(c10::Device device, const MathsTamper& tamper) {
  torch::AutoGradMode grad_on(true);
  MathsCheck r;
  auto compare = [&](const std::string& what, Tensor result, const Tensor& ref) {
    if (tamper) tamper(what, result);
    const double e = relative_error(result, ref);
    if (!(e <= kMathsTolerance) && r.ok) {
      r.ok = false;
      r.failure = what + ": " + format_error(e);
    }
    r.worst = std::max(r.worst, e);
  };
  int phase = 0;
  for (const MathsCase& c : maths_cases()) {
    std::vector<Tensor> ref_in;
    for (const auto& shape : c.shapes) ref_in.push_back(pattern(shape, phase++).requires_grad_(true));
    const Tensor ref_out = c.fn(ref_in);
    const Tensor upstream = pattern(ref_out.sizes().vec(), phase++);
    const auto ref_grads = torch::autograd::grad({ref_out}, ref_in, {upstream});
    for (bool channels_last : {false, true}) {
      if (channels_last && !c.four_d) continue;
      std::vector<Tensor> in;
      for (const Tensor& t : ref_in) {
        Tensor x = t.detach().to(device, torch::kFloat);
        if (channels_last && x.dim() == 4) x = x.contiguous(at::MemoryFormat::ChannelsLast);
        in.push_back(x.requires_grad_(true));
      }
      const Tensor out = c.fn(in);
      const auto grads =
          torch::autograd::grad({out}, in, {upstream.to(device, torch::kFloat).contiguous(out.suggest_memory_format())});
      const std::string name = c.name + (channels_last ? " channels_last" : "");
      compare(name + ", output", out, ref_out.detach());
      for (std::size_t i = 0; i < grads.size(); ++i) compare(name + ", " + kResultNames[i], grads[i], ref_grads[i]);
    }
  }
  return r;
}

std::string maths_libraries() {
  std::string s = "LibTorch " + std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                  "." + std::to_string(TORCH_VERSION_PATCH);
  if (at::hasMKLDNN()) s += ", oneDNN " + onednn_version();
  return s;
}

namespace {
std::string g_cpu_note;  // what ensure_sound_cpu_maths returned, for cpu_maths_note

// The ladder of oneDNN instruction-set caps tried in turn, fastest first.
const char* const kIsaLadder[] = {"AVX2", "AVX", "SSE41"};
constexpr int kLadderSteps = static_cast<int>(std::size(kIsaLadder));

// The next cap below `current` (one of the ladder, or "" for none), for this CPU: "" when there is none.
std::string next_isa_cap(const std::string& current) {
  __builtin_cpu_init();
  int i = 0;
  if (!current.empty()) {
    while (i < kLadderSteps && current != kIsaLadder[i]) ++i;
    ++i;
  } else if (__builtin_cpu_supports("avx512f")) {
    i = 0;
  } else if (__builtin_cpu_supports("avx2")) {
    i = 1;
  } else if (__builtin_cpu_supports("avx")) {
    i = 2;
  } else {
    i = kLadderSteps;
  }
  return i < kLadderSteps ? kIsaLadder[i] : "";
}

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string cpu_maths_verdict(char** argv, const MathsTamper& tamper, const std::function<void()>& restart) {
  if (check_disabled()) return "";
  const MathsCheck r = check_float32_maths(torch::kCPU, tamper);
  // What earlier starts of this program saw ("" when this is the first): set with the cap before each restart.
  const std::string history = env_or_empty("GAN_ONEDNN_CAPPED_FROM");
  const bool ours = !history.empty();  // the cap in ONEDNN_MAX_CPU_ISA is this program's, not the user's
  std::string isa = env_or_empty("ONEDNN_MAX_CPU_ISA");
  if (isa.empty()) isa = env_or_empty("DNNL_MAX_CPU_ISA");
  if (r.ok) {
    if (!ours) return "";
    return "oneDNN " + onednn_version() + " computed wrong float32 results on this CPU (" + history +
           ", against float64); restarted with ONEDNN_MAX_CPU_ISA=" + isa +
           ", with which they are right (export it to skip the restarts)";
  }
  const std::string seen =
      (ours ? history + "; " : "") + (isa.empty() ? "" : "with ONEDNN_MAX_CPU_ISA=" + isa + ": ") + r.failure;
  auto fail = [&](const std::string& what) {
    return UserError(kExitMaths, "LibTorch's float32 maths on this CPU fails the start-up check against float64 (" +
                                     what + "; " + maths_libraries() +
                                     "): training would diverge or learn nothing. Use another LibTorch build, or set "
                                     "GAN_SELF_CHECK=0 to run anyway");
  };
  if (!onednn_in_use()) throw fail(seen);
  // A lower instruction set takes other oneDNN kernels; oneDNN reads the cap once, so it takes a restart. A cap the
  // user set is theirs: then oneDNN is turned off instead.
  if (isa.empty() || ours) {
    const std::string next = next_isa_cap(isa);
    if (!next.empty()) {
      setenv("ONEDNN_MAX_CPU_ISA", next.c_str(), 1);
      setenv("GAN_ONEDNN_CAPPED_FROM", seen.c_str(), 1);
      if (restart) restart();
      else execv("/proc/self/exe", argv);
      // The restart failed (or a test's restart returned): go on in this process, without oneDNN.
      if (isa.empty()) unsetenv("ONEDNN_MAX_CPU_ISA");
      else setenv("ONEDNN_MAX_CPU_ISA", isa.c_str(), 1);
      if (ours) setenv("GAN_ONEDNN_CAPPED_FROM", history.c_str(), 1);
      else unsetenv("GAN_ONEDNN_CAPPED_FROM");
    }
  }
  at::globalContext().setUserEnabledMkldnn(false);
  const MathsCheck without = check_float32_maths(torch::kCPU, tamper);
  if (!without.ok) throw fail(seen + "; without oneDNN: " + without.failure);
  return "oneDNN " + onednn_version() + " computes wrong float32 results on this CPU (" + seen +
         ", against float64); using LibTorch's own CPU kernels instead, which are right but slower for convolutions";
}
}  // namespace

const std::string& cpu_maths_note() { return g_cpu_note; }

std::string ensure_sound_cpu_maths(char** argv, const MathsTamper& tamper, const std::function<void()>& restart) {
  g_cpu_note = cpu_maths_verdict(argv, tamper, restart);
  return g_cpu_note;
}

std::string ensure_sound_device_maths(c10::Device device, const MathsTamper& tamper) {
  if (!device.is_cuda() || check_disabled()) return "";
  const MathsCheck first = check_float32_maths(device, tamper);
  if (first.ok) return "";
  const bool cudnn = at::globalContext().userEnabledCuDNN();
  std::string what = first.failure;
  if (cudnn) {
    at::globalContext().setUserEnabledCuDNN(false);
    const MathsCheck second = check_float32_maths(device, tamper);
    if (second.ok)
      return "cuDNN computes wrong float32 results on " + device.str() + " (" + what +
             ", against float64 on the CPU); using LibTorch's own CUDA kernels instead, which are right but slower";
    what += "; without cuDNN: " + second.failure;
  }
  throw UserError(kExitMaths, "LibTorch's float32 maths on " + device.str() +
                                  " fails the start-up check against float64 on the CPU (" + what + "; " +
                                  maths_libraries() +
                                  "): training would diverge or learn nothing. Check the GPU and its driver, or set "
                                  "GAN_SELF_CHECK=0 to run anyway");
}

}  // namespace gan
