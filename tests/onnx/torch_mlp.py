#!/usr/bin/env python3
"""torch_mlp.py — trains a small binary MLP or CNN in PyTorch (weights
binarised in the forward pass with a straight-through estimator, batch norm,
sign activations), exports it with torch.onnx.export (the TorchScript
exporter) and writes PyTorch's own class for every test image, for
tests/cli_onnx_import.sh to compare with `fewmul import` then `fewmul infer`.

The CNN is PyTorch's usual order: convolution, batch norm, sign, then the
max-pool (fewmul pools before the batch norm; the import reorders where the
batch norm's scales are positive, which the training keeps them, as it clips
the latent weights); its map is made channel-last before the last layer
(permute, flatten), as fewmul's vectors run.

The network takes the raw pixel values (0 .. 255, float, [batch, 784]) and
multiplies them by float32(1/255) itself: the graph's leading Mul becomes
the packed file's input scale, so fewmul feeds the layers the same floats.
In evaluation (and so in the export) the weights are where(W >= 0, +1, -1)
and the sign activation where(z >= 0, +1, -1), fewmul's sign.
Usage: torch_mlp.py IDX_FOLDER STEPS OUT.onnx OUT_PREDICTIONS [mlp|cnn|cnn-negative]
(cnn-negative: the CNN with one batch-norm scale of its first layer made
negative before the export, which the import must refuse)
"""
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn


def idx(folder, name):
    path = os.path.join(folder, name)
    data = gzip.open(path + ".gz").read() if os.path.exists(path + ".gz") else open(path, "rb").read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


class SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


class Signs(nn.Module):
    """+1 where x >= 0, else -1; a straight-through gradient in training."""

    def __init__(self):
        super().__init__()
        self.register_buffer("one", torch.tensor(1.0))
        self.register_buffer("minus_one", torch.tensor(-1.0))

    def forward(self, x):
        if self.training:
            return SignSTE.apply(x)
        return torch.where(x >= 0, self.one, self.minus_one)


class BinaryLinear(nn.Linear):
    def __init__(self, n_in, n_out):
        super().__init__(n_in, n_out, bias=False)
        self.sign = Signs()

    def forward(self, x):
        return nn.functional.linear(x, self.sign(self.weight))


class BinaryConv(nn.Conv2d):
    def __init__(self, n_in, n_out):
        super().__init__(n_in, n_out, 3, padding=1, bias=False)
        self.sign = Signs()

    def forward(self, x):
        return nn.functional.conv2d(x, self.sign(self.weight), padding=1)


class Cnn(nn.Module):
    """[batch, 1, 28, 28] raw pixels: 8 and 16 binary 3x3 filters, each with
    batch norm, sign and a 2x2 max-pool, then a binary dense layer to 10."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.tensor(np.float32(1.0 / 255.0)))
        self.c1, self.bn1, self.act1 = BinaryConv(1, 8), nn.BatchNorm2d(8), Signs()
        self.c2, self.bn2, self.act2 = BinaryConv(8, 16), nn.BatchNorm2d(16), Signs()
        self.fc, self.bn3 = BinaryLinear(16 * 7 * 7, 10), nn.BatchNorm1d(10)
        self.pool = nn.MaxPool2d(2)

    def forward(self, pixels):
        x = pixels * self.scale
        x = self.pool(self.act1(self.bn1(self.c1(x))))
        x = self.pool(self.act2(self.bn2(self.c2(x))))
        x = torch.flatten(x.permute(0, 2, 3, 1), 1)
        return self.bn3(self.fc(x))

    def binary(self):
        return (self.c1, self.c2, self.fc)

    def norms(self):
        return (self.bn1, self.bn2, self.bn3)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.tensor(np.float32(1.0 / 255.0)))
        self.fc1, self.bn1, self.act1 = BinaryLinear(784, 128), nn.BatchNorm1d(128), Signs()
        self.fc2, self.bn2, self.act2 = BinaryLinear(128, 64), nn.BatchNorm1d(64), Signs()
        self.fc3, self.bn3 = BinaryLinear(64, 10), nn.BatchNorm1d(10)

    def forward(self, pixels):
        x = pixels * self.scale
        x = self.act1(self.bn1(self.fc1(x)))
        x = self.act2(self.bn2(self.fc2(x)))
        return self.bn3(self.fc3(x))

    def binary(self):
        return (self.fc1, self.fc2, self.fc3)

    def norms(self):
        return (self.bn1, self.bn2, self.bn3)


def main():
    folder, steps, onnx_path, pred_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    kind = sys.argv[5] if len(sys.argv) > 5 else "mlp"
    cnn = kind.startswith("cnn")
    shape = (-1, 1, 28, 28) if cnn else (-1, 784)
    torch.manual_seed(1)
    torch.set_num_threads(2)
    train_x = torch.tensor(idx(folder, "train-images-idx3-ubyte").reshape(shape), dtype=torch.float32)
    train_y = torch.tensor(idx(folder, "train-labels-idx1-ubyte"), dtype=torch.int64)
    test_x = torch.tensor(idx(folder, "t10k-images-idx3-ubyte").reshape(shape), dtype=torch.float32)
    net = Cnn() if cnn else Net()
    opt = torch.optim.Adam(net.parameters(), lr=0.005)
    gen = torch.Generator().manual_seed(2)
    for _ in range(steps):
        batch = torch.randint(0, len(train_x), (100,), generator=gen)
        loss = nn.functional.cross_entropy(net(train_x[batch]), train_y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():  # latent weights clipped, BinaryConnect's way
            for layer in net.binary():
                layer.weight.clamp_(-1, 1)
            for bn in net.norms():  # and batch norm's scales kept positive
                bn.weight.clamp_(min=0.05)
    net.eval()
    if kind == "cnn-negative":
        with torch.no_grad():
            net.bn1.weight[0] = -0.5
    with torch.no_grad():
        scores = net(test_x)
        top2 = torch.topk(scores, 2, dim=1)
    torch.onnx.export(net, test_x[:1], onnx_path, input_names=["pixels"], output_names=["scores"],
                      dynamic_axes={"pixels": {0: "batch"}, "scores": {0: "batch"}}, opset_version=13)
    with open(pred_path, "w") as f:
        for k in range(len(test_x)):
            f.write("%d %.9g\n" % (int(top2.indices[k, 0]), float(top2.values[k, 0] - top2.values[k, 1])))
    labels = idx(folder, "t10k-labels-idx1-ubyte")
    err = float((scores.argmax(1).numpy() != labels).mean())
    print("# PyTorch: %d steps, test error %.2f%%" % (steps, 100 * err))


main()
