#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gan/models.h"

using gan::ModelConfig;

namespace {
ModelConfig model(int size, int channels, int width = 8) {
  ModelConfig m;
  m.image_size = size;
  m.channels = channels;
  m.ngf = width;
  m.ndf = width;
  return m;
}
}  // namespace

TEST(Models, OutputShapesForEverySizeAndChannelCount) {
  torch::NoGradGuard no_grad;
  for (int size : {16, 32, 64, 128, 256}) {
    for (int nc : {1, 3}) {
      ModelConfig m = model(size, nc);
      gan::Generator g(m);
      gan::Discriminator d(m);
      auto z = torch::randn({2, m.nz});
      auto x = g->forward(z);
      EXPECT_EQ(x.sizes(), (std::vector<int64_t>{2, nc, size, size})) << size << "x" << size << " nc=" << nc;
      EXPECT_LE(x.abs().max().item<float>(), 1.0f);  // tanh output
      auto logits = d->forward(x);
      EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2})) << size;
      // [N, nz, 1, 1] input works too.
      EXPECT_EQ(g->forward(z.view({2, m.nz, 1, 1})).sizes(), x.sizes());
    }
  }
}

TEST(Models, ParameterCountsMatchPyTorchReference) {
  ModelConfig m = model(64, 3, 64);
  gan::Generator g(m);
  gan::Discriminator d(m);
  EXPECT_EQ(gan::parameter_count(*g), 3576704);
  EXPECT_EQ(gan::parameter_count(*d), 2765568);
}

TEST(Models, StateDictKeysMatchPyTorchExample) {
  ModelConfig m = model(64, 3, 64);
  gan::Generator g(m);
  gan::Discriminator d(m);
  std::vector<std::string> gkeys, dkeys;
  for (const auto& p : g->named_parameters()) gkeys.push_back(p.key());
  for (const auto& p : d->named_parameters()) dkeys.push_back(p.key());
  // netG in dcgan/main.py: ConvT(0) BN(1) ReLU(2) ... ConvT(12) Tanh(13).
  EXPECT_EQ(gkeys, (std::vector<std::string>{"main.0.weight", "main.1.weight", "main.1.bias", "main.3.weight",
                                              "main.4.weight", "main.4.bias", "main.6.weight", "main.7.weight",
                                              "main.7.bias", "main.9.weight", "main.10.weight", "main.10.bias",
                                              "main.12.weight"}));
  // netD: Conv(0) LReLU(1) Conv(2) BN(3) LReLU(4) ... Conv(11) (Sigmoid(12) in the example; we return logits).
  EXPECT_EQ(dkeys, (std::vector<std::string>{"main.0.weight", "main.2.weight", "main.3.weight", "main.3.bias",
                                              "main.5.weight", "main.6.weight", "main.6.bias", "main.8.weight",
                                              "main.9.weight", "main.9.bias", "main.11.weight"}));
  std::vector<std::string> buffers;
  for (const auto& b : g->named_buffers()) buffers.push_back(b.key());
  EXPECT_EQ(buffers.front(), "main.1.running_mean");
}

TEST(Models, ChannelMultiplierIsCappedAboveSixtyFour) {
  ModelConfig m = model(256, 3, 64);
  EXPECT_EQ(gan::channel_mult(m, 128), 1);
  EXPECT_EQ(gan::channel_mult(m, 16), 8);
  EXPECT_EQ(gan::channel_mult(m, 4), 8);  // would be 32 uncapped
  ModelConfig r = model(64, 3, 64);
  EXPECT_EQ(gan::channel_mult(r, 4), 8);
  EXPECT_EQ(gan::channel_mult(r, 32), 1);
}

TEST(Models, DiscriminatorRejectsWrongShape) {
  ModelConfig m = model(32, 1);
  gan::Discriminator d(m);
  EXPECT_THROW(d->forward(torch::zeros({2, 3, 32, 32})), c10::Error);
  EXPECT_THROW(d->forward(torch::zeros({2, 1, 64, 64})), c10::Error);
  gan::Generator g(m);
  EXPECT_THROW(g->forward(torch::zeros({2, 7})), c10::Error);
}

TEST(Models, DcganInitStatistics) {
  torch::manual_seed(0);
  ModelConfig m = model(64, 3, 64);
  gan::Generator g(m);
  gan::dcgan_init(*g);
  auto params = g->named_parameters();
  auto w = params["main.3.weight"];  // ConvT 512 -> 256
  double std = w.std().item<double>(), mean = w.mean().item<double>();
  std::printf("conv weight mean %.5f std %.5f\n", mean, std);
  EXPECT_NEAR(std, 0.02, 0.0005);
  EXPECT_NEAR(mean, 0.0, 0.0005);
  auto bn = params["main.1.weight"];
  EXPECT_NEAR(bn.mean().item<double>(), 1.0, 0.01);
  EXPECT_NEAR(bn.std().item<double>(), 0.02, 0.005);
  EXPECT_EQ(params["main.1.bias"].abs().sum().item<double>(), 0.0);
}
