// A training run's folder and everything written into it:
//   <run>/config.yaml  train.log  metrics.jsonl  samples/step_XXXXXXX.png  samples/latest.png
//   <run>/checkpoints/step_XXXXXXX.pt  checkpoints/latest.pt  summary.json (written at the end)
//   <run>/events.out.tfevents.*  (TensorBoard: the metrics as scalars, the grids as images, the config as text)
// Exactly one process writes it (rank 0 of a distributed run); a RunFolder of any other rank writes nothing.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gan/config.h"

namespace spdlog {
class logger;
}

namespace gan {

struct Image;
class EventWriter;

// The checkpoint `--resume` means: a file is checked to exist (RUN/latest and RUN/best as resolve_checkpoint_arg
// reads them); a run folder gives its newest step checkpoint that opens and validates; "auto" the same over this
// config's runs under output.dir (or output.name when set). Checkpoints that do not open are skipped with a warning.
// Returns "" when "auto" finds none (a new run starts); throws UserError for a path that gives no checkpoint.
std::string find_resume_checkpoint(const Config& cfg, const std::string& resume);

// <run>/checkpoints/step_*.pt, highest step first.
std::vector<std::string> step_checkpoints(const std::string& run_dir);

// The run folder a checkpoint belongs to (<run>/checkpoints/x.pt -> <run>).
std::string run_dir_of_checkpoint(const std::string& checkpoint);

// The folder a new run of `cfg` writes into: output.dir/output.name, or output.dir/<config name>-<date>-<time>.
std::string new_run_dir(const Config& cfg);

// What summary.json records at the end of a run.
struct RunSummary {
  std::string exit_reason;       // finished | signal | time_limit | diverged | peer_lost | error
  std::string message;           // the error's one line ("" unless it ended in an error)
  std::string checkpoint, grid;  // the last ones written
  std::int64_t steps = 0;
  int exit_code = 0, rollbacks = 0, world_size = 1;
  double wall_s = 0, images_per_sec = 0;
  std::string last_metrics;  // the newest metrics.jsonl row (JSON)
  std::string last_eval;     // the newest evaluation (JSON)
  std::string best_eval;     // the evaluation with the lowest FD and its step (JSON)
  std::string versions;      // this program's and LibTorch's versions (JSON)
  std::string health;        // the health monitor's figures (JSON)
  std::string distributed;   // all-reduce figures of a distributed run (JSON; "" for one process)
  std::string augment;       // train.augment: mode, policy, ADA's p, auto's switch (JSON; "" when off)
};

class RunFolder {
 public:
  // `resume_step` >= 0 continues a run whose newest checkpoint is at that step; -1 starts a new one, refusing a folder
  // that already holds checkpoints. The writer creates the folder, removes what a killed process left half-written,
  // drops metrics rows after `resume_step`, writes config.yaml and adds train.log to the default logger's sinks.
  RunFolder(const std::string& path, bool writer, const Config& cfg, std::int64_t resume_step);
  ~RunFolder();  // takes train.log out of the logger again
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;

  const std::string& path() const { return path_; }
  bool writer() const { return writer_; }
  std::string checkpoint_path(std::int64_t step) const;

  // One metrics.jsonl row (a JSON object starting with "step").
  void append_metrics(const std::string& row);
  // A line for train.log alone (the progress line, which the terminal shows as its bar instead).
  void log_to_file(const std::string& line);
  // TensorBoard scalars of one step ("loss/d", "eval/fd", ...).
  void add_scalars(std::int64_t step, const std::vector<std::pair<std::string, double>>& values);
  // samples/step_XXXXXXX.png, then samples/latest.png pointing at it. Returns the grid's path.
  std::string write_grid(std::int64_t step, const Image& grid);
  // Points checkpoints/latest.pt at a checkpoint just written, then deletes step checkpoints beyond the newest
  // `keep_last` (0 = keep all).
  void publish_checkpoint(const std::string& path, int keep_last);
  // Takes the run back to `step` (train.augment auto, from best.pt): deletes the step checkpoints after it, drops the
  // metrics rows after it and tells TensorBoard to forget the steps from step + 1 on, as a resume does.
  void rewind(std::int64_t step);
  void write_summary(const RunSummary& s);

 private:
  std::string path_;
  bool writer_;
  std::shared_ptr<spdlog::logger> logger_;  // the default logger, while train.log is one of its sinks
  std::shared_ptr<spdlog::logger> file_only_;  // train.log alone
  int flush_level_ = 0;                        // the default logger's flush level before train.log was added
  std::unique_ptr<EventWriter> events_;      // this session's TensorBoard event file
};

}  // namespace gan
