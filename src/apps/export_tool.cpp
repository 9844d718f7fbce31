// gan-export: a network of a gan-train checkpoint as a plain state_dict for PyTorch (.pt) or as safetensors.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "gan/checkpoint.h"
#include "gan/cli.h"
#include "gan/errors.h"
#include "gan/files.h"
#include "gan/models.h"
#include "gan/platform.h"
#include "gan/weights.h"

namespace gan {

int export_main(int argc, char** argv) {
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  return guarded("gan-export", [&]() -> int {
    CLI::App app{"gan-export: write a network of a gan-train checkpoint as a PyTorch state_dict or safetensors file"};
    std::string checkpoint, out, net = "g", format;
    app.add_option("checkpoint", checkpoint, "checkpoint .pt written by gan-train, a run folder or RUN/best")->required();
    app.add_option("--out", out, "file to write: NAME.pt (torch.load) or NAME.safetensors")->required();
    app.add_option("--net", net, "g (generator) | g_ema (its EMA) | d (discriminator)")
        ->check(CLI::IsMember({"g", "g_ema", "d"}));
    app.add_option("--format", format, "pt | safetensors (default: from --out's extension)")
        ->check(CLI::IsMember({"pt", "safetensors"}));
    if (int code = parse_command_line(app, argc, argv, "gan-export"); code >= 0) return code;
    if (format.empty()) {
      const bool st = out.size() > 12 && out.compare(out.size() - 12, 12, ".safetensors") == 0;
      format = st ? "safetensors" : "pt";
    }
    checkpoint = resolve_checkpoint_arg(checkpoint);
    const Config cfg = read_checkpoint_config(checkpoint);
    StateDict weights;
    if (net == "d") {
      Generator g(cfg.model);
      Discriminator d(cfg.model);
      load_checkpoint(checkpoint, torch::kCPU, g, &d);
      weights = state_dict(*d);
    } else {
      SamplingModel m = load_generator(checkpoint, torch::kCPU);  // the EMA weights when the checkpoint has them
      if (net == "g_ema" && !m.ema)
        throw UserError(kExitCheckpoint, "checkpoint " + checkpoint + " has no EMA generator (train.ema_decay was 0): "
                                         "export --net g");
      if (net == "g" && m.ema) {  // the trained generator itself
        m.g = Generator(cfg.model);
        load_checkpoint(checkpoint, torch::kCPU, m.g);
      }
      weights = state_dict(*m.g);
    }
    const std::string yaml = to_yaml(cfg);
    if (format == "safetensors") {
      save_safetensors(out, weights, {{"config", yaml}, {"net", net}, {"format", "gan-trainer state_dict"},
                                      {"versions", versions_json()}});
    } else {
      save_pt(out, weights);
      const auto dot = out.rfind('.');
      const std::string side = (dot == std::string::npos ? out : out.substr(0, dot)) + ".yaml";
      write_file_atomic(side, yaml);  // the config that builds the network (python/gan_models.py reads it)
      spdlog::info("wrote {} (its config: {})", side, side);
    }
    std::int64_t params = 0;
    for (const auto& [name, t] : weights) params += t.numel();
    spdlog::info("wrote {}: {} of {} ({} tensors, {} values)", out, net, checkpoint, weights.size(), params);
    return kExitOk;
  });
}

}  // namespace gan
