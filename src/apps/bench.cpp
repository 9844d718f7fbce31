#include "gan/bench.h"

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <string>

#include "gan/adam.h"
#include "gan/augment.h"
#include "gan/cli.h"
#include "gan/cpu_allocator.h"
#include "gan/errors.h"
#include "gan/inception.h"
#include "gan/models.h"
#include "gan/platform.h"
#include "gan/self_check.h"
#include "gan/step.h"

#ifdef GAN_WITH_CUDA  // set by CMakeLists.txt when the LibTorch has CUDA (Debian's has no CUDA headers)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace gan {
namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// Best of `reps` timings of f() after one warm-up call, in seconds.
template <typename F>
double best_time(F&& f, int reps) {
  f();
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = clock_type::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

struct StepArgs {
  int image_size = 64, channels = 3, batch = 64, ngf = 64, ndf = 64, steps = 10, warmup = 3, threads = 0;
  std::string upconv = "auto", downconv = "auto", channels_last = "off", device = "cpu", amp = "off";
  std::string cuda_graphs = "auto";
  std::string augment = "off", policy;  // train.augment (off | diffaug | ada) and train.augment_policy
  double augment_p = -1;                // -1: 1 for diffaug, 0.5 for ada
};

double augment_p_of(const StepArgs& a) { return a.augment_p >= 0 ? a.augment_p : a.augment == "diffaug" ? 1.0 : 0.5; }

// Waits for the device's queued work (CUDA kernels run asynchronously); nothing to wait for on the CPU.
void sync(const c10::Device& dev) {
  if (dev.is_cuda()) torch::cuda::synchronize(dev.index());
}

// Peak memory the caching allocator handed out on a CUDA device since the process started, in MiB; -1 elsewhere.
double peak_device_mib(const c10::Device& dev) {
#ifdef GAN_WITH_CUDA
  if (dev.is_cuda()) return c10::cuda::CUDACachingAllocator::getDeviceStats(dev.index()).allocated_bytes[0].peak / 1048576.0;
#endif
  (void)dev;
  return -1;
}

// Trains `steps` steps (after `warmup`) of the trainer's own step on random data: img/s, peak RSS and (CUDA) peak
// device memory. As in training, nothing is read back inside the timed steps: the losses are summed on the device.
int run_step(const StepArgs& a) {
  const int threads = configure_threads(a.threads);
  if (const std::string w = oversubscription_warning(threads, "--threads"); !w.empty())
    std::fprintf(stderr, "gan-bench: warning: %s (figures measured now understate this machine)\n", w.c_str());
  c10::Device dev(torch::kCPU);
  try {
    dev = resolve_device(a.device);
  } catch (const UserError&) {
    throw UserError(kExitUsage, "--device " + a.device + " is not usable here: use cpu, auto, or a CUDA device that "
                                "this build and machine have");
  }
  if (const std::string note = ensure_sound_device_maths(dev); !note.empty())
    std::fprintf(stderr, "gan-bench: warning: %s\n", note.c_str());
  ModelConfig mc;
  mc.image_size = a.image_size;
  mc.channels = a.channels;
  mc.ngf = a.ngf;
  mc.ndf = a.ndf;
  TrainConfig tc;
  tc.upconv = a.upconv;
  tc.downconv = a.downconv;
  tc.channels_last = a.channels_last;
  tc.amp = a.amp;
  tc.cuda_graphs = a.cuda_graphs;
  tc.augment = a.augment;
  tc.augment_policy = a.policy;
  torch::manual_seed(1);
  Generator g(mc);
  Discriminator d(mc);
  dcgan_init(*g);
  dcgan_init(*d);
  g->to(dev);
  d->to(dev);
  const StepOptions opts = step_options(tc, dev);
  if (!opts.amp_note.empty()) std::fprintf(stderr, "gan-bench: %s\n", opts.amp_note.c_str());
  prepare_models(g, d, opts);
  std::string forms, dforms;  // train.upconv / downconv auto: measured per layer, as the trainer does
  if (!dev.is_cuda() && opts.amp == "off") {
    if (opts.upconv == UpconvMode::kAuto) set_upconv_forms(*g, forms = tune_upconv(*g, a.batch, opts.channels_last));
    if (opts.downconv == DownconvMode::kAuto) set_downconv_forms(*d, dforms = tune_downconv(*d, a.batch));
    release_freed_memory();
  }
  auto adam = [&](torch::nn::Module& m) {
    return DeviceAdam(m.parameters(), torch::optim::AdamOptions(tc.lr).betas({tc.beta1, tc.beta2}));
  };
  DeviceAdam opt_g = adam(*g), opt_d = adam(*d);  // the trainer's optimizer
  GanStep stepper(g, d, opt_g, opt_d, opts);
  at::Tensor real = (torch::rand({a.batch, mc.channels, mc.image_size, mc.image_size}) * 2 - 1).to(dev);  // [B, C, S, S]
  at::Tensor sum = torch::zeros({}, torch::TensorOptions().device(dev));
  auto one = [&](std::int64_t i) {
    StepInput in;
    in.real = {real};
    in.z = {torch::randn({a.batch, mc.nz}, torch::TensorOptions().device(dev))};  // [B, nz]
    in.augment_p = a.augment == "off" ? 0.0 : augment_p_of(a);
    auto r = stepper.run(in, i);
    if (r.status == StepResult::kSkipped) return;  // fp16 overflow: the scale is lowered, as in training
    if (r.status != StepResult::kOk) throw UserError(kExitInternal, "benchmark step diverged");
    sum += r.stats[0];
  };
  // A CUDA graph is captured (and checked against an eager step) after kGraphWarmup steps: not in the timed ones.
  const int warmup = opts.cuda_graph ? std::max(a.warmup, kGraphWarmup + 2) : a.warmup;
  for (int i = 0; i < warmup; ++i) one(i + 1);
  sync(dev);
  auto t0 = clock_type::now();
  for (int i = 0; i < a.steps; ++i) one(warmup + i + 1);
  sync(dev);
  const double dt = seconds_since(t0);
  if (!opts.check_every_step && stepper.take_deferred_divergence().first)
    throw UserError(kExitInternal, "benchmark step diverged");
  const double ips = a.steps * a.batch / dt;
  const ModelFlops f = model_flops(mc);
  char augment[200] = "off";
  if (a.augment != "off")
    std::snprintf(augment, sizeof augment, "%s p=%.2f policy=%s", a.augment.c_str(), augment_p_of(a),
                  augment_policy_text(opts.augment).c_str());
  std::printf("step.config %dx%d nc=%d batch=%d ngf=%d ndf=%d threads=%d upconv=%s downconv=%s channels_last=%s "
              "device=%s amp=%s augment=%s\n",
              a.image_size, a.image_size, a.channels, a.batch, a.ngf, a.ndf, threads, a.upconv.c_str(),
              a.downconv.c_str(), opts.channels_last ? "on" : "off", dev.str().c_str(), opts.amp.c_str(), augment);
  if (!forms.empty()) std::printf("step.upconv_forms %s\n", forms.c_str());
  if (!dforms.empty()) std::printf("step.downconv_forms %s\n", dforms.c_str());
  if (dev.is_cuda()) std::printf("step.cuda_graph %s\n", stepper.graph_state().c_str());
  std::printf("step.img_per_s %.2f\n", ips);
  std::printf("step.ms %.1f\n", 1000 * dt / a.steps);
  std::printf("step.gflop_per_image %.4f\n", f.step() / 1e9);
  std::printf("step.gflop_per_s %.1f\n", ips * f.step() / 1e9);
  std::printf("step.peak_rss_mib %.0f\n", peak_rss_mib());
  if (dev.is_cuda()) std::printf("step.peak_device_mib %.0f\n", peak_device_mib(dev));
  const CpuAllocatorStats cs = cpu_allocator_stats();
  if (cs.installed) std::printf("step.cpu_blocks %s\n", describe(cs).c_str());
  std::printf("step.loss_check %.4f\n", sum.item<double>() / (warmup + a.steps));
  return 0;
}

// GEMM and convolution throughput: the ceiling the training step is measured against.
int run_peak(int threads_arg, int reps) {
  const int threads = configure_threads(threads_arg);
  torch::NoGradGuard no_grad;
  auto a = torch::randn({2048, 2048}), b = torch::randn({2048, 2048});
  const double t_mm = best_time([&] { (void)a.mm(b); }, reps);
  std::printf("peak.threads %d\n", threads);
  std::printf("peak.gemm_gflop_per_s %.1f\n", 2.0 * 2048 * 2048 * 2048 / t_mm / 1e9);
  // The discriminator's middle layer at 64x64 (k4 s2 p1, 128 -> 256 channels at 16x16, batch 64), and a 3x3 conv.
  double best = 0;
  struct Shape { int cin, cout, h, k, s, p; };
  for (Shape sh : {Shape{128, 256, 16, 4, 2, 1}, Shape{256, 256, 16, 3, 1, 1}}) {
    auto x = torch::randn({64, sh.cin, sh.h, sh.h}), w = torch::randn({sh.cout, sh.cin, sh.k, sh.k});
    const int ho = (sh.h + 2 * sh.p - sh.k) / sh.s + 1;
    const double flops = 2.0 * 64 * sh.cout * sh.cin * sh.k * sh.k * ho * ho;
    const double t = best_time([&] { (void)torch::conv2d(x, w, {}, sh.s, sh.p); }, reps);
    std::printf("peak.conv_k%d_s%d_%dx%d_gflop_per_s %.1f\n", sh.k, sh.s, sh.h, sh.h, flops / t / 1e9);
    best = std::max(best, flops / t / 1e9);
  }
  std::printf("peak.conv_gflop_per_s %.1f\n", best);
  return 0;
}

// The augmentation of one batch (train.augment at p) as the step uses it: forward, and forward + backward (G learns
// through it), fused (augment) against op by op (augment_op_by_op, the definition), from the same draws.
// The FID Inception's features (gan-eval with pytorch-fid's weights; random weights here, the same work): img/s over
// `reps` rounds of a.batch images of a.image_size, in chunks of `chunk`, both memory layouts.
int run_inception(const StepArgs& a, int reps, std::int64_t chunk) {
  configure_threads(a.threads);
  torch::manual_seed(1);
  const c10::Device dev = resolve_device(a.device);
  if (chunk == 0) chunk = fid_inception_chunk(dev);
  FidInception net;
  net->to(dev);
  const at::Tensor x = (torch::rand({a.batch, a.channels, a.image_size, a.image_size}) * 2 - 1).to(dev);  // [B, C, S, S]
  std::printf("inception: %d images of %dx%dx%d per round, chunks of %lld, %d threads, %s\n", a.batch, a.channels,
              a.image_size, a.image_size, static_cast<long long>(chunk), at::get_num_threads(), dev.str().c_str());
  for (bool cl : {false, true}) {
    net->set_channels_last(cl);
    net->features(x.narrow(0, 0, std::min<std::int64_t>(chunk, a.batch)), chunk);  // warm-up
    sync(dev);
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) net->features(x, chunk);
    sync(dev);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // 11.4 GFLOP per image: 5.71 G multiply-adds (torchvision's count for Inception-v3 at 299x299), 2 FLOP each.
    std::printf("inception.%s img/s %.2f (%.0f GFLOP/s)\n", cl ? "channels_last" : "nchw", reps * a.batch / s,
                reps * a.batch * 11.42 / s);
  }
  std::printf("inception.peak_rss_mib %.0f\n", peak_rss_mib());
  return 0;
}

int run_augment(const StepArgs& a, int reps) {
  configure_threads(a.threads);
  const std::string mode = a.augment == "off" ? "ada" : a.augment;
  const std::vector<AugOp> ops = parse_augment_policy(a.policy, mode);
  const double p = augment_p_of(a);
  torch::manual_seed(1);
  const at::Tensor x = torch::rand({a.batch, a.channels, a.image_size, a.image_size}) * 2 - 1;  // [B, C, S, S]
  const at::Tensor w = torch::randn_like(x);
  std::printf("augment.config %dx%d nc=%d batch=%d mode=%s policy=%s p=%.2f\n", a.image_size, a.image_size,
              a.channels, a.batch, mode.c_str(), augment_policy_text(ops).c_str(), p);
  double ms[2][2];
  for (int fused = 0; fused < 2; ++fused) {
    auto f = fused ? augment : augment_op_by_op;
    ms[fused][0] = 1000 * best_time([&] {
      torch::NoGradGuard no_grad;
      torch::manual_seed(2);
      (void)f(x, ops, p, 0, 0);
    }, reps);
    ms[fused][1] = 1000 * best_time([&] {
      at::Tensor in = x.detach().requires_grad_();
      torch::manual_seed(2);
      (f(in, ops, p, 0, 0) * w).sum().backward();
    }, reps);
  }
  torch::NoGradGuard no_grad;
  torch::manual_seed(2);
  const at::Tensor one = augment(x, ops, p);
  torch::manual_seed(2);
  const double diff = (one - augment_op_by_op(x, ops, p)).abs().max().item<double>();
  std::printf("augment.op_by_op_ms forward %.2f forward_backward %.2f\n", ms[0][0], ms[0][1]);
  std::printf("augment.fused_ms forward %.2f forward_backward %.2f\n", ms[1][0], ms[1][1]);
  std::printf("augment.speedup forward %.2fx forward_backward %.2fx\n", ms[0][0] / ms[1][0], ms[0][1] / ms[1][1]);
  std::printf("augment.max_abs_difference %.3g\n", diff);
  return 0;
}

// Forward + backward (input and weight gradients) of each generator layer in both forms.
int run_layers(const StepArgs& a, int reps) {
  configure_threads(a.threads);
  ModelConfig mc;
  mc.image_size = a.image_size;
  mc.channels = a.channels;
  mc.ngf = a.ngf;
  Generator g(mc);
  at::Tensor x = torch::randn({a.batch, mc.nz, 1, 1});  // [B, nz, 1, 1]
  for (auto& m : g->modules(false)) {
    auto* u = m->as<UpConvImpl>();
    if (!u) continue;
    at::Tensor in = x.detach().requires_grad_();
    at::Tensor w = u->weight.detach().requires_grad_();
    double ms[4];
    for (int mode = 0; mode < 4; ++mode) {
      const bool wino = mode == 3 && u->stride == 2 && upconv_winograd_applies(in, w);
      auto f = [&] {
        at::Tensor y = mode == 0         ? torch::conv_transpose2d(in, w, {}, u->stride, u->padding)
                       : u->stride == 1  ? upconv_from_1x1(in, w)
                       : mode == 1       ? upconv_phase(in, w)
                       : mode == 2 || !wino ? upconv_gemm(in, w)
                                         : upconv_winograd(in, w);
        y.backward(torch::ones_like(y));
        in.mutable_grad() = at::Tensor();
        w.mutable_grad() = at::Tensor();
      };
      ms[mode] = 1000 * best_time(f, reps);
    }
    std::printf("layer.%ld_to_%ld_at_%ldx%ld transposed_ms %.1f phase_ms %.1f gemm_ms %.1f winograd_ms %.1f\n",
                (long)u->weight.size(0), (long)u->weight.size(1), (long)x.size(2), (long)x.size(3), ms[0], ms[1],
                ms[2], ms[3]);
    torch::NoGradGuard no_grad;
    x = torch::conv_transpose2d(x, u->weight, {}, u->stride, u->padding);  // next layer's input shape
  }
  return 0;
}

}  // namespace

ModelFlops model_flops(const ModelConfig& mc) {
  ModelFlops f;
  torch::NoGradGuard no_grad;
  Generator g(mc);
  Discriminator d(mc);
  // Walk the layers with a 1-image input and count 2 * out_elements * (in_channels * k * k) per convolution.
  at::Tensor x = torch::zeros({1, mc.nz, 1, 1});
  for (auto& m : g->modules(false))
    if (auto* u = m->as<UpConvImpl>()) {
      const double in_px = static_cast<double>(x.size(2) * x.size(3));
      f.g += 2.0 * in_px * u->weight.numel();  // every input pixel meets the whole [in, out, 4, 4] kernel
      x = torch::conv_transpose2d(x, u->weight, {}, u->stride, u->padding);
    }
  x = torch::zeros({1, mc.channels, mc.image_size, mc.image_size});
  for (auto& m : d->modules(false))
    if (auto* c = m->as<DownConvImpl>()) {
      x = torch::conv2d(x, c->weight, {}, c->stride, c->padding);
      f.d += 2.0 * static_cast<double>(x.size(2) * x.size(3)) * c->weight.numel();
    }
  return f;
}

double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

int bench_main(int argc, char** argv) {
  std::string blas = ensure_fast_blas(argv);
  keep_freed_memory();
  return guarded("gan-bench", [&]() -> int {
    CLI::App app{"gan-bench: training-step, layer and peak throughput on this machine (see scripts/bench.sh)"};
    app.require_subcommand(1);
    StepArgs a;
    int reps = 5;
    auto add_model = [&](CLI::App* c) {
      c->add_option("--image-size", a.image_size, "16..256, power of two")->check(CLI::IsMember({16, 32, 64, 128, 256}));
      c->add_option("--channels", a.channels, "1 or 3")->check(CLI::IsMember({1, 3}));
      c->add_option("--batch", a.batch, "images per step")->check(CLI::Range(2, 4096));
      c->add_option("--ngf", a.ngf)->check(CLI::Range(1, 1024));
      c->add_option("--ndf", a.ndf)->check(CLI::Range(1, 1024));
      c->add_option("--threads", a.threads, "0 = all cores")->check(CLI::Range(0, 1024));
    };
    auto* step = app.add_subcommand("step", "img/s of the trainer's step on random data");
    add_model(step);
    step->add_option("--steps", a.steps, "timed steps")->check(CLI::Range(1, 100000));
    step->add_option("--warmup", a.warmup, "untimed steps first")->check(CLI::Range(0, 1000));
    step->add_option("--upconv", a.upconv)->check(CLI::IsMember({"auto", "phase", "gemm", "winograd", "transposed"}));
    step->add_option("--downconv", a.downconv)->check(CLI::IsMember({"auto", "winograd", "direct"}));
    step->add_option("--channels-last", a.channels_last, "on | off | auto (on for CUDA)")
        ->check(CLI::IsMember({"on", "off", "auto"}));
    step->add_option("--device", a.device, "cpu | cuda | cuda:N | auto");
    step->add_option("--amp", a.amp, "train.amp: off | bf16 (CUDA, or a CPU with native bf16) | fp16 (CUDA) | auto")
        ->check(CLI::IsMember({"off", "bf16", "fp16", "auto"}));
    auto add_augment = [&](CLI::App* c) {
      c->add_option("--augment", a.augment, "train.augment: off | diffaug | ada")
          ->check(CLI::IsMember({"off", "diffaug", "ada"}));
      c->add_option("--augment-policy", a.policy, "train.augment_policy (\"\": the mode's default)");
      c->add_option("--augment-p", a.augment_p, "probability of each op (default: 1 diffaug, 0.5 ada)")
          ->check(CLI::Range(0.0, 1.0));
    };
    add_augment(step);
    step->add_option("--cuda-graphs", a.cuda_graphs, "CUDA: replay the step as one graph (after warm-up): auto|on|off")
        ->check(CLI::IsMember({"auto", "on", "off"}));
    auto* layers = app.add_subcommand("layers", "each generator layer: transposed vs phase form, forward+backward");
    add_model(layers);
    layers->add_option("--reps", reps)->check(CLI::Range(1, 1000));
    auto* aug = app.add_subcommand("augment", "train.augment's ops on one batch: fused vs op by op (default ada)");
    add_model(aug);
    add_augment(aug);
    aug->add_option("--reps", reps)->check(CLI::Range(1, 1000));
    auto* inc = app.add_subcommand("inception", "the FID Inception's features (gan-eval's extractor): img/s, both layouts");
    std::int64_t chunk = 0;
    inc->add_option("--image-size", a.image_size, "input side before the resize to 299")->check(CLI::Range(8, 1024));
    inc->add_option("--channels", a.channels, "1 or 3")->check(CLI::IsMember({1, 3}));
    inc->add_option("--batch", a.batch, "images per round")->check(CLI::Range(1, 4096));
    inc->add_option("--chunk", chunk, "images per forward pass (0 = gan-eval's: 1 on the CPU, 64 on CUDA)")
        ->check(CLI::Range(0, 4096));
    inc->add_option("--threads", a.threads, "0 = all cores")->check(CLI::Range(0, 1024));
    inc->add_option("--device", a.device, "cpu | cuda | cuda:N | auto");
    inc->add_option("--reps", reps)->check(CLI::Range(1, 1000));
    app.add_subcommand("blas", "prints the OPENBLAS_CORETYPE this program runs with (empty: OpenBLAS's own choice)");
    auto* peak = app.add_subcommand("peak", "GEMM and convolution GFLOP/s");
    peak->add_option("--threads", a.threads)->check(CLI::Range(0, 1024));
    peak->add_option("--reps", reps)->check(CLI::Range(1, 1000));
    if (int code = parse_command_line(app, argc, argv, "gan-bench"); code >= 0) return code;
    if (app.got_subcommand("blas")) {
      const char* core = std::getenv("OPENBLAS_CORETYPE");
      std::printf("%s\n", core ? core : "");
      return 0;
    }
    // Before any output: a restart would print it again.
    if (const std::string note = ensure_sound_cpu_maths(argv); !note.empty())
      std::fprintf(stderr, "gan-bench: warning: %s\n", note.c_str());
    std::printf("bench.blas %s\n", blas.c_str());
    if (*step) return run_step(a);
    if (*layers) return run_layers(a, reps);
    if (*aug) return run_augment(a, reps);
    if (*inc) return run_inception(a, reps, chunk);
    return run_peak(a.threads, reps);
  });
}

}  // namespace gan
