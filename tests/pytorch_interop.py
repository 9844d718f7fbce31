#!/usr/bin/python3
"""PyTorch's side of tests/test_interop.cpp (Debian's python3-torch; python/gan_models.py):

  verify DIR       DIR holds what gan-export and gan-sample wrote for one checkpoint: G.pt + G.yaml, D.pt + D.yaml,
                   G.safetensors, z.npy (+ z_labels.npy), images.npy, and d_logits.npy (D's output on those images,
                   computed by LibTorch). Checks that torch.load(weights_only=True) reads the .pt files, that they load
                   strictly into gan_models, that a safetensors reader written here (not the C++ writer) finds the
                   same tensors and the config, and that G and D in PyTorch give the same images and logits.
  dcgan DIR        G.pt and D.pt of an unconditional 64x64 model load strictly into the PyTorch DCGAN example's
                   networks (dcgan/main.py, copied below), which are then saved as the example saves its checkpoints
                   (torch.save(netG.state_dict(), "netG_epoch_0.pth"), and netD likewise).
  write-init DIR   writes pyG.pt and pyD.pt: gan_models networks built from DIR/config.yaml, seeded differently from
                   gan-train; G saved as the PyTorch DCGAN example saves it (torch.save(netG.state_dict()), an
                   OrderedDict), D in the legacy layout of PyTorch < 1.6 as if saved from a GPU (location cuda:0).
  write-torch-save DIR
                   writes what torch.save makes of state_dicts and tensors in every layout (zip, legacy, legacy with
                   pickle protocol 4, from "cuda:0"; views, offsets, float16/bfloat16/int64/bool, Parameters, a
                   DataParallel "module." prefix, checkpoint dicts) and each tensor's values as NAME.npy (float64 or
                   int64) for the C++ reader to match.
  compare DIR A B  the tensors of the state_dict files A and B (in DIR) are equal within 1e-6.
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import gan_models  # noqa: E402

DTYPES = {"F32": (np.float32, torch.float32), "F64": (np.float64, torch.float64), "I64": (np.int64, torch.int64)}


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    assert (8 + n) % 8 == 0, "data must start 8-byte aligned"
    meta = header.pop("__metadata__", {})
    out, end = {}, 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, f = e["data_offsets"]
        assert b == end, f"{name}: hole or overlap before it"
        end = f
        np_type, torch_type = DTYPES[e["dtype"]]
        arr = np.frombuffer(data[8 + n + b:8 + n + f], dtype=np_type).reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy()).to(torch_type)
    assert 8 + n + end == len(data), "bytes after the last tensor"
    return out, meta


def verify(d):
    g_state = torch.load(f"{d}/G.pt", weights_only=True)
    d_state = torch.load(f"{d}/D.pt", weights_only=True)
    assert type(g_state) is dict and all(isinstance(v, torch.Tensor) for v in g_state.values())
    cfg = gan_models.model_config(open(f"{d}/G.yaml").read())
    g, dis = gan_models.Generator(cfg), gan_models.Discriminator(cfg)
    g.load_state_dict(g_state, strict=True)
    dis.load_state_dict(d_state, strict=True)
    assert gan_models.load(f"{d}/G.pt").__class__ is gan_models.Generator
    assert gan_models.load(f"{d}/D.pt").__class__ is gan_models.Discriminator
    st, meta = read_safetensors(f"{d}/G.safetensors")
    assert set(st) == set(g_state), f"safetensors keys differ: {set(st) ^ set(g_state)}"
    for k in st:
        assert st[k].dtype == g_state[k].dtype and torch.equal(st[k], g_state[k]), k
    assert meta["config"] == open(f"{d}/G.yaml").read() and meta["net"] == "g"
    z = torch.from_numpy(np.load(f"{d}/z.npy"))
    labels = torch.from_numpy(np.load(f"{d}/z_labels.npy")) if os.path.exists(f"{d}/z_labels.npy") else None
    want = torch.from_numpy(np.load(f"{d}/images.npy"))
    g.eval()
    dis.eval()
    with torch.no_grad():
        images = g(z, labels)
        logits = dis(want, labels)
    diff = (images - want).abs().max().item()
    ddiff = (logits - torch.from_numpy(np.load(f"{d}/d_logits.npy"))).abs().max().item()
    print(f"PyTorch vs gan-sample, {len(z)} images of {tuple(images.shape[1:])}: max |image diff| {diff:.2e}; "
          f"D logits max |diff| {ddiff:.2e}")
    assert diff < 1e-5, diff
    assert ddiff < 1e-4, ddiff


# The PyTorch DCGAN example's networks (pytorch/examples, dcgan/main.py), with its globals as arguments.
class ExampleGenerator(nn.Module):
    def __init__(self, nz, ngf, nc):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, x):
        return self.main(x)


class ExampleDiscriminator(nn.Module):
    def __init__(self, ndf, nc):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x)


def dcgan(d):
    cfg = gan_models.model_config(open(f"{d}/G.yaml").read())
    g = ExampleGenerator(cfg["nz"], cfg["ngf"], cfg["channels"])
    g.load_state_dict(torch.load(f"{d}/G.pt", weights_only=True), strict=True)
    dis = ExampleDiscriminator(cfg["ndf"], cfg["channels"])
    dis.load_state_dict(torch.load(f"{d}/D.pt", weights_only=True), strict=True)
    print(f"the PyTorch DCGAN example's Generator and Discriminator loaded G.pt and D.pt strictly "
          f"({sum(p.numel() for p in g.parameters())} + {sum(p.numel() for p in dis.parameters())} parameters)")
    # The example's own checkpoint files, saved as dcgan/main.py saves them (an OrderedDict each), for gan-sample.
    torch.save(g.state_dict(), f"{d}/netG_epoch_0.pth")
    torch.save(dis.state_dict(), f"{d}/netD_epoch_0.pth")


def write_init(d):
    cfg = gan_models.model_config(open(f"{d}/config.yaml").read())
    torch.manual_seed(123)
    g, dis = gan_models.Generator(cfg), gan_models.Discriminator(cfg)
    torch.save(g.state_dict(), f"{d}/pyG.pt")
    with saved_from_gpu():
        torch.save(dis.state_dict(), f"{d}/pyD.pt", _use_new_zipfile_serialization=False)
    print("wrote pyG.pt and pyD.pt")


class saved_from_gpu:
    """torch.save records each storage's device; this makes it record cuda:0 (torch.load of such a file fails on a
    machine without CUDA unless given map_location)."""

    def __enter__(self):
        self.tag = torch.serialization.location_tag
        torch.serialization.location_tag = lambda storage: "cuda:0"

    def __exit__(self, *exc):
        torch.serialization.location_tag = self.tag


def write_torch_save(d):
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(5, 2))
    net[1].running_mean.normal_()
    sd = net.state_dict()
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6) / 7
    mixed = {"transposed": base.t(), "rows": base[1:3], "column": base[:, 2], "half": torch.randn(5).half(),
             "bf16": torch.randn(3).bfloat16(), "long": torch.tensor([-3, 2**40]), "flags": torch.tensor([True, False]),
             "param": nn.Parameter(torch.randn(2, 2)), "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3)}
    expect = {}

    def save(name, obj, tensors, **kw):
        torch.save(obj, f"{d}/{name}", **kw)
        expect[name] = list(tensors)
        for k, t in tensors.items():
            t = t.detach()
            np.save(f"{d}/{name}.{k}.npy", (t.long() if t.dtype in (torch.int64, torch.bool) else t.double()).contiguous().numpy())

    save("sd_zip.pt", sd, sd)
    save("sd_legacy.pt", sd, sd, _use_new_zipfile_serialization=False)
    save("sd_legacy_p4.pt", sd, sd, _use_new_zipfile_serialization=False, pickle_protocol=4)
    with saved_from_gpu():
        save("sd_cuda_zip.pt", sd, sd)
        save("sd_cuda_legacy.pt", sd, sd, _use_new_zipfile_serialization=False)
    save("mixed_zip.pt", mixed, mixed)
    save("mixed_legacy.pt", mixed, mixed, _use_new_zipfile_serialization=False)
    save("ddp.pt", {"module." + k: v for k, v in sd.items()}, sd)
    save("checkpoint.pt", {"epoch": 3, "state_dict": sd, "optimizer": {"lr": 0.1}}, sd)
    torch.save({"netG": sd, "netD": sd, "epoch": 5}, f"{d}/two_nets.pt")
    z = torch.randn(4, 8)
    save("z_legacy.pt", z, {"z": z}, _use_new_zipfile_serialization=False)
    with open(f"{d}/expect.txt", "w") as f:
        for name, keys in expect.items():
            f.write(name + " " + " ".join(keys) + "\n")
    print(f"wrote {len(expect)} files")


def compare(d, a, b):
    sa, sb = torch.load(f"{d}/{a}", weights_only=True), torch.load(f"{d}/{b}", weights_only=True)
    assert set(sa) == set(sb), set(sa) ^ set(sb)
    worst = max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa if sa[k].is_floating_point())
    print(f"{a} vs {b}: max |diff| {worst:.2e}")
    assert worst < 1e-6, worst


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"verify": verify, "dcgan": dcgan, "write-init": write_init, "write-torch-save": write_torch_save,
     "compare": compare}[cmd](*args)
