// Command-line front ends. Each returns the process exit code and never throws: user errors become one line on
// stderr and a documented exit code (see errors.h).
#pragma once
#include <functional>

namespace gan {

// Runs `body`, turning every failure into one line on stderr ("PROG: error: ...") and an exit code.
int guarded(const char* prog, const std::function<int()>& body);

int train_main(int argc, char** argv);
int sample_main(int argc, char** argv);

}  // namespace gan
