#include "gan/errors.h"

#include <cstring>
#include <sstream>

namespace gan {

void throw_io_error(const std::string& action, const std::string& path, int err) {
  std::string hint;
  if (err == ENOSPC) hint = " (free some space and run again; --resume auto continues from the last checkpoint)";
  if (err == EACCES || err == EROFS) hint = " (choose a writable folder with --out)";
  throw UserError(kExitIo, "cannot " + action + " " + path + ": " + std::strerror(err) + hint);
}

std::string format_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace gan
