// TensorBoard event files: CRC-32C, and a run's files decoded by an independent reader (tests/read_tfevents.py, on
// Google's protobuf runtime) with every record's framing checked.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "gan/config.h"
#include "gan/tensorboard.h"
#include "gan/trainer.h"
#include "image_fixtures.h"
#include "test_util.h"

namespace fs = std::filesystem;
using testutil::TempDir;

namespace {

bool have_protobuf() {
  std::string out;
  return testutil::run("/usr/bin/python3 -c 'import google.protobuf'", &out) == 0;
}

// Runs a Python expression over the decoded events `d` of `run` and returns what it prints.
std::string query(const std::string& run, const std::string& expression) {
  const std::string reader = std::string(GAN_SOURCE_DIR) + "/tests/read_tfevents.py";
  TempDir tmp;
  std::ofstream(tmp / "q.py") << "import json, subprocess\n"
                              << "d = json.loads(subprocess.check_output(['/usr/bin/python3', '" << reader << "', '"
                              << run << "']))\nprint(" << expression << ")\n";
  std::string out;
  const int rc = testutil::run("/usr/bin/python3 " + (tmp / "q.py"), &out);
  EXPECT_EQ(rc, 0) << out;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string write_dataset(const TempDir& dir) {
  fixtures::Bytes px;
  for (int i = 0; i < 64; ++i)
    for (int k = 0; k < 256; ++k) px.push_back(static_cast<std::uint8_t>((k % 16 < 8 ? 200 : 40) + (i * 7 + k) % 13));
  fixtures::write_file(dir / "d-idx3-ubyte", fixtures::idx_images(64, 16, 16, px));
  return dir / "d-idx3-ubyte";
}

}  // namespace

TEST(TensorBoard, Crc32cIsCastagnolis) {
  EXPECT_EQ(gan::crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C check value
  EXPECT_EQ(gan::crc32c("", 0), 0u);
  const std::uint32_t c = gan::crc32c("abc", 3);
  EXPECT_EQ(gan::masked_crc32c("abc", 3), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(TensorBoard, ARunWritesEventsThatAnIndependentReaderDecodes) {
  if (!have_protobuf()) GTEST_SKIP() << "no python3-protobuf (Debian package) to decode with; CI installs it";
  TempDir dir;
  gan::Config cfg = testutil::tiny_train_config(dir, write_dataset(dir), 6);
  gan::TrainSummary s = gan::train(cfg);
  const std::string run = s.run_dir;
  EXPECT_EQ(query(run, "d['files'], d['file_version']"), "1 brain.Event:2");
  // A scalar per metrics row (every step here), the same numbers as metrics.jsonl.
  EXPECT_EQ(query(run, "[s for s, v in d['scalars']['loss/d']]"), "[1, 2, 3, 4, 5, 6]");
  for (const char* tag : {"loss/g", "d_output/real", "d_output/fake", "d_output/fake_after_d_update",
                          "train/img_per_s", "train/lr_g", "train/lr_d"})
    EXPECT_EQ(query(run, std::string("len(d['scalars']['") + tag + "'])"), "6") << tag;
  EXPECT_EQ(query(run, "d['scalars']['train/lr_d'][0][1] == 2e-4 or abs(d['scalars']['train/lr_d'][0][1] - 2e-4) < 1e-9"),
            "True");
  const std::string metrics_loss = query(run, "json.loads(open('" + run + "/metrics.jsonl').readline())['loss_d']");
  const std::string tb_loss = query(run, "d['scalars']['loss/d'][0][1]");
  EXPECT_NEAR(std::stod(metrics_loss), std::stod(tb_loss), 1e-4);
  // The grid at each sample step (12 images of 16x16, 4 per row) and the config as text.
  EXPECT_EQ(query(run, "[[t, s, w, h] for t, s, w, h, n in d['images']]"),
            "[['samples/fixed_noise', 3, 74, 56], ['samples/fixed_noise', 6, 74, 56]]");
  EXPECT_EQ(query(run, "d['texts'][0][0], 'batch_size: 16' in d['texts'][0][2]"), "config True");
  // A resumed run adds a file that tells TensorBoard to forget the steps after its checkpoint.
  gan::Config more = cfg;
  more.train.steps = 9;
  gan::train(more, run + "/checkpoints/step_0000006.pt");
  EXPECT_EQ(query(run, "d['files'], d['restarts']"), "2 [7]");
  EXPECT_EQ(query(run, "[s for s, v in d['scalars']['loss/d']]"), "[1, 2, 3, 4, 5, 6, 7, 8, 9]");
}
