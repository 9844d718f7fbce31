#!/usr/bin/python3
"""Seeds for the torch.save reader's fuzz target (tests/fuzz/pickle_fuzz.cpp), written by this machine's PyTorch
(Debian's python3-torch) into DIR: small state_dicts, views and dtypes, a bare tensor, in the legacy stream (pickle
protocols 2 and 4) and as the data.pkl of the zip layout (whose storages the fuzz target does not read).
  pickle_seeds.py DIR        scripts/fuzz.sh runs it before fuzzing; nothing binary is kept in the repository.
"""
import io
import os
import sys
import zipfile

import torch


def main(d):
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    sd = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)).state_dict()
    base = torch.arange(12.).reshape(3, 4)
    mixed = {"t": base.t(), "s": base[1:3], "h": torch.arange(3, dtype=torch.float16),
             "b": torch.arange(2, dtype=torch.bfloat16), "i": torch.arange(2), "p": torch.nn.Parameter(torch.ones(2)),
             "bool": torch.tensor([True]), "scalar": torch.tensor(3.5),
             "meta": [1, 2.5, "x", None, True, (1, 2), {"k": -70000, "big": 2**70}]}

    def legacy(obj, name, protocol=2):
        torch.save(obj, os.path.join(d, name), _use_new_zipfile_serialization=False, pickle_protocol=protocol)

    def zipped(obj, name):
        buf = io.BytesIO()
        torch.save(obj, buf)
        z = zipfile.ZipFile(buf)
        with open(os.path.join(d, name), "wb") as f:
            f.write(z.read([n for n in z.namelist() if n.endswith("data.pkl")][0]))

    legacy(sd, "legacy-state-dict.seed")
    legacy(mixed, "legacy-views-dtypes.seed")
    legacy(mixed, "legacy-protocol4.seed", 4)
    legacy(torch.zeros(2, 3), "legacy-tensor.seed")
    zipped(sd, "zip-state-dict.seed")
    zipped(mixed, "zip-views-dtypes.seed")
    zipped({"netG": sd, "epoch": 5}, "zip-checkpoint.seed")


if __name__ == "__main__":
    main(sys.argv[1])
