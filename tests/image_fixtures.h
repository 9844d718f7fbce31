// Image-file fixtures generated in memory by tests (no binary files are committed).
//
// 8-bit PNG/JPEG/BMP/TGA go through stb_image_write (link -lstb); palette PNG, 16-bit PNG
// and GIF use small hand-written encoders (stored deflate blocks, LZW) with no zlib.
// Pixel buffers are row-major with interleaved channels. Every function throws
// std::runtime_error on bad arguments (sizes, channel counts, buffer lengths, indices).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fixtures {

using Bytes = std::vector<std::uint8_t>;

// Deterministic, varied pixel values (smooth gradients per channel + seed offset + small
// noise, every value in [0, 243]): channel c%4 follows x, y, x+y, inverse x+y respectively.
Bytes pattern(int w, int h, int channels, unsigned seed);

// 8-bit images through stb_image_write; channels 1..4.
// Note what the writers store: BMP keeps only RGB for channels 1..3 (grey is replicated,
// grey+alpha loses its alpha) and RGBA for 4; JPEG ignores alpha.
Bytes png8(int w, int h, int channels, const Bytes& pixels);
Bytes jpeg(int w, int h, int channels, const Bytes& pixels, int quality = 95);
Bytes bmp(int w, int h, int channels, const Bytes& pixels);
Bytes tga(int w, int h, int channels, const Bytes& pixels);

// PNG colour type 3 (8-bit indices). palette_rgb holds 1..256 RGB triples; alpha (optional,
// at most one entry per palette colour) is written as a tRNS chunk.
Bytes png_palette(int w, int h, const Bytes& indices, const Bytes& palette_rgb,
                  const Bytes& alpha = {});
// PNG at bit depth 16; channels 1,2,3,4 -> colour types 0 (grey), 4 (grey+alpha), 2 (RGB), 6 (RGBA).
Bytes png16(int w, int h, int channels, const std::vector<std::uint16_t>& pixels);

// GIF89a, one or more frames of w x h palette indices, global colour table from palette_rgb
// (1..256 RGB triples), LZW with a leading clear code, code-size growth and a clear code
// whenever the 4096-entry table fills.
Bytes gif(int w, int h, const std::vector<Bytes>& frames, const Bytes& palette_rgb);

// IDX (MNIST format) unsigned-byte images file: n images of rows x cols; pixels holds n*rows*cols bytes.
Bytes idx_images(int n, int rows, int cols, const Bytes& pixels);
// IDX unsigned-byte labels file: one byte per image.
Bytes idx_labels(const Bytes& labels);

// JPEG files stb_image_write cannot produce, embedded as bytes generated once with Pillow 9.4.0
// (see image_fixtures.cpp for the exact command lines).
// 16x16 progressive (SOF2, JFIF, 4:2:0) JPEG of the solid colour (r,g,b) = (200, 60, 30),
// quality 95, 522 bytes. Pillow and stb both decode every pixel to (199, 60, 29).
Bytes progressive_jpeg();
// 16x16 baseline 4-component CMYK JPEG (Adobe APP14 marker, transform 0, no JFIF; samples
// stored inverted as Photoshop/Pillow write them) of the solid colour (c,m,y,k) =
// (20, 180, 220, 40), quality 95, 362 bytes. Pillow converts it to RGB (198, 63, 30).
Bytes cmyk_jpeg();

// Helpers.
Bytes truncated(const Bytes& file, std::size_t keep);  // first `keep` bytes (keep <= size)
// PNG signature + IHDR (valid CRC) claiming w x h RGB 8-bit, then IEND; no image data.
Bytes png_header_claiming(int w, int h);
void write_file(const std::string& path, const Bytes& bytes);

}  // namespace fixtures
