// A small animated-GIF (GIF89a) writer: one global 256-entry palette, LZW-compressed frames, looping forever.
// Grayscale frames use 256 gray levels (exact); RGB frames are mapped to the nearest colour of a fixed
// 6x7x6 colour cube (252 colours, no dithering: at most ~26 levels off per channel).
#pragma once
#include <string>
#include <vector>

#include "gan/image.h"

namespace gan {

// The bytes of a GIF of `frames` (all the same size, all 1 or all 3 channels), each shown `delay_cs`
// hundredths of a second. Throws std::invalid_argument for empty or mismatched frames.
std::string encode_gif(const std::vector<Image>& frames, int delay_cs);

// Writes it atomically (temporary file + rename); `fps` frames per second (0.1 .. 50; GIF stores the delay in
// 1/100 s, so it is rounded). Throws UserError(kExitUsage) for a bad fps, UserError(kExitIo) for a failed write.
void write_gif(const std::string& path, const std::vector<Image>& frames, double fps);

// The palette index of an RGB colour in the 6x7x6 cube, and the cube's colour for an index.
int cube_index(int r, int g, int b);
Rgb cube_colour(int index);

}  // namespace gan
