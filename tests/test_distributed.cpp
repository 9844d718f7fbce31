// The distributed context on its own, with W ranks as threads of this process on loopback: the launcher's
// environment, collectives, SyncBatchNorm against BatchNorm over the whole batch, the gradient buckets.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <thread>

#include "gan/distributed.h"
#include "gan/errors.h"
#include "gan/launcher.h"
#include "gan/sync_batch_norm.h"
#include "dist_fixture.h"
#include "test_util.h"

using testutil::expect_user_error;

namespace {

// Sets environment variables for the scope, restoring what was there.
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::vector<std::pair<std::string, std::string>>& vars) {
    for (const auto& [k, v] : vars) {
      const char* old = std::getenv(k.c_str());
      saved_.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
      setenv(k.c_str(), v.c_str(), 1);
    }
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) {
      if (v) setenv(k.c_str(), v->c_str(), 1);
      else unsetenv(k.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// Runs body(rank, context) on `world` threads that form one process group through a store this test hosts, as a
// launcher would. Returns after every thread has finished; a failure on one thread fails the test.
void with_ranks(int world, const std::function<void(int, gan::DistContext&)>& body, const std::string& timeout = "20s") {
  auto server = testutil::local_store();
  gan::DistConfig cfg;
  cfg.timeout = timeout;
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        gan::DistContext dist(testutil::worker_env(r, world, server->getPort()), cfg, torch::kCPU);
        body(r, dist);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>(); }

}  // namespace

TEST(Distributed, LaunchEnvironmentIsReadAsTorchrunWritesIt) {
  {
    ScopedEnv e({{"RANK", "2"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"}, {"LOCAL_WORLD_SIZE", "2"},
                 {"MASTER_ADDR", "10.0.0.7"}, {"MASTER_PORT", "29511"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                 {"TORCHELASTIC_RESTART_COUNT", "3"}});
    gan::LaunchEnv l = gan::read_launch_env();
    EXPECT_TRUE(l.present);
    EXPECT_EQ(l.rank, 2);
    EXPECT_EQ(l.world_size, 4);
    EXPECT_EQ(l.local_rank, 0);
    EXPECT_EQ(l.local_world_size, 2);
    EXPECT_EQ(l.master_addr, "10.0.0.7");
    EXPECT_EQ(l.master_port, 29511);
    EXPECT_TRUE(l.agent_store);
    EXPECT_EQ(l.restart_count, 3);
  }
  {
    // Only the exact text "True" means the agent's store, as in torch.distributed.rendezvous.
    ScopedEnv e({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"},
                 {"TORCHELASTIC_USE_AGENT_STORE", "true"}});
    EXPECT_FALSE(gan::read_launch_env().agent_store);
  }
  {
    ScopedEnv e({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}});
    unsetenv("MASTER_ADDR");
    expect_user_error([] { gan::read_launch_env(); }, gan::kExitUsage, {"MASTER_ADDR is not set", "torchrun"});
  }
  {
    ScopedEnv e({{"RANK", "two"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}});
    expect_user_error([] { gan::read_launch_env(); }, gan::kExitUsage, {"RANK='two'", "not an integer"});
  }
  {
    ScopedEnv e({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}});
    expect_user_error([] { gan::read_launch_env(); }, gan::kExitUsage, {"RANK='2'", "[0, 1]"});
  }
  EXPECT_FALSE(gan::read_launch_env().present);  // nothing set: one process
}

// train.device cuda:N with several workers on one machine would put them all on GPU N (NCCL refuses that at its first
// barrier): refused up front, naming the key. The same name with one worker per machine is that machine's choice.
TEST(Distributed, OneNamedGpuForSeveralWorkersOfAMachineIsRefused) {
  gan::LaunchEnv env;
  env.present = true;
  env.world_size = env.local_world_size = 4;
  expect_user_error([&] { gan::worker_device("cuda:1", env); }, gan::kExitUsage,
                    {"train.device = cuda:1", "all 4 workers", "train.device cuda"});
  env.local_world_size = 1;
  env.world_size = 2;
  EXPECT_EQ(gan::worker_device("cpu", env).type(), torch::kCPU);
  if (!torch::cuda::is_available()) {  // one worker per machine may name its GPU: here it then finds none
    EXPECT_THROW(gan::worker_device("cuda:1", env), std::exception);
  }
}

TEST(Distributed, LauncherOptionsAreTakenOutOfTheWorkersCommandLine) {
  EXPECT_EQ(gan::without_launcher_options({"gan-train", "--nproc-per-node", "2", "--config", "c.cfg"}),
            (std::vector<std::string>{"gan-train", "--config", "c.cfg"}));
  EXPECT_EQ(gan::without_launcher_options({"gan-train", "--nproc-per-node=3", "--steps", "9"}),
            (std::vector<std::string>{"gan-train", "--steps", "9"}));
}

TEST(Distributed, CollectivesSumBroadcastAndShareBytes) {
  if (!gan::gloo_available()) GTEST_SKIP() << "this build has no Gloo (libgloo-dev was missing)";
  for (int world : {2, 3}) {
    with_ranks(world, [&](int r, gan::DistContext& dist) {
      at::Tensor t = torch::full({5}, static_cast<float>(r + 1));
      dist.all_reduce_sum(t);
      EXPECT_EQ(t[0].item<float>(), world * (world + 1) / 2.0f);
      at::Tensor m = torch::tensor({static_cast<std::int64_t>(r) * 10}, torch::kLong);
      dist.all_reduce_max(m);
      EXPECT_EQ(m.item<std::int64_t>(), (world - 1) * 10);
      std::vector<at::Tensor> b{torch::full({3}, static_cast<float>(r))};
      dist.broadcast(b);
      EXPECT_EQ(b[0][2].item<float>(), 0.0f);
      const std::string big(3 * 1024 * 1024 + 7, 'x');
      std::string got = dist.broadcast_bytes(r == 0 ? big + "end" : std::string("ignored"));
      EXPECT_EQ(got.size(), big.size() + 3);
      EXPECT_EQ(got.substr(got.size() - 4), "xend");
    });
  }
}

TEST(Distributed, RunOnMainMakesTheOthersWaitAndCarriesRankZerosError) {
  if (!gan::gloo_available()) GTEST_SKIP() << "this build has no Gloo (libgloo-dev was missing)";
  with_ranks(3, [&](int r, gan::DistContext& dist) {
    int ran = 0;
    dist.run_on_main("a long task", [&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // longer than a poll, shorter than the timeout
      ran = 1;
    });
    EXPECT_EQ(ran, r == 0 ? 1 : 0);
    try {
      dist.run_on_main("checking the data", [&] { throw gan::UserError(gan::kExitData, "no images in /x"); });
      ADD_FAILURE() << "expected an error";
    } catch (const gan::UserError& e) {
      EXPECT_EQ(e.code(), gan::kExitData);
      if (r == 0) EXPECT_EQ(std::string(e.what()), "no images in /x");
      else EXPECT_EQ(std::string(e.what()), "stopping because rank 0 failed while checking the data: no images in /x");
    }
  });
}

TEST(Distributed, SyncBatchNormEqualsBatchNormOverTheWholeBatch) {
  if (!gan::gloo_available()) GTEST_SKIP() << "this build has no Gloo (libgloo-dev was missing)";
  // A global batch of 12 split over W ranks: outputs, input gradients, the summed weight gradients and the running
  // statistics must equal BatchNorm2d's over all 12 images.
  torch::manual_seed(3);
  const at::Tensor x = torch::randn({12, 5, 4, 4}) * 3 + 1.5;  // [12, 5, 4, 4], off-centre on purpose
  const at::Tensor up = torch::randn({12, 5, 4, 4});           // upstream gradient: loss = sum(y * up)
  const at::Tensor w0 = torch::rand({5}) + 0.5, b0 = torch::randn({5});
  torch::nn::BatchNorm2d ref(5);
  {
    torch::NoGradGuard g;
    ref->weight.copy_(w0);
    ref->bias.copy_(b0);
  }
  at::Tensor xr = x.clone().requires_grad_(true);
  at::Tensor yr = ref->forward(xr);
  (yr * up).sum().backward();
  for (int world : {1, 2, 3}) {
    const std::int64_t rows = 12 / world;
    std::vector<at::Tensor> y(world), gx(world), gw(world), gb(world), rm(world), rv(world);
    auto body = [&](int r, gan::AllReduceSum reduce) {
      gan::SyncBatchNorm2d bn(5);
      {
        torch::NoGradGuard g;
        bn->weight.copy_(w0);
        bn->bias.copy_(b0);
      }
      bn->reduce = reduce;
      at::Tensor xi = x.narrow(0, r * rows, rows).clone().requires_grad_(true);
      at::Tensor yi = bn->forward(xi);
      // Each rank's loss is its slice's; the gradients of the weights are summed over the ranks.
      (yi * up.narrow(0, r * rows, rows)).sum().backward();
      y[r] = yi.detach();
      gx[r] = xi.grad();
      gw[r] = bn->weight.grad();
      gb[r] = bn->bias.grad();
      rm[r] = bn->running_mean.clone();
      rv[r] = bn->running_var.clone();
    };
    if (world == 1) body(0, nullptr);  // no reducer: plain BatchNorm2d
    else with_ranks(world, [&](int r, gan::DistContext& dist) { body(r, dist.sum_function()); });
    const double dy = max_diff(torch::cat(y), yr), dx = max_diff(torch::cat(gx), xr.grad());
    const double dw = max_diff(torch::stack(gw).sum(0), ref->weight.grad()),
                 db = max_diff(torch::stack(gb).sum(0), ref->bias.grad());
    std::printf("SyncBatchNorm W=%d vs BatchNorm2d over the batch: max |dy| %.2e |dx| %.2e |dw| %.2e |db| %.2e\n",
                world, dy, dx, dw, db);
    EXPECT_LT(dy, 1e-5);
    EXPECT_LT(dx, 1e-5);
    EXPECT_LT(dw, 1e-4);
    EXPECT_LT(db, 1e-4);
    for (int r = 0; r < world; ++r) {
      EXPECT_LT(max_diff(rm[r], ref->running_mean), 1e-6) << "rank " << r;
      EXPECT_LT(max_diff(rv[r], ref->running_var), 1e-5) << "rank " << r;
    }
  }
  // Without the sums, a rank's statistics are its slice's: the outputs differ (the test can fail).
  gan::SyncBatchNorm2d alone(5);
  at::Tensor part = alone->forward(x.narrow(0, 0, 6));
  EXPECT_GT(max_diff(part, yr.detach().narrow(0, 0, 6)), 1e-2);
}

TEST(Distributed, GradientBucketsAverageEveryParameterWithAndWithoutOverlap) {
  if (!gan::gloo_available()) GTEST_SKIP() << "this build has no Gloo (libgloo-dev was missing)";
  // Parameters of several sizes, buckets small enough that there are several; each rank's gradient is different.
  for (bool overlap : {true, false}) {
    with_ranks(3, [&](int r, gan::DistContext& dist) {
      std::vector<at::Tensor> params;
      for (int k = 0; k < 5; ++k) params.push_back(torch::ones({100 * (k + 1)}).requires_grad_(true));
      at::Tensor frozen = torch::ones({7}).requires_grad_(true);  // no gradient in this pass; in the last bucket
      std::vector<at::Tensor> all{frozen};
      all.insert(all.end(), params.begin(), params.end());
      gan::GradientReducer reducer(dist, all, {}, /*bucket_mb=*/0.002, overlap);
      EXPECT_GE(reducer.figures().buckets_d, 3);
      for (int pass = 0; pass < 2; ++pass) {  // twice: the buckets are reused
        for (auto& p : all) p.mutable_grad().reset();
        reducer.before_backward(0);
        at::Tensor loss = torch::zeros({});
        for (size_t k = 0; k < params.size(); ++k) loss = loss + params[k].sum() * static_cast<float>((r + 1) * (k + 1 + pass));
        loss.backward();
        reducer.after_backward(0);
        for (size_t k = 0; k < params.size(); ++k) {
          // mean over ranks of (r + 1) * (k + 1 + pass) = 2 * (k + 1 + pass) for 3 ranks
          const float want = 2.0f * static_cast<float>(k + 1 + pass);
          ASSERT_TRUE(params[k].grad().defined());
          EXPECT_EQ(params[k].grad().min().item<float>(), want) << "param " << k << " overlap " << overlap;
          EXPECT_EQ(params[k].grad().max().item<float>(), want) << "param " << k << " overlap " << overlap;
        }
        EXPECT_EQ(frozen.grad().abs().max().item<float>(), 0.0f);  // zeros stand in for a missing gradient
      }
      const std::int64_t bytes_per_pass = (100 + 200 + 300 + 400 + 500 + 7) * 4;
      EXPECT_EQ(reducer.figures().bytes, 2 * bytes_per_pass);
    });
  }
}

TEST(Distributed, FingerprintSeesOneBitAndIgnoresLayoutOfEqualValues) {
  at::Tensor a = torch::randn({4, 3, 2, 2});
  at::Tensor b = a.clone();
  EXPECT_EQ(gan::fingerprint({a}), gan::fingerprint({b}));
  EXPECT_EQ(gan::fingerprint({a}), gan::fingerprint({a.contiguous(at::MemoryFormat::ChannelsLast)}));
  float* p = b.data_ptr<float>();
  std::uint32_t bits;
  std::memcpy(&bits, p + 17, 4);
  bits ^= 1;  // the lowest mantissa bit of one value
  std::memcpy(p + 17, &bits, 4);
  EXPECT_NE(gan::fingerprint({a}), gan::fingerprint({b}));
}
