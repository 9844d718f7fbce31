// Command-line front ends. Each returns the process exit code and never throws: user errors become one line on
// stderr and a documented exit code (see errors.h).
#pragma once
#include <functional>

namespace CLI {
class App;
}

namespace gan {

// Parses the command line into `app`. Returns -1 when the program should go on; otherwise the exit code to return:
// 0 after --help, kExitUsage after one line "PROG: error: ... (see PROG --help)" on stderr.
int parse_command_line(CLI::App& app, int argc, char** argv, const char* prog);

// Runs `body`, turning every failure into one line on stderr ("PROG: error: ...") and an exit code.
int guarded(const char* prog, const std::function<int()>& body);

int train_main(int argc, char** argv);
int sample_main(int argc, char** argv);
int eval_main(int argc, char** argv);
int export_main(int argc, char** argv);
int report_main(int argc, char** argv);

}  // namespace gan
