#include "gan/run_folder.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <filesystem>
#include <sstream>

#include "gan/checkpoint.h"
#include "gan/errors.h"
#include "gan/files.h"
#include "gan/image.h"
#include "gan/json.h"
#include "gan/tensorboard.h"

namespace gan {
namespace fs = std::filesystem;

namespace {

std::string timestamp() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", std::localtime(&t));
  return buf;
}

std::string step_name(std::int64_t step, const char* ext) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "step_%07lld%s", static_cast<long long>(step), ext);
  return buf;
}

// Points `link` at `target` atomically (hard link + rename); falls back to copying.
void publish_as(const std::string& target, const std::string& link) {
  std::string tmp = link + ".tmp." + std::to_string(::getpid());
  ::unlink(tmp.c_str());
  if (::link(target.c_str(), tmp.c_str()) == 0) {
    if (::rename(tmp.c_str(), link.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      throw_io_error("update", link, err);
    }
    return;
  }
  write_file_atomic(link, read_file(target));
}

// Deletes "*.tmp.<pid>" files that a killed process left next to the files it was replacing.
void remove_stale_temporaries(const std::string& run) {
  for (const std::string& dir : {run, run + "/samples", checkpoint_dir(run)}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().filename().string().find(".tmp.") != std::string::npos) fs::remove(e.path(), ec);
  }
}

// Keeps the metrics rows up to `step`, atomically (a resumed run re-does the steps after its checkpoint).
void truncate_metrics(const std::string& path, std::int64_t step) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  std::istringstream in(read_file(path));
  std::string kept, line;
  while (std::getline(in, line)) {
    long long s = -1;
    if (std::sscanf(line.c_str(), "{\"step\": %lld", &s) == 1 && s <= step) kept += line + "\n";
  }
  write_file_atomic(path, kept);
}

}  // namespace

std::string run_dir_of_checkpoint(const std::string& checkpoint) {
  fs::path p = fs::absolute(checkpoint).lexically_normal();
  fs::path dir = p.parent_path();
  if (dir.filename() == "checkpoints") dir = dir.parent_path();
  return dir.string();
}

std::string new_run_dir(const Config& cfg) {
  return cfg.output.dir + "/" + (cfg.output.name.empty() ? cfg.name + "-" + timestamp() : cfg.output.name);
}

std::vector<std::string> step_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<long long, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(checkpoint_dir(run_dir), ec)) {
    long long step;
    char tail;
    const std::string name = e.path().filename().string();
    if (std::sscanf(name.c_str(), "step_%lld.p%c", &step, &tail) == 2 && name.size() > 3 &&
        name.compare(name.size() - 3, 3, ".pt") == 0)
      found.emplace_back(step, e.path().string());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

namespace {

// The newest (by write time) of the step checkpoints of `runs` that opens and validates; "" when none does.
std::string newest_valid_checkpoint(const std::vector<fs::path>& runs, const std::string& what) {
  std::vector<std::pair<fs::file_time_type, std::string>> candidates;
  std::error_code ec;
  for (const auto& run : runs)
    for (const auto& ckpt : step_checkpoints(run.string())) {
      auto t = fs::last_write_time(ckpt, ec);
      if (!ec) candidates.emplace_back(t, ckpt);
    }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& c : candidates) {
    try {
      read_checkpoint_config(c.second);  // opens the archive and checks header, format and config
      return c.second;
    } catch (const UserError& e) {
      spdlog::warn("--resume {}: skipping {}", what, e.what());
    }
  }
  return "";
}

}  // namespace

std::string find_resume_checkpoint(const Config& cfg, const std::string& resume) {
  std::error_code ec;
  if (resume != "auto") {
    if (fs::is_directory(resume, ec)) {  // a run folder: its newest step checkpoint that opens
      std::string run = resume;
      while (run.size() > 1 && run.back() == '/') run.pop_back();
      if (!fs::is_directory(checkpoint_dir(run), ec))
        throw UserError(kExitUsage, "--resume " + resume + " is a folder but not a run folder (it has no "
                                    "checkpoints/); give a run folder written by gan-train, a checkpoint .pt or auto");
      const std::string found = newest_valid_checkpoint({fs::path(run)}, resume);
      if (found.empty())
        throw UserError(kExitCheckpoint, "--resume " + resume + ": the run has no step checkpoint that opens (see the "
                                         "warnings above); start it anew with another --name");
      return found;
    }
    const std::string file = resolve_checkpoint_arg(resume);  // RUN/latest, RUN/best
    if (!fs::is_regular_file(file, ec))
      throw UserError(kExitCheckpoint, "--resume " + resume + ": no such checkpoint file (give a checkpoint .pt, "
                                       "its run folder, or auto for the newest valid checkpoint of this config's runs)");
    return file;
  }
  // Candidate runs: output.name when set, else every <config name>-* folder; newest checkpoint first.
  std::vector<fs::path> runs;
  if (!cfg.output.name.empty()) {
    runs.push_back(fs::path(cfg.output.dir) / cfg.output.name);
  } else if (fs::is_directory(cfg.output.dir, ec)) {
    for (const auto& entry : fs::directory_iterator(cfg.output.dir, ec))
      if (entry.is_directory() && entry.path().filename().string().rfind(cfg.name + "-", 0) == 0)
        runs.push_back(entry.path());
  }
  return newest_valid_checkpoint(runs, "auto");
}

RunFolder::RunFolder(const std::string& path, bool writer, const Config& cfg, std::int64_t resume_step)
    : path_(path), writer_(writer) {
  if (!writer_) return;
  if (resume_step < 0 && !step_checkpoints(path_).empty())
    throw UserError(kExitUsage, "run folder " + path_ +
                                    " already holds a run; continue it with --resume auto or pick another --name");
  make_dirs(path_ + "/samples");
  make_dirs(checkpoint_dir(path_));
  remove_stale_temporaries(path_);
  logger_ = spdlog::default_logger();
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path_ + "/train.log");
  logger_->sinks().push_back(file);
  // Every line reaches the disk as it is logged (a run is watched with tail -f, and a killed one keeps its log).
  flush_level_ = static_cast<int>(logger_->flush_level());
  logger_->flush_on(spdlog::level::info);
  file_only_ = std::make_shared<spdlog::logger>("", file);  // unnamed, so its lines read like the others
  file_only_->flush_on(spdlog::level::info);
  write_file_atomic(path_ + "/config.yaml", to_yaml(cfg));
  // Rows a killed process wrote after its last checkpoint, or before its first one (a new run in that folder).
  truncate_metrics(path_ + "/metrics.jsonl", std::max<std::int64_t>(resume_step, 0));
  // A TensorBoard event file per session; a resumed one first tells TensorBoard to forget the steps it does again.
  events_ = std::make_unique<EventWriter>(path_);
  if (resume_step >= 0) events_->restart(resume_step + 1);
  events_->text(std::max<std::int64_t>(resume_step, 0), "config", "```\n" + to_yaml(cfg) + "```");
}

RunFolder::~RunFolder() {
  if (!logger_) return;
  logger_->sinks().pop_back();
  logger_->flush_on(static_cast<spdlog::level::level_enum>(flush_level_));
}

void RunFolder::log_to_file(const std::string& line) {
  if (file_only_) file_only_->info(line);
}

void RunFolder::add_scalars(std::int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  if (events_) events_->scalars(step, values);
}

std::string RunFolder::checkpoint_path(std::int64_t step) const {
  return checkpoint_dir(path_) + "/" + step_name(step, ".pt");
}

void RunFolder::append_metrics(const std::string& row) {
  if (writer_) append_line(path_ + "/metrics.jsonl", row);
}

std::string RunFolder::write_grid(std::int64_t step, const Image& grid) {
  const std::string path = path_ + "/samples/" + step_name(step, ".png");
  if (!writer_) return path;
  write_png(path, grid);
  publish_as(path, path_ + "/samples/latest.png");
  events_->image(step, "samples/fixed_noise", grid);
  return path;
}

void RunFolder::publish_checkpoint(const std::string& path, int keep_last) {
  if (!writer_) return;
  publish_as(path, checkpoint_dir(path_) + "/latest.pt");
  if (keep_last > 0) {  // only now that the new one is safe
    auto all = step_checkpoints(path_);
    for (size_t i = static_cast<size_t>(keep_last); i < all.size(); ++i) ::unlink(all[i].c_str());
  }
}

void RunFolder::rewind(std::int64_t step) {
  if (!writer_) return;
  for (const auto& path : step_checkpoints(path_)) {
    long long s = -1;
    if (std::sscanf(fs::path(path).filename().string().c_str(), "step_%lld", &s) == 1 && s > step)
      ::unlink(path.c_str());
  }
  truncate_metrics(path_ + "/metrics.jsonl", step);
  events_->restart(step + 1);
}

void RunFolder::write_summary(const RunSummary& s) {
  if (!writer_) return;
  char head[256];
  std::snprintf(head, sizeof head, "\"steps\": %lld, \"exit_code\": %d, \"wall_s\": %.2f, \"img_per_s\": %.2f, "
                                   "\"rollbacks\": %d, \"world_size\": %d",
                static_cast<long long>(s.steps), s.exit_code, s.wall_s, s.images_per_sec, s.rollbacks, s.world_size);
  std::string json = "{\"run_dir\": " + json_quote(path_) + ", \"exit_reason\": " + json_quote(s.exit_reason) +
                     ", \"message\": " + (s.message.empty() ? "null" : json_quote(s.message)) + ", " + head +
                     ", \"checkpoint\": " + json_quote(s.checkpoint) + ", \"grid\": " + json_quote(s.grid) +
                     ", \"last_metrics\": " + (s.last_metrics.empty() ? "null" : s.last_metrics) +
                     ", \"eval\": " + (s.last_eval.empty() ? "null" : s.last_eval) +
                     ", \"best_eval\": " + (s.best_eval.empty() ? "null" : s.best_eval) +
                     ", \"health\": " + (s.health.empty() ? "null" : s.health) +
                     ", \"augment\": " + (s.augment.empty() ? "null" : s.augment) +
                     ", \"distributed\": " + (s.distributed.empty() ? "null" : s.distributed) +
                     ", \"versions\": " + (s.versions.empty() ? "null" : s.versions) + "}\n";
  write_file_atomic(path_ + "/summary.json", json);
}

}  // namespace gan
