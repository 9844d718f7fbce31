#include "gan/inception.h"

#include <torch/torch.h>

#include <map>
#include <set>

#include "gan/errors.h"
#include "gan/models.h"

namespace gan {
namespace F = torch::nn::functional;

BasicConvImpl::BasicConvImpl(int in, int out, int kh, int kw, int stride, int ph, int pw) {
  const auto options = torch::nn::Conv2dOptions(in, out, {kh, kw}).stride(stride).padding({ph, pw}).bias(false);
  conv = register_module("conv", torch::nn::Conv2d(options));
  bn = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(out).eps(0.001)));
}

torch::Tensor BasicConvImpl::forward(const torch::Tensor& x) { return torch::relu(bn(conv(x))); }

namespace {

// TensorFlow's 3x3 average pool, stride 1, which leaves the padding out of its averages.
torch::Tensor avg_pool_tf(const torch::Tensor& x) {
  return F::avg_pool2d(x, F::AvgPool2dFuncOptions(3).stride(1).padding(1).count_include_pad(false));
}
torch::Tensor max_pool_s2(const torch::Tensor& x) { return F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2)); }

struct Block : torch::nn::Module {
  BasicConv add(const std::string& name, int in, int out, int kh, int kw, int stride = 1, int ph = 0, int pw = 0) {
    return register_module(name, BasicConv(in, out, kh, kw, stride, ph, pw));
  }
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

// FIDInceptionA: in -> 224 + pool_features channels, same size.
struct InceptionA : Block {
  BasicConv b1, b5_1, b5_2, d1, d2, d3, pool;
  InceptionA(int in, int pool_features)
      : b1(add("branch1x1", in, 64, 1, 1)),
        b5_1(add("branch5x5_1", in, 48, 1, 1)),
        b5_2(add("branch5x5_2", 48, 64, 5, 5, 1, 2, 2)),
        d1(add("branch3x3dbl_1", in, 64, 1, 1)),
        d2(add("branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1)),
        d3(add("branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1)),
        pool(add("branch_pool", in, pool_features, 1, 1)) {}
  torch::Tensor forward(const torch::Tensor& x) override {
    return torch::cat({b1(x), b5_2(b5_1(x)), d3(d2(d1(x))), pool(avg_pool_tf(x))}, 1);  // [N, 224 + pool, H, W]
  }
};

// InceptionB: in -> 480 + in channels, half the size.
struct InceptionB : Block {
  BasicConv b3, d1, d2, d3;
  explicit InceptionB(int in)
      : b3(add("branch3x3", in, 384, 3, 3, 2)),
        d1(add("branch3x3dbl_1", in, 64, 1, 1)),
        d2(add("branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1)),
        d3(add("branch3x3dbl_3", 96, 96, 3, 3, 2)) {}
  torch::Tensor forward(const torch::Tensor& x) override {
    return torch::cat({b3(x), d3(d2(d1(x))), max_pool_s2(x)}, 1);  // [N, 480 + in, (H - 3) / 2 + 1, ...]
  }
};

// FIDInceptionC: 768 -> 768 channels, same size; factorised 7x7 convolutions of c7 channels.
struct InceptionC : Block {
  BasicConv b1, s1, s2, s3, d1, d2, d3, d4, d5, pool;
  InceptionC(int in, int c7)
      : b1(add("branch1x1", in, 192, 1, 1)),
        s1(add("branch7x7_1", in, c7, 1, 1)),
        s2(add("branch7x7_2", c7, c7, 1, 7, 1, 0, 3)),
        s3(add("branch7x7_3", c7, 192, 7, 1, 1, 3, 0)),
        d1(add("branch7x7dbl_1", in, c7, 1, 1)),
        d2(add("branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0)),
        d3(add("branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3)),
        d4(add("branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0)),
        d5(add("branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3)),
        pool(add("branch_pool", in, 192, 1, 1)) {}
  torch::Tensor forward(const torch::Tensor& x) override {
    return torch::cat({b1(x), s3(s2(s1(x))), d5(d4(d3(d2(d1(x))))), pool(avg_pool_tf(x))}, 1);  // [N, 768, H, W]
  }
};

// InceptionD: 768 -> 1280 channels, half the size.
struct InceptionD : Block {
  BasicConv t1, t2, s1, s2, s3, s4;
  explicit InceptionD(int in)
      : t1(add("branch3x3_1", in, 192, 1, 1)),
        t2(add("branch3x3_2", 192, 320, 3, 3, 2)),
        s1(add("branch7x7x3_1", in, 192, 1, 1)),
        s2(add("branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3)),
        s3(add("branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0)),
        s4(add("branch7x7x3_4", 192, 192, 3, 3, 2)) {}
  torch::Tensor forward(const torch::Tensor& x) override {
    return torch::cat({t2(t1(x)), s4(s3(s2(s1(x)))), max_pool_s2(x)}, 1);  // [N, 512 + in, (H - 3) / 2 + 1, ...]
  }
};

// FIDInceptionE_1 (average pool) and E_2 (max pool, as the FID graph has it): in -> 2048 channels, same size.
struct InceptionE : Block {
  BasicConv b1, t1, t2a, t2b, d1, d2, d3a, d3b, pool;
  bool max_pool;
  InceptionE(int in, bool max_pool_)
      : b1(add("branch1x1", in, 320, 1, 1)),
        t1(add("branch3x3_1", in, 384, 1, 1)),
        t2a(add("branch3x3_2a", 384, 384, 1, 3, 1, 0, 1)),
        t2b(add("branch3x3_2b", 384, 384, 3, 1, 1, 1, 0)),
        d1(add("branch3x3dbl_1", in, 448, 1, 1)),
        d2(add("branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1)),
        d3a(add("branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1)),
        d3b(add("branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0)),
        pool(add("branch_pool", in, 192, 1, 1)),
        max_pool(max_pool_) {}
  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor t = t1(x), d = d2(d1(x));
    const torch::Tensor p =
        max_pool ? F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(1).padding(1)) : avg_pool_tf(x);
    return torch::cat({b1(x), t2a(t), t2b(t), d3a(d), d3b(d), pool(p)}, 1);  // [N, 320 + 768 + 768 + 192, H, W]
  }
};

}  // namespace

FidInceptionImpl::FidInceptionImpl() {
  auto conv = [&](const char* name, BasicConv m) {
    stages.push_back([m](const torch::Tensor& x) mutable { return m->forward(x); });
    register_module(name, m);
  };
  auto block = [&](const char* name, std::shared_ptr<Block> m) {
    stages.push_back([m](const torch::Tensor& x) mutable { return m->forward(x); });
    register_module(name, m);
  };
  auto pool = [&] { stages.push_back(max_pool_s2); };
  conv("Conv2d_1a_3x3", BasicConv(3, 32, 3, 3, 2));         // [N, 32, 149, 149]
  conv("Conv2d_2a_3x3", BasicConv(32, 32, 3, 3));           // [N, 32, 147, 147]
  conv("Conv2d_2b_3x3", BasicConv(32, 64, 3, 3, 1, 1, 1));  // [N, 64, 147, 147]
  pool();                                                   // [N, 64, 73, 73]
  conv("Conv2d_3b_1x1", BasicConv(64, 80, 1, 1));           // [N, 80, 73, 73]
  conv("Conv2d_4a_3x3", BasicConv(80, 192, 3, 3));          // [N, 192, 71, 71]
  pool();                                                   // [N, 192, 35, 35]
  block("Mixed_5b", std::make_shared<InceptionA>(192, 32));   // [N, 256, 35, 35]
  block("Mixed_5c", std::make_shared<InceptionA>(256, 64));   // [N, 288, 35, 35]
  block("Mixed_5d", std::make_shared<InceptionA>(288, 64));   // [N, 288, 35, 35]
  block("Mixed_6a", std::make_shared<InceptionB>(288));       // [N, 768, 17, 17]
  block("Mixed_6b", std::make_shared<InceptionC>(768, 128));  // [N, 768, 17, 17]
  block("Mixed_6c", std::make_shared<InceptionC>(768, 160));  // [N, 768, 17, 17]
  block("Mixed_6d", std::make_shared<InceptionC>(768, 160));  // [N, 768, 17, 17]
  block("Mixed_6e", std::make_shared<InceptionC>(768, 192));  // [N, 768, 17, 17]
  block("Mixed_7a", std::make_shared<InceptionD>(768));       // [N, 1280, 8, 8]
  block("Mixed_7b", std::make_shared<InceptionE>(1280, false));  // [N, 2048, 8, 8]
  block("Mixed_7c", std::make_shared<InceptionE>(2048, true));   // [N, 2048, 8, 8]
  eval();
}

torch::Tensor FidInceptionImpl::forward(const torch::Tensor& x299) {
  torch::Tensor x = x299;  // [N, 3, 299, 299]
  for (const auto& stage : stages) x = stage(x);
  return x.mean({2, 3});  // [N, 2048]: the adaptive average pool to 1x1
}

void FidInceptionImpl::set_channels_last(bool on) {
  gan::set_channels_last(*this, on);
  channels_last = on;
}

torch::Tensor FidInceptionImpl::features(const torch::Tensor& images, int64_t chunk) {
  TORCH_CHECK(images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3),
              "FidInception: images must be [N, 1 or 3, S, S], not ", images.sizes());
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < images.size(0); i += chunk) {
    torch::Tensor x = images.narrow(0, i, std::min(chunk, images.size(0) - i)).to(torch::kFloat);  // [c, C, S, S]
    x = ((x + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1;  // the 8-bit levels of an image file, in [-1, 1]
    if (x.size(1) == 1) x = x.expand({x.size(0), 3, x.size(2), x.size(3)});  // [c, 3, S, S]
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{299, 299})
                              .mode(torch::kBilinear)
                              .align_corners(false));  // [c, 3, 299, 299]
    if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    out.push_back(forward(x));                            // [c, 2048]
  }
  return torch::cat(out);  // [N, 2048]
}

std::int64_t fid_inception_chunk(const c10::Device& device) { return device.is_cuda() ? 64 : 1; }

bool is_inception_weights(const StateDict& weights) {
  for (const auto& [name, t] : weights)
    if (name == "Mixed_7c.branch_pool.conv.weight") return true;
  return false;
}

void load_fid_inception(FidInception& net, const StateDict& weights, const std::string& path) {
  std::map<std::string, at::Tensor> given;
  for (const auto& [name, t] : weights) given[name] = t;
  auto fc = given.find("fc.weight");
  if (fc != given.end() && fc->second.dim() == 2 && fc->second.size(0) == 1000)
    throw UserError(kExitUsage, "eval.extractor " + path + ": these are torchvision's ImageNet Inception-v3 weights "
                                "(1000 classes), not the FID network's; give pytorch-fid's "
                                "pt_inception-2015-12-05-6726825d.pth, the weights published FIDs are computed with");
  StateDict kept;
  for (const auto& [name, t] : weights) {
    const bool counter = name.size() > 20 && name.compare(name.size() - 20, 20, ".num_batches_tracked") == 0;
    if (name.rfind("fc.", 0) != 0 && !counter) kept.emplace_back(name, t);
  }
  // Our BatchNorm counters are not in every file: fill them from ours so that load_state_dict sees every buffer.
  for (const auto& b : net->named_buffers())
    if (b.key().size() > 20 && b.key().compare(b.key().size() - 20, 20, ".num_batches_tracked") == 0)
      kept.emplace_back(b.key(), b.value());
  try {
    load_state_dict(*net, kept, "eval.extractor " + path);
  } catch (const UserError& e) {
    std::string what = e.what();
    what = what.substr(0, what.find(" (check the config"));
    throw UserError(kExitUsage, what + " (not pytorch-fid's pt_inception-2015-12-05-6726825d.pth?)");
  }
  net->eval();
}

}  // namespace gan
