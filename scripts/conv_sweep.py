#!/usr/bin/env python3
"""Float32 conv2d (output, input gradient, weight gradient) against float64 over 2,048 small shapes, with PyTorch.

Finds the shapes on which a LibTorch's CPU convolution backend (oneDNN) computes wrong results; the programs' start-up
check (src/core/self_check.cpp) takes its wrong-shape cases from this sweep. Run it under each oneDNN cap to compare:
    ONEDNN_MAX_CPU_ISA=AVX2 python3 scripts/conv_sweep.py      # or AVX, SSE41; --no-onednn: LibTorch's own kernels
A result counts as wrong when max |float32 - float64| exceeds 1e-3 of max |float64|. Seeded: the same shapes and
values every run.
"""
import itertools
import os
import sys
from collections import Counter

import torch


def main():
    if "--no-onednn" in sys.argv:
        torch.backends.mkldnn.enabled = False
    torch.manual_seed(0)
    bad, n_all = [], 0
    for k, p, s, cin, cout, hw, n in itertools.product([1, 2, 3, 4], [0, 1, 2], [1, 2], [1, 3, 4, 8], [1, 5, 8, 20],
                                                        [1, 4, 8, 16], [1, 2]):
        if p >= k or hw + 2 * p < k:
            continue
        x = torch.randn(n, cin, hw, hw, dtype=torch.float64)
        w = torch.randn(cout, cin, k, k, dtype=torch.float64)
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = torch.conv2d(xr, wr, None, s, p)
        g = torch.randn_like(y)
        gx, gw = torch.autograd.grad(y, (xr, wr), g)
        xf, wf = x.float().requires_grad_(), w.float().requires_grad_()
        yf = torch.conv2d(xf, wf, None, s, p)
        gxf, gwf = torch.autograd.grad(yf, (xf, wf), g.float())
        n_all += 1
        for name, a, r in (("output", yf, y), ("input gradient", gxf, gx), ("weight gradient", gwf, gw)):
            e = ((a.double() - r).abs().max() / r.abs().max().clamp_min(1e-12)).item()
            if not e < 1e-3:
                bad.append((k, p, s, cin, cout, hw, n, name, e))
    print(f"torch {torch.__version__}, oneDNN {'on' if torch.backends.mkldnn.enabled else 'off'}, "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}, {torch.get_num_threads()} threads")
    print(f"{len({b[:7] for b in bad})} of {n_all} shapes wrong ({len(bad)} results)")
    for (k, p, s, name), count in sorted(Counter((b[0], b[1], b[2], b[7]) for b in bad).items()):
        print(f"  k{k} p{p} s{s} {name}: {count}")
    for b in bad[:5]:
        print(f"  e.g. [{b[6]}, {b[3]}, {b[5]}, {b[5]}] k{b[0]} s{b[2]} p{b[1]} -> {b[4]}, {b[7]}: relative error {b[8]:.3g}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
