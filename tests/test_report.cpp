// The run report (report.html): its content from a run folder, and the page rendered by a real browser (Debian's
// headless Chromium): not blank, no console message.
#include <gtest/gtest.h>
#include <stb/stb_image.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gan/errors.h"
#include "gan/files.h"
#include "gan/image.h"
#include "gan/report.h"
#include "test_util.h"

namespace fs = std::filesystem;
using testutil::run;
using testutil::slurp;
using testutil::TempDir;

namespace {

size_t count(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t i = s.find(part); i != std::string::npos; i = s.find(part, i + 1)) ++n;
  return n;
}

// A run folder as gan-train leaves it: 40 metrics rows, two evaluations, three grids, a warning in train.log.
std::string make_run(const TempDir& dir) {
  const std::string r = dir / "runs/demo";
  fs::create_directories(r + "/samples");
  gan::write_file_atomic(r + "/config.yaml", "model:\n  image_size: 16\ntrain:\n  batch_size: 16\n");
  std::string rows;
  for (int s = 1; s <= 40; ++s) {
    char row[400];
    std::snprintf(row, sizeof row,
                  "{\"step\": %d, \"epoch\": 1, \"loss_d\": %.4f, \"loss_g\": %.4f, \"d_real\": 0.7, \"d_fake\": 0.3, "
                  "\"d_fake_g\": 0.28, \"penalty\": 0.0, \"noise_std\": 0.0, \"img_per_s\": %d, \"elapsed_s\": %d}\n",
                  s, 1.4 - s * 0.01, 0.7 + s * 0.02, 300 + s, s);
    rows += row;
    if (s % 20 == 0)
      rows += "{\"step\": " + std::to_string(s) + ", \"eval\": {\"fd\": " + std::to_string(50.0 / s) +
              ", \"fd_floor\": 0.1, \"kid\": 0.02, \"kid_floor\": 0.0, \"precision\": 0.5, \"precision_floor\": 0.9, "
              "\"recall\": 0.3, \"recall_floor\": 0.9}}\n";
  }
  rows += "{\"step\": 41, \"loss_d\": 1.";  // a row a killed process cut short
  gan::write_file_atomic(r + "/metrics.jsonl", rows);
  for (int s : {10, 20, 40}) {
    gan::Image img;
    img.width = img.height = 8;
    img.channels = 3;
    for (int i = 0; i < 64; ++i) img.pixels.insert(img.pixels.end(), {static_cast<std::uint8_t>(i * 4), 40, static_cast<std::uint8_t>(s)});
    char name[64];
    std::snprintf(name, sizeof name, "/samples/step_%07d.png", s);
    gan::write_png(r + name, img);
  }
  gan::write_file_atomic(r + "/train.log", "[07:00:00] [info] step 10\n[07:00:01] [warning] health: D saturated at "
                                            "step 30 <over the window>\n");
  gan::write_file_atomic(r + "/summary.json", "{\"exit_reason\": \"finished\", \"steps\": 40}\n");
  return r;
}

// Renders `page` in headless Chromium: a screenshot, and every console line it printed.
bool render(const std::string& page, const std::string& shot, std::string* console) {
  TempDir profile;
  std::string out;
  const int rc = run("/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                     "--disable-background-networking --disable-component-update --disable-sync --user-data-dir=" +
                         profile.str() + " --enable-logging=stderr --v=0 --window-size=1280,1600 --screenshot=" +
                         shot + " file://" + page,
                     &out);
  console->clear();
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (line.find(":CONSOLE") != std::string::npos) *console += line + "\n";
  return rc == 0 && fs::exists(shot);
}

// The share of the screenshot's pixels that are not white.
double ink(const std::string& png) {
  int w, h, n;
  unsigned char* px = stbi_load(png.c_str(), &w, &h, &n, 3);
  if (!px) return -1;
  size_t dark = 0;
  for (int i = 0; i < w * h; ++i)
    if (px[3 * i] < 240 || px[3 * i + 1] < 240 || px[3 * i + 2] < 240) ++dark;
  stbi_image_free(px);
  return static_cast<double>(dark) / (w * h);
}

}  // namespace

TEST(Report, HoldsTheCurvesScoresGridsWarningsSummaryAndConfig) {
  TempDir dir;
  const std::string r = make_run(dir);
  const std::string path = gan::write_report(r);
  EXPECT_EQ(path, r + "/report.html");
  const std::string page = slurp(path);
  EXPECT_EQ(count(page, "<svg"), 6u);                           // losses, D outputs, speed, FD, KID, P/R
  EXPECT_NE(page.find("40 metrics rows, 2 evaluations, 3 sample grids"), std::string::npos);
  EXPECT_EQ(count(page, "src=\"data:image/png;base64,"), 3u);  // every grid, inside the page
  EXPECT_EQ(count(page, " hidden src="), 2u);                   // the last one shown
  EXPECT_NE(page.find("health: D saturated at step 30 &lt;over the window&gt;"), std::string::npos);
  EXPECT_NE(page.find("&quot;exit_reason&quot;: &quot;finished&quot;"), std::string::npos);
  EXPECT_NE(page.find("batch_size: 16"), std::string::npos);
  EXPECT_NE(page.find("stroke-dasharray"), std::string::npos);  // the real-vs-real floors
  // Self-contained: nothing fetched from elsewhere.
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
  EXPECT_EQ(page.find("<script src"), std::string::npos);
  EXPECT_EQ(page.find("<link rel=\"stylesheet\""), std::string::npos);
  // gan-report: the same from the command line; a folder that is not a run is one line.
  std::string out;
  ASSERT_EQ(run(std::string(GAN_REPORT_EXE) + " " + r + " --out " + (dir / "copy.html"), &out), 0) << out;
  EXPECT_EQ(slurp(dir / "copy.html"), page);
  EXPECT_EQ(run(std::string(GAN_REPORT_EXE) + " " + dir.str(), &out), 2) << out;
  EXPECT_NE(out.find("gan-report: error: " + dir.str() + " is not a gan-train run folder"), std::string::npos) << out;
}

TEST(Report, ARealBrowserRendersItWithoutConsoleErrors) {
  if (!fs::exists("/usr/bin/chromium")) GTEST_SKIP() << "no /usr/bin/chromium (Debian package chromium); CI installs it";
  TempDir dir;
  // First, that the check sees an error when there is one.
  gan::write_file_atomic(dir / "broken.html", "<!doctype html><html><head><link rel=\"icon\" href=\"data:,\"></head>"
                                              "<body><h1>x</h1><script>notDefined();</script></body></html>");
  std::string console;
  ASSERT_TRUE(render(dir / "broken.html", dir / "broken.png", &console));
  EXPECT_NE(console.find("notDefined is not defined"), std::string::npos) << console;
  // The report: no console message at all, and a page with content.
  const std::string r = make_run(dir);
  gan::write_report(r);
  ASSERT_TRUE(render(r + "/report.html", dir / "report.png", &console));
  EXPECT_EQ(console, "");
  const double share = ink(dir / "report.png");
  std::printf("report.html in headless Chromium: %.1f%% of the 1280x1600 screenshot is not white\n", 100 * share);
  EXPECT_GT(share, 0.01);  // a blank page is 0
}
