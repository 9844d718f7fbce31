// gan-report: a run folder's report.html, any time (gan-train also writes it at the end of every run).
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "gan/cli.h"
#include "gan/errors.h"
#include "gan/report.h"

namespace gan {

int report_main(int argc, char** argv) {
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  return guarded("gan-report", [&]() -> int {
    CLI::App app{"gan-report: write a run folder's report.html (curves, scores, grids, config, summary, warnings)"};
    std::string run, out;
    app.add_option("run", run, "run folder (runs/<run>)")->required();
    app.add_option("--out", out, "HTML file to write (default: RUN/report.html)");
    if (int code = parse_command_line(app, argc, argv, "gan-report"); code >= 0) return code;
    spdlog::info("wrote {}", write_report(run, out));
    return kExitOk;
  });
}

}  // namespace gan
