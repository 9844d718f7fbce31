#!/usr/bin/env python3
"""The communication model behind docs/SCALING.md: step time = compute + the part of the gradient all-reduce that
the backward pass does not hide, for data-parallel gan-train on NCCL, from

  * the bytes all-reduced per step (measured: summary.json "allreduce_bytes_per_step"; 25.37 MB at 64x64 and
    58.93 MB at 128x128 with ngf = ndf = 64, float32 gradients),
  * published NCCL all-reduce bus bandwidths (nccl-tests' busbw: time = bytes * 2 (n - 1) / n / busbw),
  * a per-GPU compute time per step: images per GPU / throughput, but never below a per-step launch floor (an eager
    step issues some hundreds of kernels whatever the batch).

The inputs marked ASSUMED are not measured here (no GPU was lent): replace them with figures from your machines,
e.g. the GPU table of docs/PERFORMANCE.md (scripts/gpu-check.sh) for --img-per-s.

    python3 scripts/scaling_model.py [--img-per-s64 8000] [--img-per-s128 2000] [--floor-ms 3] [--batch 128 1024]
"""
import argparse

# Bus bandwidth of a large all-reduce, GB/s. ASSUMED from published figures (see docs/SCALING.md for sources).
FABRICS = {
    "1 node, 8 GPUs, NVLink4/NVSwitch (H100)": 460.0,
    "1 node, 8 GPUs, NVLink3/NVSwitch (A100)": 230.0,
    "nodes with 8x 400 Gb/s InfiniBand NDR": 0.9 * 8 * 50.0,
    "nodes with 8x 200 Gb/s InfiniBand HDR": 0.9 * 8 * 25.0,
    "nodes with one 100 Gb/s Ethernet NIC": 0.9 * 12.5,
}
LATENCY_US = {"intra": 15.0, "inter": 40.0}  # ASSUMED per all-reduce (NCCL ring/tree, small messages)
CALLS_PER_STEP = 3  # measured: one bucket per network at 25 MB buckets (64x64: 1 + 1) plus the step vote


def comm_ms(mb, gpus, busbw, inter):
    ring = mb * 1e6 * 2 * (gpus - 1) / gpus / (busbw * 1e9) * 1e3
    return ring + CALLS_PER_STEP * LATENCY_US["inter" if inter else "intra"] / 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--img-per-s64", type=float, default=8000.0, help="ASSUMED per-GPU img/s at 64x64, large batch")
    ap.add_argument("--img-per-s128", type=float, default=2000.0, help="ASSUMED per-GPU img/s at 128x128")
    ap.add_argument("--floor-ms", type=float, default=3.0, help="ASSUMED smallest eager step time (kernel launches)")
    ap.add_argument("--batch", type=int, nargs="+", default=[128, 1024], help="global batches (train.batch_size)")
    a = ap.parse_args()
    sizes = {64: (25.37, a.img_per_s64), 128: (58.93, a.img_per_s128)}
    setups = [("1 node, 8 GPUs, NVLink4/NVSwitch (H100)", 1), ("1 node, 8 GPUs, NVLink3/NVSwitch (A100)", 1)]
    for nodes in (2, 4, 8, 16):
        setups.append(("nodes with 8x 400 Gb/s InfiniBand NDR", nodes))
    for nodes in (2, 4, 8, 16):
        setups.append(("nodes with one 100 Gb/s Ethernet NIC", nodes))
    head = f"| setup | GPUs | all-reduce ms/step 64 / 128 px |"
    for b in a.batch:
        head += f" images per GPU (batch {b}) | comm share 64 / 128 px (batch {b}) |"
    print(head)
    print("|" + " --- |" * (3 + 2 * len(a.batch)))
    for fabric, nodes in setups:
        gpus = 8 * nodes
        busbw = FABRICS[fabric]
        inter = nodes > 1
        c = {s: comm_ms(mb, gpus, busbw, inter) for s, (mb, _) in sizes.items()}
        where = fabric if nodes == 1 else f"{nodes} {fabric}"
        row = f"| {where} | {gpus} | {c[64]:.2f} / {c[128]:.2f} |"
        for b in a.batch:
            per = b / gpus
            shares = []
            for s, (_, ips) in sizes.items():
                compute = max(per / ips * 1e3, a.floor_ms)
                shares.append(f"{100 * c[s] / (c[s] + compute):.0f}%")
            row += f" {per:g} | {' / '.join(shares)} |"
        print(row)


if __name__ == "__main__":
    main()
