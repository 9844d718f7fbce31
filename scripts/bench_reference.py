#!/usr/bin/python3
"""The Python reference for gan-bench: the PyTorch DCGAN example (dcgan/main.py) step, eager mode, generalised to
power-of-two sizes the way gan-train's models are (one stride-2 block per factor of 2, channel multiplier capped at
8). Same loss (BCE with logits, non-saturating G loss), Adam 2e-4 / (0.5, 0.999), random data, float32, on the CPU
or (--device cuda) a GPU. Like the example, it reads the D loss back every step. --amp bf16 | fp16 runs the forward
passes under torch.autocast as a Python user would (fp16 with a GradScaler; on the CPU, torch 1.13's autocast leaves
ConvTranspose2d in float32).
Run with Debian's /usr/bin/python3 (python3-torch); prints 'ref.img_per_s N' like gan-bench step."""
import argparse
import time

import torch
import torch.nn as nn


def mult(size, res):  # channel multiplier of the feature map at `res`, as gan::channel_mult
    m, r = 1, size // 2
    while r > res:
        m, r = m * 2, r // 2
    return min(m, 8)


def generator(size, nc, nz, ngf):
    ch = ngf * mult(size, 4)
    layers = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
    res = 8
    while res < size:
        nxt = ngf * mult(size, res)
        layers += [nn.ConvTranspose2d(ch, nxt, 4, 2, 1, bias=False), nn.BatchNorm2d(nxt), nn.ReLU(True)]
        ch, res = nxt, res * 2
    layers += [nn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def discriminator(size, nc, ndf):
    ch = ndf
    layers = [nn.Conv2d(nc, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    res = size // 4
    while res >= 4:
        nxt = ndf * mult(size, res)
        layers += [nn.Conv2d(ch, nxt, 4, 2, 1, bias=False), nn.BatchNorm2d(nxt), nn.LeakyReLU(0.2, inplace=True)]
        ch, res = nxt, res // 2
    layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]
    return nn.Sequential(*layers)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"], help="forward passes under torch.autocast")
    a = p.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: this torch has no CUDA device")
    import os
    torch.set_num_threads(a.threads or os.cpu_count())
    torch.manual_seed(1)
    nz = 100
    g = generator(a.image_size, a.channels, nz, a.ngf).to(dev)
    d = discriminator(a.image_size, a.channels, a.ndf).to(dev)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    crit = nn.BCEWithLogitsLoss()
    real = (torch.rand(a.batch, a.channels, a.image_size, a.image_size) * 2 - 1).to(dev)
    ones, zeros = torch.ones(a.batch, device=dev), torch.zeros(a.batch, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if a.amp == "fp16" and dev.type != "cuda":
        p.error("--amp fp16 needs --device cuda (CPU autocast is bf16)")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.amp)
    scaler = torch.cuda.amp.GradScaler(enabled=a.amp == "fp16")

    def autocast():
        return torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    def step():
        z = torch.randn(a.batch, nz, 1, 1, device=dev)
        with autocast():
            fake = g(z)
        d.zero_grad()
        with autocast():
            loss_d = crit(d(real).view(-1).float(), ones) + crit(d(fake.detach()).view(-1).float(), zeros)
        scaler.scale(loss_d).backward()
        scaler.step(opt_d)
        g.zero_grad()
        with autocast():
            loss_g = crit(d(fake).view(-1).float(), ones)
        scaler.scale(loss_g).backward()
        scaler.step(opt_g)
        scaler.update()
        return loss_d.item()

    for _ in range(a.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    dt = time.perf_counter() - t0
    print(f"ref.params_g {sum(q.numel() for q in g.parameters())}")
    print(f"ref.params_d {sum(q.numel() for q in d.parameters())}")
    print(f"ref.threads {torch.get_num_threads()}")
    print(f"ref.amp {a.amp}")
    print(f"ref.img_per_s {a.steps * a.batch / dt:.2f}")
    import resource
    print(f"ref.peak_rss_mib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    if dev.type == "cuda":
        print(f"ref.peak_device_mib {torch.cuda.max_memory_allocated(dev) / 1048576:.0f}")


if __name__ == "__main__":
    main()
