#include <gtest/gtest.h>

#include <fstream>

#include "gan/config.h"
#include "test_util.h"

using gan::Config;
using gan::kExitUsage;
using testutil::expect_user_error;

TEST(Config, EmptyTextGivesDefaults) {
  Config c = gan::parse_config("", "empty.cfg");
  EXPECT_EQ(c.data.source, "fashion-mnist");
  EXPECT_EQ(c.model.nz, 100);
  EXPECT_EQ(c.model.ngf, 64);
  EXPECT_DOUBLE_EQ(c.train.lr, 2e-4);
  EXPECT_DOUBLE_EQ(c.train.beta1, 0.5);
  EXPECT_DOUBLE_EQ(c.train.beta2, 0.999);
}

TEST(Config, ParsesEverySection) {
  Config c = gan::parse_config(R"(
data:
  source: folder
  path: /tmp/images
  background: "#102030"
model:
  image_size: 128
  channels: 3
  ngf: 32
train:
  batch_size: 16
  lr: 1.0e-3
  steps: 50
output:
  dir: out
  grid_rows: 4
)", "x.cfg");
  EXPECT_EQ(c.data.source, "folder");
  EXPECT_EQ(c.data.path, "/tmp/images");
  EXPECT_EQ(c.data.background, "#102030");
  EXPECT_EQ(c.model.image_size, 128);
  EXPECT_EQ(c.model.channels, 3);
  EXPECT_EQ(c.model.ngf, 32);
  EXPECT_EQ(c.model.ndf, 64);  // untouched default
  EXPECT_EQ(c.train.batch_size, 16);
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-3);
  EXPECT_EQ(c.train.steps, 50);
  EXPECT_EQ(c.output.dir, "out");
  EXPECT_EQ(c.output.grid_rows, 4);
}

TEST(Config, UnknownKeySuggestsClosestAndNamesLine) {
  expect_user_error([] { gan::parse_config("train:\n  lr: 0.001\n  batch_sise: 8\n", "a.cfg"); }, kExitUsage,
                    {"a.cfg:3", "train.batch_sise", "did you mean 'batch_size'"});
}

TEST(Config, UnknownSectionSuggests) {
  expect_user_error([] { gan::parse_config("trian:\n  lr: 0.1\n", "a.cfg"); }, kExitUsage,
                    {"a.cfg:1", "unknown section 'trian'", "did you mean 'train'"});
}

TEST(Config, WrongTypeNamesKeyAndValue) {
  expect_user_error([] { gan::parse_config("train:\n  batch_size: lots\n", "b.cfg"); }, kExitUsage,
                    {"b.cfg:2", "train.batch_size must be an integer", "'lots'"});
  expect_user_error([] { gan::parse_config("train:\n  batch_size: 1.5\n", "b.cfg"); }, kExitUsage,
                    {"train.batch_size must be an integer"});
  expect_user_error([] { gan::parse_config("train:\n  lr: fast\n", "b.cfg"); }, kExitUsage,
                    {"train.lr must be a number"});
  expect_user_error([] { gan::parse_config("model:\n  ngf: [1, 2]\n", "b.cfg"); }, kExitUsage,
                    {"model.ngf must be an integer, got a list"});
  expect_user_error([] { gan::parse_config("model:\n  ngf:\n", "b.cfg"); }, kExitUsage, {"got no value"});
  expect_user_error([] { gan::parse_config("model: 5\n", "b.cfg"); }, kExitUsage, {"section 'model' must be a mapping"});
}

TEST(Config, OutOfRangeNamesBounds) {
  expect_user_error([] { gan::parse_config("train:\n  lr: 5\n", "c.cfg"); }, kExitUsage,
                    {"c.cfg:2", "train.lr = 5 is out of range"});
  expect_user_error([] { gan::parse_config("train:\n  batch_size: 0\n", "c.cfg"); }, kExitUsage,
                    {"train.batch_size = 0 is out of range [2, 65536]"});
  expect_user_error([] { gan::parse_config("model:\n  image_size: 512\n", "c.cfg"); }, kExitUsage,
                    {"model.image_size = 512 is out of range"});
}

TEST(Config, BadEnumListsChoices) {
  expect_user_error([] { gan::parse_config("data:\n  source: imagenet\n", "d.cfg"); }, kExitUsage,
                    {"d.cfg:2", "data.source = 'imagenet' is not one of: fashion-mnist | mnist | idx | folder"});
}

TEST(Config, ImageSizeMustBePowerOfTwo) {
  expect_user_error([] { gan::parse_config("model:\n  image_size: 48\n", "e.cfg"); }, kExitUsage,
                    {"e.cfg:2", "not a power of two"});
  expect_user_error([] { gan::parse_config("model:\n  channels: 2\n", "e.cfg"); }, kExitUsage,
                    {"model.channels = 2"});
}

TEST(Config, MalformedYamlNamesLine) {
  expect_user_error([] { gan::parse_config("train:\n  lr: [1, 2\n  seed: 3\n", "f.cfg"); }, kExitUsage,
                    {"f.cfg:", "malformed YAML"});
  expect_user_error([] { gan::parse_config("- a\n- b\n", "f.cfg"); }, kExitUsage, {"must be a mapping of sections"});
}

TEST(Config, CrossFieldChecks) {
  expect_user_error([] { gan::parse_config("train:\n  epochs: 0\n", "g.cfg"); }, kExitUsage,
                    {"train.epochs, train.steps and train.kimg are all 0"});
  expect_user_error([] { gan::parse_config("train:\n  steps: 10\n  kimg: 5\n", "g.cfg"); }, kExitUsage,
                    {"train.steps and train.kimg both set the length"});
  expect_user_error([] { gan::parse_config("train:\n  augment_policy: color\n", "g.cfg"); }, kExitUsage,
                    {"train.augment_policy is set but train.augment is off"});
  expect_user_error([] { gan::parse_config("train:\n  loss: rpgan\n  d_steps: 2\n", "g.cfg"); }, kExitUsage,
                    {"train.loss rpgan", "train.d_steps 1"});
  expect_user_error([] { gan::parse_config("train:\n  loss: rpgan\n  label_smoothing: 0.1\n", "g.cfg"); },
                    kExitUsage, {"label_smoothing applies to"});
  expect_user_error([] { gan::parse_config("train:\n  augment: always\n", "g.cfg"); }, kExitUsage,
                    {"train.augment = 'always'", "off | diffaug | ada | auto"});
  EXPECT_EQ(gan::parse_config("train:\n  augment: auto\n  augment_policy: xflip\n", "g.cfg").train.augment, "auto");
  expect_user_error([] { gan::parse_config("train:\n  device: tpu\n", "g.cfg"); }, kExitUsage,
                    {"train.device = 'tpu'"});
  expect_user_error([] { gan::parse_config("data:\n  background: red\n", "g.cfg"); }, kExitUsage,
                    {"data.background = 'red'"});
  expect_user_error([] { gan::parse_config("data:\n  source: folder\n", "g.cfg"); }, kExitUsage,
                    {"data.path is empty"});
  EXPECT_EQ(gan::parse_config("train:\n  device: cuda:1\n", "g.cfg").train.device, "cuda:1");
}

TEST(Config, DistributedKeysAreChecked) {
  Config d = gan::parse_config("model:\n  sync_bn: true\ndist:\n  backend: gloo\n  timeout: 90s\n  bucket_mb: 4\n"
                               "  overlap: false\n",
                               "d.cfg");
  EXPECT_TRUE(d.model.sync_bn);
  EXPECT_EQ(d.dist.backend, "gloo");
  EXPECT_EQ(gan::parse_duration(d.dist.timeout), 90);
  EXPECT_EQ(d.dist.bucket_mb, 4);
  EXPECT_FALSE(d.dist.overlap);
  EXPECT_EQ(Config{}.dist.timeout, "5m");
  expect_user_error([] { gan::parse_config("dist:\n  backend: mpi\n", "d.cfg"); }, kExitUsage,
                    {"d.cfg:2", "dist.backend = 'mpi'", "auto | gloo | nccl"});
  expect_user_error([] { gan::parse_config("dist:\n  timeout: 0s\n", "d.cfg"); }, kExitUsage,
                    {"d.cfg:2", "dist.timeout = '0s' must be at least 1s"});
  expect_user_error([] { gan::parse_config("dist:\n  timeout: soon\n", "d.cfg"); }, kExitUsage,
                    {"dist.timeout = 'soon' is not a duration"});
  expect_user_error([] { gan::parse_config("dist:\n  bucket_mb: 0\n", "d.cfg"); }, kExitUsage,
                    {"dist.bucket_mb = 0 is out of range"});
  expect_user_error([] { gan::parse_config("distributed:\n  backend: gloo\n", "d.cfg"); }, kExitUsage,
                    {"unknown section 'distributed'", "sections are data, model, train, output, eval, health, dist"});
}

TEST(Config, ThePyTorchExamplesNamesAreAcceptedOrPointToOurs) {
  Config c = gan::parse_config("model:\n  nc: 3\n  imageSize: 64\ntrain:\n  batchSize: 32\n  niter: 7\n", "e.cfg");
  EXPECT_EQ(c.model.channels, 3);
  EXPECT_EQ(c.model.image_size, 64);
  EXPECT_EQ(c.train.batch_size, 32);
  EXPECT_EQ(c.train.epochs, 7);
  gan::apply_override(c, "model.nc=1");
  EXPECT_EQ(c.model.channels, 1);
  EXPECT_NE(gan::to_yaml(c).find("  channels: 1"), std::string::npos);  // stored under our name
  expect_user_error([&] { gan::apply_override(c, "train.nc=3"); }, kExitUsage, {"train.nc", "did you mean 'model.channels'?"});
  expect_user_error([&] { gan::apply_override(c, "train.nz=5"); }, kExitUsage, {"train.nz", "did you mean 'model.nz'?"});
}

TEST(Config, OverridesApplyAndAreChecked) {
  Config c;
  gan::apply_override(c, "train.lr=1e-4");
  gan::apply_override(c, "model.image_size=64");
  gan::apply_override(c, "data.path=/some path/with: colon");
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-4);
  EXPECT_EQ(c.model.image_size, 64);
  EXPECT_EQ(c.data.path, "/some path/with: colon");
  expect_user_error([&] { gan::apply_override(c, "train.lrr=1"); }, kExitUsage,
                    {"--set train.lrr", "did you mean 'lr'"});
  expect_user_error([&] { gan::apply_override(c, "train.batch_size=big"); }, kExitUsage,
                    {"--set train.batch_size", "must be an integer"});
  expect_user_error([&] { gan::apply_override(c, "lr=1"); }, kExitUsage, {"expected section.key=value"});
}

TEST(Config, YamlRoundTripIsExact) {
  Config c;
  c.data.source = "folder";
  c.data.path = "/data/celeba";
  c.model.image_size = 128;
  c.train.lr = 1.2345678e-4;
  c.train.seed = 123456789012LL;
  c.output.name = "exp";
  c.train.beta2 = 0.99900000000000011;  // needs 17 digits (found by the config fuzzer)
  Config r = gan::parse_config(gan::to_yaml(c), "roundtrip");
  EXPECT_EQ(r.train.beta2, c.train.beta2);
  EXPECT_EQ(gan::to_yaml(r), gan::to_yaml(c));
  EXPECT_EQ(r.train.lr, c.train.lr);
  EXPECT_EQ(r.train.seed, c.train.seed);
  EXPECT_EQ(r.data.path, c.data.path);
  // Every key appears with a comment.
  std::string y = gan::to_yaml(c);
  for (const auto& k : gan::config_keys()) EXPECT_NE(y.find(k.substr(k.find('.') + 1) + ":"), std::string::npos) << k;
}

TEST(Config, LoadFileSetsNameAndRejectsMissingFile) {
  testutil::TempDir dir;
  std::ofstream(dir / "my-exp.cfg") << "train:\n  steps: 3\n";
  Config c = gan::load_config(dir / "my-exp.cfg");
  EXPECT_EQ(c.name, "my-exp");
  EXPECT_EQ(c.train.steps, 3);
  expect_user_error([&] { gan::load_config(dir / "nope.cfg"); }, kExitUsage, {"nope.cfg", "cannot read config"});
}

TEST(Config, ShippedConfigsParse) {
  for (const char* name : {"fashion-mnist.cfg", "celeba.cfg", "folder-64.cfg"}) {
    Config c = gan::load_config(std::string(GAN_SOURCE_DIR) + "/configs/" + name, /*validate=*/false);
    EXPECT_FALSE(c.data.source.empty()) << name;
  }
  // folder-64.cfg leaves data.path to --set: validating it before that names the key to set.
  expect_user_error([] { gan::load_config(std::string(GAN_SOURCE_DIR) + "/configs/folder-64.cfg"); }, kExitUsage,
                    {"data.path is empty", "set data.path"});
  Config folder = gan::load_config(std::string(GAN_SOURCE_DIR) + "/configs/folder-64.cfg", false);
  gan::apply_override(folder, "data.path=/some/images");
  EXPECT_NO_THROW(gan::validate_config(folder));
  EXPECT_GT(folder.train.kimg, 0);  // the length is in images, whatever the folder's size
  EXPECT_GT(gan::load_config(std::string(GAN_SOURCE_DIR) + "/configs/celeba.cfg").train.kimg, 0);
  Config celeba = gan::load_config(std::string(GAN_SOURCE_DIR) + "/configs/celeba.cfg");
  EXPECT_EQ(celeba.model.image_size, 64);
  EXPECT_EQ(celeba.model.channels, 3);
  EXPECT_EQ(celeba.data.source, "folder");
}

TEST(Config, ComplexKeysAreUserErrors) {
  // Found by the config fuzzer (tests/fuzz): YAML allows lists and maps as keys.
  expect_user_error([] { gan::parse_config("{[a]: 1}\n", "k.cfg"); }, kExitUsage, {"k.cfg:1", "keys must be plain names"});
  expect_user_error([] { gan::parse_config("train:\n  ? [lr]\n  : 1\n", "k.cfg"); }, kExitUsage,
                    {"keys must be plain names"});
}

TEST(Config, SpeedAndBadDataKeysAreSettableAndChecked) {
  gan::Config c = gan::parse_config(
      "data:\n  min_image_size: 16\n  max_bad_fraction: 0.1\n  cache: off\n"
      "train:\n  upconv: phase\n  channels_last: on\n  amp: bf16\n  cudnn_benchmark: false\n",
      "speed.cfg");
  EXPECT_EQ(c.data.min_image_size, 16);
  EXPECT_DOUBLE_EQ(c.data.max_bad_fraction, 0.1);
  EXPECT_EQ(c.data.cache, "off");
  EXPECT_EQ(c.train.upconv, "phase");
  EXPECT_EQ(c.train.channels_last, "on");
  EXPECT_EQ(c.train.amp, "bf16");
  EXPECT_FALSE(c.train.cudnn_benchmark);
  gan::Config back = gan::parse_config(gan::to_yaml(c), "round trip");
  EXPECT_EQ(back.train.upconv, "phase");
  EXPECT_FALSE(back.train.cudnn_benchmark);
  testutil::expect_user_error([] { gan::parse_config("train:\n  upconv: fast\n", "u.cfg"); }, gan::kExitUsage,
                              {"u.cfg:2", "train.upconv", "auto | phase | gemm | winograd | transposed"});
  testutil::expect_user_error([] { gan::parse_config("train:\n  downconv: fft\n", "d.cfg"); }, gan::kExitUsage,
                              {"d.cfg:2", "train.downconv", "auto | winograd | direct"});
  testutil::expect_user_error([] { gan::parse_config("train:\n  cudnn_benchmark: maybe\n", "b.cfg"); },
                              gan::kExitUsage, {"b.cfg:2", "train.cudnn_benchmark", "true or false"});
  testutil::expect_user_error([] { gan::parse_config("data:\n  max_bad_fraction: 1.5\n", "f.cfg"); },
                              gan::kExitUsage, {"f.cfg:2", "data.max_bad_fraction", "out of range"});
}
