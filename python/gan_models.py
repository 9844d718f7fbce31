"""gan-trainer's generator and discriminator in PyTorch, for every configuration the trainer has (sizes 16 to 256,
grayscale or RGB, conditional with projection or concat D, spectral norm, minibatch std, D normalisation batch, none,
layer or instance), with the trainer's state_dict keys (main.N.*, embed.weight; BatchNorm buffers included), so that
any network that gan-export writes loads with load_state_dict(strict=True):

    import torch, gan_models
    g = gan_models.load("G.pt")                      # G.yaml beside it holds the config (gan-export writes both)
    g = gan_models.load("G.safetensors")             # the config is in the file's metadata (needs the safetensors package)
    z = torch.randn(16, g.nz)
    images = g.eval()(z)                             # [16, C, S, S] in [-1, 1]; conditional: g(z, labels)

    g = gan_models.Generator(gan_models.model_config(open("config.yaml").read()))   # from a config, fresh init
    torch.save(dict(g.state_dict()), "G.pt")         # gan-train --init-from G.pt starts from it

For the default unconditional 64x64 model with batch-normalised D, these are the PyTorch DCGAN example's networks
(dcgan/main.py): the same layers, indices and names.
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULTS = dict(image_size=32, channels=1, nz=100, ngf=64, ndf=64, max_mult=8, latent="normal", d_norm="batch",
                spectral_norm=False, minibatch_std=False, conditional=False, num_classes=0, class_embed=50,
                d_conditioning="projection", sync_bn=False)


def model_config(yaml_text):
    """The model section of a gan-train config (config.yaml, a checkpoint's or gan-export's), with defaults."""
    import yaml
    cfg = dict(DEFAULTS)
    cfg.update((yaml.safe_load(yaml_text) or {}).get("model") or {})
    return cfg


def channel_mult(cfg, resolution):
    m, r = 1, cfg["image_size"] // 2
    while r > resolution:
        m, r = m * 2, r // 2
    return min(m, cfg["max_mult"])


class SNConv2d(nn.Module):
    """Conv2d (no bias) divided by its largest singular value, one power-iteration step per training-mode call."""

    def __init__(self, cin, cout, k, stride, padding):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.empty(cout, cin, k, k))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.register_buffer("u", F.normalize(torch.randn(cout), dim=0))

    def forward(self, x):
        w = self.weight.reshape(self.weight.shape[0], -1)
        with torch.no_grad():
            v = F.normalize(w.detach().t().mv(self.u), dim=0, eps=1e-12)
            if self.training:
                self.u.copy_(F.normalize(w.detach().mv(v), dim=0, eps=1e-12))
            u = self.u.clone()
        sigma = u.dot(w.mv(v))
        return F.conv2d(x, self.weight / sigma, None, self.stride, self.padding)


class MinibatchStd(nn.Module):
    """Appends the std-dev over groups of up to 4 images as one more feature map (a batch not divisible by 4: one group)."""

    def forward(self, x):
        n, c, h, w = x.shape
        g = 4 if n % 4 == 0 else n
        y = x.reshape(g, n // g, c, h, w)
        sd = (y.var(0, unbiased=False) + 1e-8).sqrt()
        f = sd.mean((1, 2, 3))
        maps = f.view(1, n // g, 1, 1, 1).expand(g, n // g, 1, h, w).reshape(n, 1, h, w)
        return torch.cat([x, maps.to(x.dtype)], 1)


class Generator(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cfg = dict(DEFAULTS, **cfg)
        self.cfg, self.nz = cfg, cfg["nz"]
        g = cfg["ngf"]
        ch = g * channel_mult(cfg, 4)
        cin = cfg["nz"] + (cfg["class_embed"] if cfg["conditional"] else 0)
        layers = [nn.ConvTranspose2d(cin, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]  # [N, ch, 4, 4]
        res = 8
        while res < cfg["image_size"]:
            nxt = g * channel_mult(cfg, res)
            layers += [nn.ConvTranspose2d(ch, nxt, 4, 2, 1, bias=False), nn.BatchNorm2d(nxt), nn.ReLU(True)]
            ch, res = nxt, res * 2
        layers += [nn.ConvTranspose2d(ch, cfg["channels"], 4, 2, 1, bias=False), nn.Tanh()]  # [N, C, S, S]
        self.main = nn.Sequential(*layers)
        if cfg["conditional"]:
            self.embed = nn.Embedding(cfg["num_classes"], cfg["class_embed"])

    def forward(self, z, labels=None):
        z = z.reshape(z.shape[0], self.nz)
        if self.cfg["conditional"]:
            z = torch.cat([z, self.embed(labels).to(z.dtype)], 1)
        return self.main(z.view(z.shape[0], z.shape[1], 1, 1))


class Discriminator(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cfg = dict(DEFAULTS, **cfg)
        self.cfg = cfg
        d, ch = cfg["ndf"], cfg["ndf"]
        concat = cfg["conditional"] and cfg["d_conditioning"] == "concat"

        def down(cin, cout, stride, padding):
            if cfg["spectral_norm"]:
                return SNConv2d(cin, cout, 4, stride, padding)
            return nn.Conv2d(cin, cout, 4, stride, padding, bias=False)

        def norm(c):
            if cfg["d_norm"] == "layer":
                return nn.GroupNorm(1, c)
            if cfg["d_norm"] == "instance":
                return nn.InstanceNorm2d(c, affine=True)
            return nn.BatchNorm2d(c)

        extra = cfg["num_classes"] if concat else 0
        layers = [down(cfg["channels"] + extra, ch, 2, 1), nn.LeakyReLU(0.2, inplace=True)]  # [N, ndf, S/2, S/2]
        res = cfg["image_size"] // 4
        while res >= 4:
            nxt = d * channel_mult(cfg, res)
            layers.append(down(ch, nxt, 2, 1))
            if cfg["d_norm"] != "none":
                layers.append(norm(nxt))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            ch, res = nxt, res // 2
        if cfg["minibatch_std"]:
            layers.append(MinibatchStd())
            ch += 1
        layers.append(down(ch, 1, 1, 0))  # [N, 1, 1, 1]
        self.main = nn.Sequential(*layers)
        if cfg["conditional"] and not concat:
            self.embed = nn.Embedding(cfg["num_classes"], ch)

    def forward(self, x, labels=None):
        cfg = self.cfg
        h = x
        if cfg["conditional"] and cfg["d_conditioning"] == "concat":
            maps = F.one_hot(labels, cfg["num_classes"]).to(x.dtype)
            h = torch.cat([x, maps.view(x.shape[0], -1, 1, 1).expand(-1, -1, x.shape[2], x.shape[3])], 1)
        for layer in list(self.main)[:-1]:
            h = layer(h)
        logits = self.main[-1](h)
        if hasattr(self, "embed"):  # projection: + <embed(y), sum over pixels of h>
            logits = logits + (self.embed(labels).to(h.dtype) * h.sum((2, 3))).sum(1).view(-1, 1, 1, 1)
        return logits.view(x.shape[0])


def load(path, net=None):
    """A network from a gan-export file: NAME.pt with NAME.yaml beside it, or NAME.safetensors (config in its metadata)."""
    if path.endswith(".safetensors"):
        from safetensors import safe_open
        with safe_open(path, framework="pt") as f:
            meta = f.metadata()
            state = {k: f.get_tensor(k) for k in f.keys()}
        cfg, net = model_config(meta["config"]), net or meta.get("net", "g")
    else:
        state = torch.load(path, weights_only=True)
        cfg = model_config(open(os.path.splitext(path)[0] + ".yaml").read())
        if net is None:  # G's first layer takes the latent (and class embedding): [nz (+ embed), ch, 4, 4]
            g_in = cfg["nz"] + (cfg["class_embed"] if cfg["conditional"] else 0)
            net = "g" if state["main.0.weight"].shape[0] == g_in else "d"
    model = Discriminator(cfg) if net == "d" else Generator(cfg)
    model.load_state_dict(state, strict=True)
    return model
