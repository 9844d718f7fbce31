#!/usr/bin/python3
"""The FID Inception-v3 in PyTorch, the reference for src/eval/inception.cpp (tests/test_eval.cpp, EvalInception).

  write DIR             random weights (He-initialised convolutions, BatchNorm statistics away from 0 and 1 so that
                        every layer matters) saved as pytorch-fid's weights file is, a state_dict of torchvision's
                        Inception3 naming with fc [1008, 2048], in torch.save's legacy layout: DIR/inception.pth; ten
                        test images (gray 28x28 and RGB 64x64, in [-1, 1]) as DIR/gray.npy and DIR/rgb.npy, and
                        their pool3 features as DIR/gray_features.npy and DIR/rgb_features.npy (float64).
  check-torchvision     builds the network as pytorch-fid does (torchvision's Inception3 with its FIDInceptionA/C/E_1/E_2
                        blocks, copied below) and checks that it gives the same features as FIDInception here for the
                        same weights. Needs Debian's python3-torchvision, which CI does not install; run once by hand.

FIDInception below is pytorch-fid's network (pytorch_fid/inception.py, Apache-2.0, M. Seitzer) written with plain
torch.nn modules: the same module names, so that the same state_dict loads into both.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def avg_tf(x):  # TensorFlow's average pool: the padding is not counted
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class A(nn.Module):
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(avg_tf(x))], 1)


class B(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class C(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), d,
                          self.branch_pool(avg_tf(x))], 1)


class D(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        s = x
        for i in range(1, 5):
            s = getattr(self, f"branch7x7x3_{i}")(s)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), s, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class E(nn.Module):
    def __init__(self, cin, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        t = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        p = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else avg_tf(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(t), self.branch3x3_2b(t), self.branch3x3dbl_3a(d),
                          self.branch3x3dbl_3b(d), self.branch_pool(p)], 1)


class FIDInception(nn.Module):
    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
        self.Mixed_6a = B(288)
        self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = C(768, 128), C(768, 160), C(768, 160), C(768, 192)
        self.Mixed_7a = D(768)
        self.Mixed_7b, self.Mixed_7c = E(1280, False), E(2048, True)
        self.fc = nn.Linear(2048, 1008)  # in the weights file; not used for the features

    def forward(self, x):  # [N, 3, 299, 299] in [-1, 1] -> [N, 2048]
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, kernel_size=3, stride=2)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ["5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"]:
            x = getattr(self, "Mixed_" + name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def features(net, images):
    """images [N, C, S, S] in [-1, 1] -> [N, 2048], as pytorch-fid computes them from image files: 8-bit levels, gray
    as RGB, bilinear resize to 299x299 (align_corners=False)."""
    x = ((images + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        return net(x)


def random_net(seed=3):
    torch.manual_seed(seed)
    net = FIDInception()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def write(d):
    net = random_net()
    torch.save(net.state_dict(), os.path.join(d, "inception.pth"), _use_new_zipfile_serialization=False)
    g = torch.Generator().manual_seed(11)
    gray = torch.rand(6, 1, 28, 28, generator=g) * 2 - 1
    rgb = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1
    for name, x in [("gray", gray), ("rgb", rgb)]:
        np.save(os.path.join(d, name + ".npy"), x.numpy())
        f = features(net, x)
        np.save(os.path.join(d, name + "_features.npy"), f.double().numpy())
        print(f"{name}: features {tuple(f.shape)}, mean {f.mean():.4f}, std {f.std():.4f}")


def check_torchvision():
    """pytorch-fid's fid_inception_v3(), its weights swapped for ours, against FIDInception."""
    from torchvision.models import inception as tvi

    class FIDInceptionA(tvi.InceptionA):
        def forward(self, x):
            branch1x1 = self.branch1x1(x)
            branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
            branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1,
                                                        count_include_pad=False))
            return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)

    class FIDInceptionC(tvi.InceptionC):
        def forward(self, x):
            branch1x1 = self.branch1x1(x)
            branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            b = self.branch7x7dbl_1(x)
            b = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(b))))
            branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1,
                                                        count_include_pad=False))
            return torch.cat([branch1x1, branch7x7, b, branch_pool], 1)

    class FIDInceptionE_1(tvi.InceptionE):
        def pool(self, x):
            return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

        def forward(self, x):
            branch1x1 = self.branch1x1(x)
            t = self.branch3x3_1(x)
            t = torch.cat([self.branch3x3_2a(t), self.branch3x3_2b(t)], 1)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
            return torch.cat([branch1x1, t, d, self.branch_pool(self.pool(x))], 1)

    class FIDInceptionE_2(FIDInceptionE_1):  # pytorch-fid: "max pooling instead of average pooling"
        def pool(self, x):
            return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)

    tv = tvi.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    tv.Mixed_5b = FIDInceptionA(192, pool_features=32)
    tv.Mixed_5c = FIDInceptionA(256, pool_features=64)
    tv.Mixed_5d = FIDInceptionA(288, pool_features=64)
    tv.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    tv.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    tv.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    tv.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    tv.Mixed_7b = FIDInceptionE_1(1280)
    tv.Mixed_7c = FIDInceptionE_2(2048)
    ours = random_net()
    tv.load_state_dict(ours.state_dict(), strict=True)
    tv.eval()
    blocks = [tv.Conv2d_1a_3x3, tv.Conv2d_2a_3x3, tv.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
              tv.Conv2d_3b_1x1, tv.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
              tv.Mixed_5b, tv.Mixed_5c, tv.Mixed_5d, tv.Mixed_6a, tv.Mixed_6b, tv.Mixed_6c, tv.Mixed_6d, tv.Mixed_6e,
              tv.Mixed_7a, tv.Mixed_7b, tv.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1))]
    x = torch.rand(3, 3, 299, 299, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        y = x
        for b in blocks:  # pytorch-fid's InceptionV3.forward for output_blocks=[3]
            y = b(y)
        a, b = y.flatten(1), ours(x)
    err = ((a - b).abs().max() / a.abs().max()).item()
    print(f"pytorch-fid's network (torchvision {__import__('torchvision').__version__}) vs FIDInception: "
          f"{len(ours.state_dict())} tensors loaded strictly, max relative difference {err:.2e}")
    assert err < 1e-6, err


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    elif sys.argv[1] == "check-torchvision":
        check_torchvision()
    else:
        sys.exit(__doc__)
