// Command-line front ends. Each returns the process exit code and never throws: user errors become one line on
// stderr and a documented exit code (see errors.h).
#pragma once

namespace gan {

int train_main(int argc, char** argv);
int sample_main(int argc, char** argv);

}  // namespace gan
