// Weights to and from PyTorch: gan-export's .pt and safetensors files read by PyTorch (tests/pytorch_interop.py with
// Debian's python3-torch and python/gan_models.py), the same images from the exported generator in PyTorch as from
// gan-sample, the DCGAN example's networks loading an export, and gan-train starting from PyTorch's weights; plus the
// C++ readers on their own.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>

#include "gan/checkpoint.h"
#include "gan/config.h"
#include "gan/errors.h"
#include "gan/files.h"
#include "gan/models.h"
#include "gan/weights.h"
#include "image_fixtures.h"
#include "test_util.h"

namespace fs = std::filesystem;
using testutil::expect_user_error;
using testutil::run;
using testutil::TempDir;

namespace {

bool have_python_torch() {
  std::string out;
  return run("/usr/bin/python3 -c 'import torch, numpy, yaml'", &out) == 0;
}

const std::string kScript = std::string(GAN_SOURCE_DIR) + "/tests/pytorch_interop.py";

// A checkpoint of a model built from `m` (seeded DCGAN init, BatchNorm statistics made non-trivial), no training.
std::string make_checkpoint(const TempDir& dir, const std::string& name, gan::ModelConfig m) {
  gan::Config c;
  c.model = m;
  c.name = name;
  torch::manual_seed(17);
  gan::Generator g(m);
  gan::Discriminator d(m);
  gan::dcgan_init(*g);
  gan::dcgan_init(*d);
  {
    torch::NoGradGuard no_grad;
    for (auto* mod : {static_cast<torch::nn::Module*>(g.get()), static_cast<torch::nn::Module*>(d.get())})
      for (auto& b : mod->named_buffers()) {
        if (b.key().find("running_mean") != std::string::npos) b.value().normal_(0, 0.1);
        if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 1.5);
      }
  }
  torch::optim::Adam og(g->parameters()), od(d->parameters());
  gan::TrainingState st;
  st.step = 3;
  st.rng_state = torch::zeros({8}, torch::kByte);
  st.fixed_noise = gan::sample_latent(m, 4);
  if (m.conditional) st.fixed_labels = torch::zeros({4}, torch::kLong);
  const std::string path = dir / (name + ".pt");
  gan::save_checkpoint(path, c, g, d, og, od, st);
  return path;
}

// D's logits on the images of images.npy (with the labels of z_labels.npy), as LibTorch computes them.
void write_d_logits(const std::string& ckpt, const std::string& d) {
  gan::Config c = gan::read_checkpoint_config(ckpt);
  gan::Generator g(c.model);
  gan::Discriminator dis(c.model);
  gan::load_checkpoint(ckpt, torch::kCPU, g, &dis);
  dis->eval();
  torch::NoGradGuard no_grad;
  at::Tensor labels = fs::exists(d + "/z_labels.npy") ? gan::load_npy(d + "/z_labels.npy") : at::Tensor();
  gan::save_npy(d + "/d_logits.npy", dis->forward(gan::load_npy(d + "/images.npy"), labels));
}

std::string exe(const char* path) { return std::string(path); }

}  // namespace

TEST(Weights, PtAndSafetensorsRoundTripAndMismatchesAreNamed) {
  TempDir dir;
  gan::ModelConfig m;
  m.image_size = 16;
  m.nz = 8;
  m.ngf = m.ndf = 4;
  torch::manual_seed(2);
  gan::Generator g(m), other(m);
  gan::dcgan_init(*g);
  const gan::StateDict sd = gan::state_dict(*g);
  gan::save_pt(dir / "g.pt", sd);
  gan::save_safetensors(dir / "g.safetensors", sd, {{"config", "model:\n  nz: 8\n"}, {"note", "a \"quoted\"\ttext"}});
  for (const char* f : {"g.pt", "g.safetensors"}) {
    std::map<std::string, std::string> meta;
    const gan::StateDict back = gan::load_weights_file(dir / f, &meta);
    ASSERT_EQ(back.size(), sd.size()) << f;
    gan::load_state_dict(*other, back, f);
    for (const auto& [name, t] : sd) EXPECT_TRUE(torch::equal(t, other->named_parameters().contains(name)
                                                                       ? other->named_parameters()[name]
                                                                       : other->named_buffers()[name]))
                                          << f << " " << name;
    if (std::string(f) == "g.safetensors") {
      EXPECT_EQ(meta["config"], "model:\n  nz: 8\n");
      EXPECT_EQ(meta["note"], "a \"quoted\"\ttext");
    }
  }
  // Another width: every differing name is listed in one line.
  gan::ModelConfig wide = m;
  wide.ngf = 8;
  gan::Generator w(wide);
  expect_user_error([&] { gan::load_state_dict(*w, sd, "g.pt"); }, gan::kExitCheckpoint,
                    {"g.pt does not fit the model:", "different shapes main.0.weight [8, 8, 4, 4] vs model [8, 16, 4, 4]", "and 5 more"});
  gan::StateDict fewer(sd.begin() + 1, sd.end());
  fewer.emplace_back("extra.weight", torch::zeros({1}));
  expect_user_error([&] { gan::load_state_dict(*other, fewer, "x.pt"); }, gan::kExitCheckpoint,
                    {"missing main.0.weight", "unexpected extra.weight"});
  // Not weights at all, and a truncated safetensors file.
  fixtures::write_file(dir / "junk.pt", fixtures::Bytes{'h', 'e', 'l', 'l', 'o', '!', '!', '!', '!', '!'});
  expect_user_error([&] { gan::load_weights_file(dir / "junk.pt"); }, gan::kExitCheckpoint,
                    {"junk.pt", "neither a PyTorch file"});
  const std::string st = gan::read_file(dir / "g.safetensors");
  gan::write_file_atomic(dir / "cut.safetensors", st.substr(0, st.size() - 100));
  expect_user_error([&] { gan::load_weights_file(dir / "cut.safetensors"); }, gan::kExitCheckpoint,
                    {"cut.safetensors", "truncated"});
  // .npy: round trip of floats and of integers.
  const at::Tensor z = torch::randn({5, 8});
  gan::save_npy(dir / "z.npy", z);
  EXPECT_TRUE(torch::equal(gan::load_npy(dir / "z.npy"), z));
  gan::save_npy(dir / "l.npy", torch::arange(7, torch::kLong));
  EXPECT_TRUE(torch::equal(gan::load_npy(dir / "l.npy"), torch::arange(7, torch::kLong)));
}

TEST(PyTorchInterop, ExportedNetworksLoadStrictlyAndGiveTheSameImagesAndLogits) {
  if (!have_python_torch()) GTEST_SKIP() << "no python3-torch (Debian package); CI installs it";
  TempDir dir;
  struct Case {
    const char* name;
    std::function<void(gan::ModelConfig&)> set;
  };
  const std::vector<Case> cases{
      {"plain", [](gan::ModelConfig&) {}},
      {"conditional", [](gan::ModelConfig& m) { m.conditional = true, m.num_classes = 3, m.class_embed = 5; }},
      {"sn-mbstd-layer", [](gan::ModelConfig& m) { m.spectral_norm = true, m.minibatch_std = true, m.d_norm = "layer"; }},
      {"concat-instance-rgb",
       [](gan::ModelConfig& m) {
         m.conditional = true, m.num_classes = 4, m.d_conditioning = "concat", m.d_norm = "instance", m.channels = 3;
       }},
  };
  for (const auto& c : cases) {
    gan::ModelConfig m;
    m.image_size = 16;
    m.nz = 12;
    m.ngf = m.ndf = 8;
    c.set(m);
    const std::string d = dir / c.name;
    fs::create_directories(d);
    const std::string ckpt = make_checkpoint(dir, c.name, m);
    std::string out;
    ASSERT_EQ(run(exe(GAN_EXPORT_EXE) + " " + ckpt + " --out " + d + "/G.pt", &out), 0) << out;
    ASSERT_EQ(run(exe(GAN_EXPORT_EXE) + " " + ckpt + " --net d --out " + d + "/D.pt", &out), 0) << out;
    ASSERT_EQ(run(exe(GAN_EXPORT_EXE) + " " + ckpt + " --out " + d + "/G.safetensors", &out), 0) << out;
    ASSERT_EQ(run(exe(GAN_SAMPLE_EXE) + " --checkpoint " + ckpt + " --n 12 --save-latents " + d + "/z.npy" +
                      " --save-images " + d + "/images.npy",
                  &out),
              0)
        << out;
    EXPECT_EQ(fs::exists(d + "/z_labels.npy"), m.conditional) << c.name;
    write_d_logits(ckpt, d);
    ASSERT_EQ(run("/usr/bin/python3 " + kScript + " verify " + d, &out), 0) << c.name << "\n" << out;
    std::printf("%s: %s", c.name, out.c_str());
    // The same images from the exported file through gan-sample (its config from the safetensors metadata).
    ASSERT_EQ(run(exe(GAN_SAMPLE_EXE) + " --checkpoint " + d + "/G.safetensors --latents " + d + "/z.npy" +
                      " --save-images " + d + "/again.npy",
                  &out),
              0)
        << out;
    EXPECT_TRUE(torch::equal(gan::load_npy(d + "/again.npy"), gan::load_npy(d + "/images.npy"))) << c.name;
  }
}

TEST(PyTorchInterop, TheDcganExampleLoadsAnExported64x64Model) {
  if (!have_python_torch()) GTEST_SKIP() << "no python3-torch (Debian package); CI installs it";
  TempDir dir;
  gan::ModelConfig m;
  m.image_size = 64;
  m.channels = 3;
  m.nz = 100;
  m.ngf = m.ndf = 8;  // the example's structure at a small width
  const std::string ckpt = make_checkpoint(dir, "dcgan", m);
  std::string out;
  ASSERT_EQ(run(exe(GAN_EXPORT_EXE) + " " + ckpt + " --out " + (dir / "G.pt"), &out), 0) << out;
  ASSERT_EQ(run(exe(GAN_EXPORT_EXE) + " " + ckpt + " --net d --out " + (dir / "D.pt"), &out), 0) << out;
  ASSERT_EQ(run("/usr/bin/python3 " + kScript + " dcgan " + dir.str(), &out), 0) << out;
  std::printf("%s", out.c_str());
  // The example's own checkpoint file (an OrderedDict) samples in gan-sample: the same images as the checkpoint.
  ASSERT_EQ(run(exe(GAN_SAMPLE_EXE) + " --checkpoint " + ckpt + " --seeds 0-3 --save-images " + (dir / "a.npy"), &out),
            0)
      << out;
  ASSERT_EQ(run(exe(GAN_SAMPLE_EXE) + " --checkpoint " + (dir / "netG_epoch_0.pth") + " --config " + (dir / "G.yaml") +
                    " --seeds 0-3 --save-images " + (dir / "b.npy"),
                &out),
            0)
      << out;
  EXPECT_TRUE(torch::equal(gan::load_npy(dir / "a.npy"), gan::load_npy(dir / "b.npy")));
}

TEST(PyTorchInterop, TrainingStartsFromWeightsSavedByPyTorch) {
  if (!have_python_torch()) GTEST_SKIP() << "no python3-torch (Debian package); CI installs it";
  TempDir dir;
  fixtures::Bytes px;
  for (int i = 0; i < 32; ++i)
    for (int k = 0; k < 256; ++k) px.push_back(static_cast<std::uint8_t>((k * 7 + i * 3) % 251));
  fixtures::write_file(dir / "d-idx3-ubyte", fixtures::idx_images(32, 16, 16, px));
  gan::Config cfg = testutil::tiny_train_config(dir, dir / "d-idx3-ubyte", 1);
  cfg.train.lr = 1e-9;  // one step that hardly moves the weights
  gan::write_file_atomic(dir / "config.yaml", gan::to_yaml(cfg));
  std::string out;
  ASSERT_EQ(run("/usr/bin/python3 " + kScript + " write-init " + dir.str(), &out), 0) << out;
  ASSERT_EQ(run(exe(GAN_TRAIN_EXE) + " --config " + (dir / "config.yaml") + " --init-from " + (dir / "pyG.pt") +
                    " --init-from d=" + (dir / "pyD.pt"),
                &out),
            0)
      << out;
  EXPECT_NE(out.find("generator initialised from"), std::string::npos) << out;
  const std::string ckpt = dir / "runs/tiny/checkpoints/latest.pt";
  ASSERT_EQ(run(exe(GAN_EXPORT_EXE) + " " + ckpt + " --out " + (dir / "G1.pt"), &out), 0) << out;
  ASSERT_EQ(run(exe(GAN_EXPORT_EXE) + " " + ckpt + " --net d --out " + (dir / "D1.pt"), &out), 0) << out;
  // After one step at lr 1e-9 the parameters are PyTorch's to within 1e-6 (BatchNorm statistics moved: compared
  // only where floating-point and close; the test's compare allows 1e-6 on everything it compares).
  ASSERT_EQ(run("/usr/bin/python3 -c \"import torch; a = torch.load('" + (dir / "pyG.pt") + "', weights_only=True); "
                "b = torch.load('" + (dir / "G1.pt") + "', weights_only=True); "
                "print(max((a[k] - b[k]).abs().max().item() for k in a if 'running' not in k and 'num_batches' not in k))\"",
                &out),
            0)
      << out;
  EXPECT_LT(std::stod(out), 1e-6) << out;
  // A file for another architecture is one line naming what differs.
  gan::Config wide = cfg;
  wide.model.ngf = 16;
  wide.output.name = "wide";
  gan::write_file_atomic(dir / "wide.yaml", gan::to_yaml(wide));
  EXPECT_EQ(run(exe(GAN_TRAIN_EXE) + " --config " + (dir / "wide.yaml") + " --init-from " + (dir / "pyG.pt"), &out), 4)
      << out;
  EXPECT_NE(out.find("gan-train: error: --init-from " + (dir / "pyG.pt") + " (generator) does not fit the model: "
                     "different shapes main.0.weight"),
            std::string::npos)
      << out;
}

// What torch.save writes, read by src/io/pickle.cpp + weights.cpp: every layout and dtype PyTorch produces for
// state_dicts (tests/pytorch_interop.py write-torch-save), compared value for value with the .npy files written
// beside them, and the one-line errors for a checkpoint of several networks and for cut files. With
// GAN_TORCH_SAVE_FILES=DIR the files are those another PyTorch wrote there (e.g. trixie's 2.6: `python3
// tests/pytorch_interop.py write-torch-save DIR` in its chroot) instead of the local python3's.
TEST(Weights, ReadsWhatTorchSaveWritesInEveryLayout) {
  const char* given = std::getenv("GAN_TORCH_SAVE_FILES");
  if (!given && !have_python_torch()) GTEST_SKIP() << "no python3-torch (Debian package); CI installs it";
  TempDir dir;
  std::string out;
  if (given) ASSERT_EQ(run("cp -r " + std::string(given) + "/. " + dir.str(), &out), 0) << out;
  else ASSERT_EQ(run("/usr/bin/python3 " + kScript + " write-torch-save " + dir.str(), &out), 0) << out;
  std::istringstream expect(gan::read_file(dir / "expect.txt"));
  int files = 0;
  for (std::string line; std::getline(expect, line);) {
    std::istringstream words(line);
    std::string file;
    std::vector<std::string> keys;
    words >> file;
    for (std::string k; words >> k;) keys.push_back(k);
    gan::StateDict got;
    if (file.rfind("z_", 0) == 0) got.emplace_back(keys.at(0), gan::load_tensor_file(dir / file));
    else got = gan::load_weights_file(dir / file);
    ASSERT_EQ(got.size(), keys.size()) << file;
    for (size_t i = 0; i < keys.size(); ++i) {
      EXPECT_EQ(got[i].first, keys[i]) << file;  // in the file's order, "module." taken off ddp.pt's names
      const at::Tensor want = gan::load_npy(dir / (file + "." + keys[i] + ".npy"));
      const at::Tensor t = got[i].second;
      EXPECT_EQ(t.sizes(), want.sizes()) << file << " " << keys[i];
      EXPECT_TRUE(torch::equal(want.scalar_type() == torch::kLong ? t.to(torch::kLong) : t.to(torch::kDouble), want))
          << file << " " << keys[i];
    }
    ++files;
  }
  EXPECT_EQ(files, 10);
  const gan::StateDict mixed = gan::load_weights_file(dir / "mixed_legacy.pt");
  EXPECT_EQ(mixed[3].second.scalar_type(), torch::kHalf);
  EXPECT_EQ(mixed[4].second.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(mixed[6].second.scalar_type(), torch::kBool);
  // A checkpoint of two networks: the line says which entries are state_dicts and how to save one alone.
  expect_user_error([&] { gan::load_weights_file(dir / "two_nets.pt"); }, gan::kExitCheckpoint,
                    {"two_nets.pt: entry 'netG' is a dict of 9, not a tensor",
                     "the file holds several state_dicts (netG, netD)", "torch.save(ckpt[\"netG\"], \"G.pt\")"});
  // Cut files: the legacy stream in its storages, the zip archive anywhere.
  for (const char* f : {"sd_legacy.pt", "sd_zip.pt"}) {
    const std::string bytes = gan::read_file(dir / f);
    gan::write_file_atomic(dir / "cut.pt", bytes.substr(0, bytes.size() - 40));
    expect_user_error([&] { gan::load_weights_file(dir / "cut.pt"); }, gan::kExitCheckpoint, {"cut.pt: "});
  }
  // gan-sample takes latents saved by torch.save in the legacy layout.
  gan::ModelConfig m;
  m.image_size = 16;
  m.nz = 8;
  m.ngf = m.ndf = 4;
  const std::string ckpt = make_checkpoint(dir, "z8", m);
  ASSERT_EQ(run(exe(GAN_SAMPLE_EXE) + " --checkpoint " + ckpt + " --latents " + (dir / "z_legacy.pt") +
                    " --save-images " + (dir / "x.npy"),
                &out),
            0)
      << out;
  EXPECT_EQ(gan::load_npy(dir / "x.npy").sizes(), (std::vector<int64_t>{4, 1, 16, 16}));
}

// A legacy state_dict of Conv2d(1, 2, 3) + BatchNorm2d(2), written here by PyTorch, read and then cut or damaged:
// each damage is one line naming the file.
TEST(Weights, LegacyStateDictAndDamagedFiles) {
  if (!have_python_torch()) GTEST_SKIP() << "no python3-torch (Debian package); CI installs it";
  TempDir dir;
  const std::string seed = dir / "legacy.pt";
  std::string out;
  ASSERT_EQ(run("/usr/bin/python3 -c \"import torch; torch.save(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), "
                "torch.nn.BatchNorm2d(2)).state_dict(), '" + seed + "', _use_new_zipfile_serialization=False)\"",
                &out),
            0)
      << out;
  const gan::StateDict sd = gan::load_weights_file(seed);
  ASSERT_EQ(sd.size(), 7u);
  EXPECT_EQ(sd[0].first, "0.weight");
  EXPECT_EQ(sd[0].second.sizes(), (std::vector<int64_t>{2, 1, 3, 3}));
  EXPECT_EQ(sd[6].first, "1.num_batches_tracked");
  EXPECT_EQ(sd[6].second.scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(sd[4].second, torch::zeros({2})));  // running_mean of a new BatchNorm
  EXPECT_TRUE(torch::equal(sd[5].second, torch::ones({2})));   // running_var
  const std::string bytes = gan::read_file(seed);
  gan::write_file_atomic(dir / "cut.pt", bytes.substr(0, bytes.size() - 20));
  expect_user_error([&] { gan::load_weights_file(dir / "cut.pt"); }, gan::kExitCheckpoint,
                    {"cut.pt: not a readable PyTorch file", "runs past the end of the file (truncated file?)"});
  gan::write_file_atomic(dir / "cut2.pt", bytes.substr(0, 300));
  expect_user_error([&] { gan::load_weights_file(dir / "cut2.pt"); }, gan::kExitCheckpoint,
                    {"cut2.pt: not a readable PyTorch file: pickle at byte"});
  std::string damaged = bytes;
  damaged[damaged.find("0.weight") - 5] = '\xff';  // an opcode torch.save never writes, before the first key
  gan::write_file_atomic(dir / "damaged.pt", damaged);
  expect_user_error([&] { gan::load_weights_file(dir / "damaged.pt"); }, gan::kExitCheckpoint,
                    {"damaged.pt: not a readable PyTorch file: pickle at byte"});
}
