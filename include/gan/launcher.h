// gan-train --nproc-per-node N: a launcher for one machine that needs no Python. It does what
// `torchrun --standalone --nproc_per_node N` does for our workers: hosts the rendezvous store on a free port of this
// machine and starts N copies of this program with the environment torchrun gives (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE=True, TORCHELASTIC_RESTART_COUNT=0, ...).
#pragma once
#include <string>
#include <vector>

namespace gan {

// Starts `nproc` workers running `args` (this program's arguments without --nproc-per-node) and waits for them.
// SIGINT/SIGTERM received by the launcher are passed to every worker once (the workers are in their own process
// group, so a terminal's Ctrl-C reaches them only this way; they stop together after the same step). A worker
// outlives the launcher by at most one step: it gets SIGTERM when the launcher dies. Once one worker has failed, the
// others have `grace_seconds` to end on their own before they are killed.
// Returns the worst exit code: 0 when all succeeded; else the first failure in time whose code is not 7 (a peer lost:
// the consequence of another worker's failure, not its cause); 7 when that is all there is.
int launch_local_workers(int nproc, const std::vector<std::string>& args, double grace_seconds);

// Removes "--nproc-per-node N" / "--nproc-per-node=N" from a command line (argv[0] excluded).
std::vector<std::string> without_launcher_options(const std::vector<std::string>& args);

}  // namespace gan
