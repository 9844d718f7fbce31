// A rendezvous store on a free loopback port, hosted by the test as a launcher would host it.
#pragma once
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "gan/distributed.h"

namespace testutil {

inline c10::intrusive_ptr<c10d::TCPStore> local_store() {
  c10d::TCPStoreOptions o = gan::store_options();
  o.port = 0;  // a free port: getPort() tells which
  o.isServer = true;
  o.waitWorkers = false;
  return c10::make_intrusive<c10d::TCPStore>("127.0.0.1", o);
}

// The environment of one worker of `world` that joins the store at `port` as a client (torchrun's agent store).
inline gan::LaunchEnv worker_env(int rank, int world, int port) {
  gan::LaunchEnv env;
  env.present = true;
  env.rank = env.local_rank = rank;
  env.world_size = env.local_world_size = world;
  env.master_addr = "127.0.0.1";
  env.master_port = port;
  env.agent_store = true;
  return env;
}

}  // namespace testutil
