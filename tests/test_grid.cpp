#include <gtest/gtest.h>
#include <stb/stb_image.h>
#include <torch/torch.h>

#include "gan/image.h"
#include "test_util.h"

TEST(Grid, GeometryMatchesTorchvisionMakeGrid) {
  auto images = torch::zeros({5, 1, 4, 4});
  gan::Image g = gan::make_grid(images, /*nrow=*/3, /*padding=*/2);
  EXPECT_EQ(g.width, 3 * (4 + 2) + 2);
  EXPECT_EQ(g.height, 2 * (4 + 2) + 2);
  EXPECT_EQ(g.channels, 1);
  gan::Image wide = gan::make_grid(torch::zeros({2, 3, 8, 8}), 8, 2);
  EXPECT_EQ(wide.width, 2 * 10 + 2);  // fewer images than nrow: one short row
  EXPECT_EQ(wide.height, 12);
  EXPECT_EQ(wide.channels, 3);
}

TEST(Grid, PixelValuesAndPlacement) {
  // Image k is filled with value v_k; padding stays at pad_value.
  std::vector<float> values = {-1.0f, 1.0f, 0.0f, 2.0f, -0.5f};
  auto images = torch::empty({5, 1, 4, 4});
  for (int k = 0; k < 5; ++k) images[k].fill_(values[k]);
  gan::Image g = gan::make_grid(images, 3, 2, /*pad_value=*/7);
  auto at = [&](int x, int y) { return static_cast<int>(g.pixels[y * g.width + x]); };
  EXPECT_EQ(at(0, 0), 7);                  // padding
  EXPECT_EQ(at(2, 2), 0);                  // image 0 (-1 -> 0)
  EXPECT_EQ(at(5, 5), 0);                  // its bottom-right corner
  EXPECT_EQ(at(6, 2), 7);                  // padding between images
  EXPECT_EQ(at(8, 2), 255);                // image 1 (1 -> 255)
  EXPECT_EQ(at(14, 2), 128);               // image 2 (0 -> 127.5 + 0.5 -> 128)
  EXPECT_EQ(at(2, 8), 255);                // image 3, second row (2 clamps to 255)
  EXPECT_EQ(at(8, 8), 64);                 // image 4 (-0.5 -> 63.75 + 0.5 -> 64)
  EXPECT_EQ(at(14, 8), 7);                 // empty sixth slot
}

TEST(Grid, ColourChannelsKeepTheirOrder) {
  auto img = torch::empty({1, 3, 2, 2});
  img[0][0].fill_(1.0f);
  img[0][1].fill_(-1.0f);
  img[0][2].fill_(0.0f);
  gan::Image g = gan::make_grid(img, 1, 0);
  ASSERT_EQ(g.pixels.size(), 12u);
  EXPECT_EQ(g.pixels[0], 255);
  EXPECT_EQ(g.pixels[1], 0);
  EXPECT_EQ(g.pixels[2], 128);
}

TEST(Grid, PngRoundTripsAndBadFolderIsAnIoError) {
  testutil::TempDir dir;
  auto images = torch::rand({6, 3, 8, 8}) * 2 - 1;
  gan::Image g = gan::make_grid(images, 4);
  gan::write_png(dir / "grid.png", g);
  int w, h, n;
  unsigned char* px = stbi_load((dir / "grid.png").c_str(), &w, &h, &n, 0);
  ASSERT_NE(px, nullptr);
  EXPECT_EQ(w, g.width);
  EXPECT_EQ(h, g.height);
  EXPECT_EQ(n, 3);
  EXPECT_TRUE(std::equal(g.pixels.begin(), g.pixels.end(), px));
  stbi_image_free(px);
  EXPECT_FALSE(std::filesystem::exists(dir / "grid.png.tmp"));
  testutil::expect_user_error([&] { gan::write_png(dir / "no/such/dir/grid.png", g); }, gan::kExitIo,
                              {"no/such/dir/grid.png", "No such file or directory"});
}
