#!/usr/bin/python3
# peer_torch.py: the PyTorch peer of fewmul's `paper-mlp` training step (Lin et al. 2016), used by
# bench/train_bench.sh to measure images/s of the same network and weight mode in the same run.
# 784-1024-1024-1024-10, dense (no bias) + batch norm (eps 1e-4, biased variance, scale, shift),
# ReLU on hidden layers, squared hinge loss (targets +-1, summed over classes, mean over batch),
# plain SGD lr 0.3, batch 200; binary/ternary weights with straight-through update and optional QB.
"""PyTorch peer for fewmul's paper-mlp benchmark.

Weight modes (latent W per layer, in x out; W0 = sqrt(6/(fan_in+fan_out))/2; W ~ U(-2W0, 2W0)):
  fp32    Wb = W, no clip
  bc      Wb = +W0 with p = clip((W/W0+1)/2, 0, 1), else -W0       (fresh per minibatch)
  bc-det  Wb = W0*sign(W), sign(0) = +1
  tc      Wb = W0*sign(W)*Bernoulli(clip(|W|/W0, 0, 1))             (fresh per minibatch)
  tc-det  Wb = W0*sign(W)*[|W| > W0/2]
Binary/ternary modes: the gradient with respect to Wb is applied to W (straight-through), then
W is clipped to [-W0, W0]. --qb: the weight gradient of every dense layer is Q(x)^T . dY with
Q(x) = sign(x)*2^(k+Bernoulli(|x|/2^k-1)), k = floor(log2|x|), Q(0) = 0, unbounded exponent,
fresh randomness per minibatch (the authors' emulation); dX = dY . Wb^T stays full precision.

Prints one JSON line, e.g.
  {"peer":"torch","mode":"bc","qb":true,"threads":2,"batch":200,"images_per_s":...}
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

DIMS = (784, 1024, 1024, 1024, 10)
MODES = ("fp32", "bc", "bc-det", "tc", "tc-det")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=MODES, default="fp32")
    p.add_argument("--qb", action="store_true", help="quantized back-prop (power-of-two x in dW)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--steps", type=int, default=50, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--data", default="synthetic",
                   help="synthetic | fashion | mnist:DIR | idx:DIR (fewmul's spec syntax)")
    p.add_argument("--images", type=int, default=10000,
                   help="training images held in memory (synthetic: generated; MNIST: first N)")
    a = p.parse_args(argv)
    if a.threads < 1 or a.batch < 1 or a.steps < 1 or a.warmup < 0 or a.images < a.batch:
        p.error("need threads, batch, steps >= 1, warmup >= 0, images >= batch")
    return a


# Thread counts must be fixed before torch loads OpenBLAS (Debian's torch calls the system
# libblas, i.e. OpenBLAS, for float GEMM; OpenBLAS otherwise starts one thread per core).
# Torch's OpenMP threads (elementwise ops) and OpenBLAS's pthreads (GEMM) are two pools; with
# libgomp's default spin-waiting, idle OpenMP threads keep the cores busy while OpenBLAS works,
# which on 2 cores made this peer ~3x slower. PASSIVE waiting removes that; the environment
# may override it (the value used is reported).
ARGS = parse_args(sys.argv[1:])
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def read_idx(path):
    """One IDX file (raw or gzip, detected by content) as a numpy uint8 array."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] != 8:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    nd = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    n = int(np.prod(shape))
    if len(raw) < 4 + 4 * nd + n:
        raise ValueError("%s: truncated" % path)
    return np.frombuffer(raw, np.uint8, n, 4 + 4 * nd).reshape(shape)


def find_idx(folder, stem):
    for name in (stem, stem.replace("-idx", ".idx", 1)):
        for ext in ("", ".gz"):
            path = os.path.join(folder, name + ext)
            if os.path.exists(path):
                return path
    raise FileNotFoundError("%s: no %s[.gz]" % (folder, stem))


def load_data(spec, n, seed):
    """(x float32 n x 784, labels int64 n): pixels/255 minus the per-pixel mean (the paper's centering)."""
    if spec == "synthetic":
        g = np.random.default_rng(seed)
        pixels = g.integers(0, 256, size=(n, 784), dtype=np.uint8)
        labels = g.integers(0, 10, size=n)
    else:
        if spec == "fashion":
            folder = "/usr/share/datasets/fashion-mnist"
        elif spec.startswith(("mnist:", "idx:")):
            folder = spec.split(":", 1)[1]
        else:
            raise SystemExit("peer_torch.py: unknown --data spec '%s'" % spec)
        pixels = read_idx(find_idx(folder, "train-images-idx3-ubyte")).reshape(-1, 784)
        labels = read_idx(find_idx(folder, "train-labels-idx1-ubyte"))
        pixels, labels = pixels[:n], labels[:n].astype(np.int64)
    x = pixels.astype(np.float32) / 255.0
    x -= x.mean(axis=0, keepdims=True)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(labels, np.int64))


def pow2_quantize(x):
    """Q(x) = sign(x) * 2^(k + Bernoulli(|x|/2^k - 1)), k = floor(log2|x|); Q(0) = 0.

    sign(x)*2^k is x with its mantissa bits cleared (exact; a subnormal x gives +-0, so Q = 0).
    p = |x|/2^k - 1 = x/(sign(x)*2^k) - 1; at x = 0 it is NaN and u < NaN is false."""
    lower = (x.view(torch.int32) & -8388608).view(torch.float32)  # 0xFF800000: sign and exponent
    up = torch.rand_like(x) < x.div(lower).sub_(1.0)
    return up.to(x.dtype).add_(1.0).mul_(lower)


class QBLinear(torch.autograd.Function):
    """y = x . Wb; backward: dX = dY . Wb^T (full precision), dWb = Q(x)^T . dY."""

    @staticmethod
    def forward(ctx, x, wb):
        ctx.save_for_backward(x, wb)
        return x.mm(wb)

    @staticmethod
    def backward(ctx, dy):
        x, wb = ctx.saved_tensors
        dx = dy.mm(wb.t()) if ctx.needs_input_grad[0] else None
        dw = pow2_quantize(x).t().mm(dy) if ctx.needs_input_grad[1] else None
        return dx, dw


class PaperMLP:
    def __init__(self, mode, qb, seed):
        self.mode, self.qb = mode, qb
        g = torch.Generator().manual_seed(seed)
        self.w, self.w0, self.gamma, self.beta = [], [], [], []
        for fi, fo in zip(DIMS[:-1], DIMS[1:]):
            w0 = math.sqrt(6.0 / (fi + fo)) / 2.0
            self.w0.append(w0)
            self.w.append((torch.rand(fi, fo, generator=g) * 4.0 - 2.0) * w0)  # U(-2W0, 2W0)
            self.gamma.append(torch.ones(fo, requires_grad=True))
            self.beta.append(torch.zeros(fo, requires_grad=True))

    def sample(self, w, w0):
        """Weights used by this minibatch's forward and backward pass (no gradient to W itself).
        Bernoulli(p) is u < p with u ~ U[0,1), so clip(p, 0, 1) needs no separate pass."""
        m = self.mode
        if m == "bc":  # +W0 with p = clip((W/W0+1)/2, 0, 1), else -W0
            p = w.mul(0.5 / w0).add_(0.5)
            return torch.rand_like(w).lt_(p).mul_(2.0 * w0).sub_(w0)
        if m == "bc-det":  # W0*sign(W), sign(0) = +1
            return (w >= 0).to(w.dtype).mul_(2.0 * w0).sub_(w0)  # (3x faster than where())
        if m == "tc":  # W0*sign(W)*Bernoulli(clip(|W|/W0, 0, 1)); W = 0 gives p = 0, so 0
            return torch.rand_like(w).lt_(w.abs().mul_(1.0 / w0)).mul_(w.sign()).mul_(w0)
        if m == "tc-det":  # W0*sign(W)*[|W| > W0/2]
            return (w.abs() > 0.5 * w0).to(w.dtype).mul_(w.sign()).mul_(w0)
        raise AssertionError(m)

    def step(self, x, t, lr):
        """One SGD step on minibatch x (B x 784) with +-1 targets t (B x 10); returns the loss."""
        if self.mode == "fp32":
            wb = [w.requires_grad_(True) for w in self.w]
        else:
            with torch.no_grad():
                wb = [self.sample(w, w0).requires_grad_(True) for w, w0 in zip(self.w, self.w0)]
        h = x
        for i in range(len(wb)):
            z = QBLinear.apply(h, wb[i]) if self.qb else h.mm(wb[i])
            z = F.batch_norm(z, None, None, self.gamma[i], self.beta[i], training=True, eps=1e-4)
            h = F.relu(z) if i + 1 < len(wb) else z
        loss = F.relu(1.0 - t * h).square().sum(dim=1).mean()
        loss.backward()
        with torch.no_grad():
            for i, w in enumerate(self.w):
                w.sub_(wb[i].grad, alpha=lr)  # straight-through: dE/dWb applied to W
                if self.mode != "fp32":
                    w.clamp_(-self.w0[i], self.w0[i])
                else:
                    w.grad = None
                for p in (self.gamma[i], self.beta[i]):
                    p.sub_(p.grad, alpha=lr)
                    p.grad = None
        return loss.item()


def main(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x_all, y_all = load_data(a.data, a.images, a.seed)
    n = x_all.shape[0]
    if n < a.batch:
        raise SystemExit("peer_torch.py: %d images < batch %d" % (n, a.batch))
    t_all = torch.full((n, 10), -1.0)
    t_all[torch.arange(n), y_all] = 1.0
    net = PaperMLP(a.mode, a.qb, a.seed)

    per_epoch = n // a.batch
    order, pos = None, per_epoch
    loss = float("nan")
    t0 = None
    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            t0 = time.perf_counter()
        if pos == per_epoch:  # a fresh shuffle every epoch, the last partial batch dropped
            order, pos = torch.randperm(n), 0
        idx = order[pos * a.batch:(pos + 1) * a.batch]
        pos += 1
        loss = net.step(x_all.index_select(0, idx), t_all.index_select(0, idx), a.lr)
    dt = time.perf_counter() - t0
    print(json.dumps({"peer": "torch", "mode": a.mode, "qb": a.qb, "threads": a.threads,
                      "batch": a.batch, "steps": a.steps, "data": a.data,
                      "images_per_s": round(a.batch * a.steps / dt, 1),
                      "final_loss": round(loss, 4), "torch": torch.__version__,
                      "omp_wait_policy": os.environ["OMP_WAIT_POLICY"]}))


if __name__ == "__main__":
    main(ARGS)
