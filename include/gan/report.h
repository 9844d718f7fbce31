// The run report: RUN/report.html, one self-contained page (nothing from the network, no script or style from
// elsewhere) with the loss and D-output curves, img/s, the evaluation scores over the steps with their real-vs-real
// floors (all inline SVG), the sample grid of every sample step on a slider, the resolved config, summary.json and the
// health warnings of train.log. gan-train writes it at the end of every run; gan-report writes it any time.
#pragma once
#include <string>

namespace gan {

// Writes `out` ("" = run_dir/report.html) atomically from what `run_dir` holds; returns its path.
// Throws UserError(kExitUsage) when run_dir is not a run folder, UserError(kExitIo) when the page cannot be written.
std::string write_report(const std::string& run_dir, const std::string& out = "");

}  // namespace gan
