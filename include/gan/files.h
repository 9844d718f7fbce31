// Crash-safe file writing: write to a temporary file in the same folder, fsync, rename, fsync the folder.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace gan {

// Writes `bytes` to `path` atomically. Throws UserError(kExitIo) naming the path on any failure
// (the previous file at `path`, if any, is left untouched).
void write_file_atomic(const std::string& path, const std::string& bytes);
// Atomically replaces `path` with a file produced by `writer(tmp_path)` (e.g. a torch archive's save_to).
void replace_file_atomic(const std::string& path, const std::function<void(const std::string&)>& writer);
// Appends one line (a '\n' is added) and flushes it to disk.
void append_line(const std::string& path, const std::string& line);
// Creates a folder and its parents; throws UserError(kExitIo) if it cannot.
void make_dirs(const std::string& path);
std::string read_file(const std::string& path);  // throws UserError(kExitIo)

}  // namespace gan
