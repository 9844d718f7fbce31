#!/usr/bin/python3
"""Times c10d's Gloo all-reduce of one flat float32 buffer between processes on this machine (127.0.0.1), with
torch.distributed from Debian's python3-torch: the same LibTorch and Gloo that gan-train uses, on idle cores.

    /usr/bin/python3 scripts/bench_allreduce.py --mb 25.37 6.91 --world 2 [--reps 10]

Prints one line per size: "allreduce.<MB>mb.ms <median ms>" and "allreduce.<MB>mb.busbw_gb_s <bus bandwidth>"
(bus bandwidth = size * 2 (W - 1) / W / time, the figure nccl-tests prints, so that rings of any size compare).
"""
import argparse
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, world, port, sizes_mb, reps, threads, queue):
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    out = {}
    for mb in sizes_mb:
        t = torch.ones(int(mb * 1e6 / 4))
        for _ in range(2):  # warm-up: connections, allocations
            dist.all_reduce(t)
        times = []
        for _ in range(reps):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - t0)
        out[mb] = statistics.median(times)
    if rank == 0:
        queue.put(out)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, nargs="+", required=True, help="buffer sizes in MB (1e6 bytes)")
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(worker, args=(a.world, port, a.mb, a.reps, a.threads, queue), nprocs=a.world, join=True)
    res = queue.get()
    for mb in a.mb:
        sec = res[mb]
        busbw = mb * 1e6 * 2 * (a.world - 1) / a.world / sec / 1e9
        print(f"allreduce.{mb:g}mb.ms {sec * 1e3:.2f}")
        print(f"allreduce.{mb:g}mb.busbw_gb_s {busbw:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
