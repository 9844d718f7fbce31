// Images from a checkpoint alone: the generator is rebuilt from the config stored in it.
#pragma once
#include <cstdint>
#include <string>

namespace gan {

struct SampleOptions {
  std::string checkpoint;     // .pt written by gan-train
  int n = 64;                 // number of images
  std::string out = "";       // grid PNG ("" = none)
  std::string individual;     // folder for one PNG per image ("" = none)
  std::int64_t seed = 0;      // noise seed
  int nrow = 8;               // images per grid row
  std::string device = "auto";
};

// Writes the grid and/or the individual images; returns how many files were written.
// Throws UserError (bad checkpoint: kExitCheckpoint; unwritable output: kExitIo).
int sample(const SampleOptions& opts);

}  // namespace gan
