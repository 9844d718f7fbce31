#include "gan/errors.h"

#include <cstring>

namespace gan {

void throw_io_error(const std::string& action, const std::string& path, int err) {
  std::string hint;
  if (err == ENOSPC) hint = " (free some space and run again; --resume auto continues from the last checkpoint)";
  if (err == EACCES || err == EROFS) hint = " (choose a writable folder with --out)";
  throw UserError(kExitIo, "cannot " + action + " " + path + ": " + std::strerror(err) + hint);
}

}  // namespace gan
