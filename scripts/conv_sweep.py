#!/usr/bin/env python3
"""Float32 convolutions against float64 over ~3,000 small shapes, with PyTorch.

Finds the shapes on which a LibTorch's CPU convolution backend (oneDNN) computes wrong results; the programs' start-up
check (src/core/self_check.cpp) takes its wrong-shape cases from this sweep. Run it under each oneDNN cap to compare:
    ONEDNN_MAX_CPU_ISA=AVX2 python3 scripts/conv_sweep.py      # or AVX, SSE41; --no-onednn: LibTorch's own kernels
    python3 scripts/conv_sweep.py --op conv_transpose2d        # G's transposed convolution (oneDNN's deconvolution)
    python3 scripts/conv_sweep.py --op double_backward         # what R1 / R2 / WGAN-GP differentiate: the input
                                                               # gradient of conv2d, differentiated again
    python3 scripts/conv_sweep.py --channels                   # conv2d by input channel count, 2 to 128
--op conv2d (the default) checks the output, the input gradient and the weight gradient; conv_transpose2d the same
for the transposed convolution; double_backward takes gx = d<y, g>/dx with create_graph and checks the gradients of
<gx, h> with respect to the weight and to g. A result counts as wrong when max |float32 - float64| exceeds 1e-3 of
max |float64| and 1e-4 (the inputs are of order 1: float32's rounding stays far below 1e-4, the faults seen were
errors of order 1, and without the floor a 1x1 output that cancels to near zero counted as wrong everywhere).
Seeded: the same shapes and values every run (each --op on its own, from seed 0).
"""
import itertools
import os
import sys
from collections import Counter

import torch

OPS = ("conv2d", "conv_transpose2d", "double_backward")


def results(op, x, w, g_seed, s, p):
    """The results of `op` at float64 (the reference) and float32: [(name, float32, float64)]."""
    out = {}
    for dtype in (torch.float64, torch.float32):
        xr, wr = x.to(dtype).requires_grad_(), w.to(dtype).requires_grad_()
        if op == "conv_transpose2d":
            y = torch.conv_transpose2d(xr, wr, None, s, p)
        else:
            y = torch.conv2d(xr, wr, None, s, p)
        g = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(g_seed)).to(dtype)
        if op == "double_backward":
            g.requires_grad_()
            (gx,) = torch.autograd.grad(y, (xr,), g, create_graph=True)
            h = torch.randn(gx.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(g_seed + 1))
            ggw, ggg = torch.autograd.grad(gx, (wr, g), h.to(dtype))
            out[dtype] = [("input gradient", gx), ("its weight gradient", ggw), ("its output-gradient gradient", ggg)]
        else:
            gx, gw = torch.autograd.grad(y, (xr, wr), g)
            out[dtype] = [("output", y), ("input gradient", gx), ("weight gradient", gw)]
    return [(name, a, r) for (name, a), (_, r) in zip(out[torch.float32], out[torch.float64])]


def wrong(a, r):
    """Whether float32 `a` is wrong against float64 `r` (the rule in this file's docstring); also its relative error."""
    diff = (a.double() - r).abs().max().item()
    e = diff / max(r.abs().max().item(), 1e-12)
    return not (e < 1e-3 or diff < 1e-4), e


def channel_probe():
    """--channels: conv2d on [2, C, 8, 8] for C from 2 to 128, four kernel forms; prints which results are wrong."""
    torch.manual_seed(0)
    any_bad = False
    for cin in [2, 5, 7, 8, 9, 12, 16, 17, 20, 24, 32, 64, 128]:
        row = []
        for k, s, p in [(1, 1, 0), (3, 1, 1), (4, 2, 1), (2, 1, 1)]:
            x = torch.randn(2, cin, 8, 8, dtype=torch.float64)
            w = torch.randn(6, cin, k, k, dtype=torch.float64)
            bad = [name for name, a, r in results("conv2d", x, w, cin, s, p) if wrong(a, r)[0]]
            any_bad |= bool(bad)
            row.append(f"k{k} s{s} p{p}: {', '.join(bad) or 'right'}")
        print(f"{cin:3d} input channels | " + " | ".join(row))
    return 1 if any_bad else 0


def main():
    if "--no-onednn" in sys.argv:
        torch.backends.mkldnn.enabled = False
    if "--channels" in sys.argv:
        return channel_probe()
    op = "conv2d"
    if "--op" in sys.argv:
        op = sys.argv[sys.argv.index("--op") + 1]
        if op not in OPS:
            print(f"conv_sweep: --op {op}: use one of {', '.join(OPS)}", file=sys.stderr)
            return 2
    torch.manual_seed(0)
    bad, n_all = [], 0
    # Input channels 12 and 20 are above a vector's width and not a multiple of it (8 floats at AVX and AVX2, 16 at
    # AVX-512): trixie's oneDNN computed wrong outputs for such counts only.
    for k, p, s, cin, cout, hw, n in itertools.product([1, 2, 3, 4], [0, 1, 2], [1, 2], [1, 3, 4, 8, 12, 20],
                                                        [1, 5, 8, 20], [1, 4, 8, 16], [1, 2]):
        if p >= k or hw + 2 * p < k:
            continue
        x = torch.randn(n, cin, hw, hw, dtype=torch.float64)
        if op == "conv_transpose2d":
            if (hw - 1) * s - 2 * p + k < 1:
                continue
            w = torch.randn(cin, cout, k, k, dtype=torch.float64)
        else:
            w = torch.randn(cout, cin, k, k, dtype=torch.float64)
        checked = results(op, x, w, n_all, s, p)
        n_all += 1
        for name, a, r in checked:
            is_wrong, e = wrong(a, r)
            if is_wrong:
                bad.append((k, p, s, cin, cout, hw, n, name, e))
    print(f"torch {torch.__version__}, {op}, oneDNN {'on' if torch.backends.mkldnn.enabled else 'off'}, "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}, {torch.get_num_threads()} threads")
    print(f"{len({b[:7] for b in bad})} of {n_all} shapes wrong ({len(bad)} results)")
    for (k, p, s, name), count in sorted(Counter((b[0], b[1], b[2], b[7]) for b in bad).items()):
        print(f"  k{k} p{p} s{s} {name}: {count}")
    for b in bad[:5]:
        print(f"  e.g. [{b[6]}, {b[3]}, {b[5]}, {b[5]}] k{b[0]} s{b[2]} p{b[1]} -> {b[4]}, {b[7]}: relative error {b[8]:.3g}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
