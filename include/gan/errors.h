// Errors a user can cause, and the exit codes they end in.
#pragma once
#include <stdexcept>
#include <string>

namespace gan {

// Documented exit codes (README "Exit codes").
enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,    // a bug: please report it
  kExitUsage = 2,       // bad command line or config
  kExitData = 3,        // dataset missing, empty or unreadable
  kExitCheckpoint = 4,  // checkpoint missing, corrupt or incompatible
  kExitIo = 5,          // cannot write outputs (permissions, disk full)
  kExitDiverged = 6,    // non-finite loss or gradient (train.on_nan), last good checkpoint named
  kExitDistributed = 7,  // a distributed run lost a peer (it stopped responding) or could not rendezvous
  kExitMemory = 8,      // out of memory for a tensor (CPU or GPU): lower the batch or image size
  kExitMaths = 9,       // LibTorch's float32 maths on this machine fails the start-up check against float64
  kExitTimeLimit = 75,  // stopped at train.max_time after saving; run again with --resume auto
  kExitInterrupted = 130,  // SIGINT: stopped cleanly after saving
  kExitTerminated = 143,   // SIGTERM: stopped cleanly after saving
};

// An error in the user's input or environment. `main` prints what() as one line and exits with code().
class UserError : public std::runtime_error {
 public:
  UserError(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

// Throws UserError(kExitIo) naming `path` and errno's text, e.g. "cannot write runs/x/a.png: No space left on device".
[[noreturn]] void throw_io_error(const std::string& action, const std::string& path, int err);

// A number as a user typed it, for messages: 0.7 -> "0.7", -1 -> "-1" (std::to_string would give "-1.000000").
std::string format_number(double v);

}  // namespace gan
