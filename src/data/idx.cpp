#include "gan/idx.h"

#include <zlib.h>

#include "gan/errors.h"

namespace gan {

IdxArray read_idx(const std::string& path) {
  auto fail = [&](const std::string& what) -> UserError { return UserError(kExitData, "IDX file " + path + ": " + what); };
  gzFile f = gzopen(path.c_str(), "rb");  // reads gzip and raw files alike
  if (!f) throw fail("cannot open (missing or unreadable; for Fashion-MNIST install the Debian package dataset-fashion-mnist)");
  std::vector<std::uint8_t> bytes;
  std::uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) bytes.insert(bytes.end(), buf, buf + n);
  int errnum = 0;
  const char* msg = gzerror(f, &errnum);
  bool bad = n < 0 || (errnum != Z_OK && errnum != Z_BUF_ERROR);
  std::string reason = bad && msg ? msg : "";
  gzclose(f);
  if (bad) throw fail("corrupt or truncated compressed data (" + reason + ")");
  if (bytes.size() < 4) throw fail("too short to be an IDX file");
  if (bytes[0] != 0 || bytes[1] != 0) throw fail("not an IDX file (bad magic number)");
  if (bytes[2] != 0x08) throw fail("element type 0x" + std::to_string(bytes[2]) + " is not unsigned byte (0x08)");
  const int ndim = bytes[3];
  if (ndim < 1 || ndim > 4) throw fail("unsupported number of dimensions " + std::to_string(ndim));
  if (bytes.size() < 4 + 4 * static_cast<size_t>(ndim)) throw fail("truncated header");
  IdxArray out;
  std::int64_t total = 1;
  for (int d = 0; d < ndim; ++d) {
    const std::uint8_t* p = &bytes[4 + 4 * d];
    std::int64_t v = (std::int64_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
    out.dims.push_back(v);
    total *= v;
  }
  const size_t header = 4 + 4 * static_cast<size_t>(ndim);
  if (bytes.size() - header != static_cast<size_t>(total))
    throw fail("holds " + std::to_string(bytes.size() - header) + " data bytes but its header promises " +
               std::to_string(total) + " (truncated or corrupt)");
  out.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return out;
}

}  // namespace gan
