#!/usr/bin/python3
# peer_torch_cnn.py: the PyTorch peer of fewmul's `paper-cnn` training step (Lin et al. 2016, the
# authors' CIFAR-10/SVHN net), used by bench/cnn_bench.sh to measure images/s of the same network
# and weight mode in the same run. See docs/bench.md, "Convolutional training (paper-cnn)".
"""PyTorch peer for fewmul's paper-cnn benchmark.

Network (32x32x3 input, every convolution 'valid', stride 1, no bias):
  conv 3x3 128 -> BN -> ReLU;  conv 3x3 128 -> maxpool 2x2 -> BN -> ReLU
  conv 2x2 256 -> BN -> ReLU;  conv 2x2 256 -> maxpool 2x2 -> BN -> ReLU
  conv 2x2 512 -> BN -> ReLU;  conv 2x2 512 -> maxpool 2x2 -> BN -> ReLU
  conv 2x2 1024 (map 1x1) -> BN -> ReLU;  dense 1024 (no bias) -> BN -> ReLU;  dense 10 -> BN
BN per feature map (after the pool), eps 1e-4, biased batch variance, learned scale and shift.
Loss: squared hinge, targets +-1, summed over the classes, mean over the batch. Plain SGD,
lr 0.3, batch 100.

Weight modes (latent W per layer; W0 = sqrt(6/(fan_in+fan_out))/2, conv fan_in = C*k*k,
fan_out = F*k*k/(pool area); W ~ U(-2W0, 2W0)):
  fp32  Wb = W, no clip
  bc    Wb = +W0 with p = clip((W/W0+1)/2, 0, 1), else -W0        (fresh per minibatch)
  tc    Wb = W0*sign(W)*Bernoulli(clip(|W|/W0, 0, 1))              (fresh per minibatch)
Binary/ternary: the gradient with respect to Wb is applied to W (straight-through), then W is
clipped to [-W0, W0].
--qb: each layer's weight gradient uses Q(x) of the layer input, Q(x) = sign(x) *
2^(k+Bernoulli(|x|/2^k-1)), k = floor(log2|x|), Q(0) = 0, fresh randomness per minibatch; in
the convolutions k is clipped to [-4, 3] (so |Q| is in {2^-4 .. 2^4}), in the dense layers it is
unbounded. The input gradient stays full precision, through Wb.

Prints one JSON line, e.g.
  {"peer":"torch","arch":"paper-cnn","mode":"bc","qb":true,"threads":2,"images_per_s":...}
--check instead trains a few steps on one fixed batch and prints the loss of each.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

MODES = ("fp32", "bc", "tc")
# (filters, kernel, pooled after): the paper's CIFAR-10/SVHN convolutions; then dense 1024, 10
CONVS = ((128, 3, False), (128, 3, True), (256, 2, False), (256, 2, True),
         (512, 2, False), (512, 2, True), (1024, 2, False))
DENSE = (1024, 10)
QB_CONV_KMIN, QB_CONV_KMAX = -4, 3
# glibc malloc: tensors above 32 MiB (the first convolutions' outputs and gradients at batch 100)
# are always mmap'ed afresh and page-faulted in 4 KiB at a time, and freed heap memory is
# trimmed back to the kernel; on this machine that was 125,000-180,000 page faults and ~0.3 s
# more CPU per step. hugetlb=1 makes glibc ask for transparent huge pages (the kernel's THP
# mode is 'madvise'), the rest keeps freed memory in the heap. A PyTorch user on CPU would tune
# the allocator (jemalloc with default settings did not help here).
MALLOC_TUNABLES = ("glibc.malloc.hugetlb=1:glibc.malloc.top_pad=268435456:"
                   "glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=33554432")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=MODES, default="fp32")
    p.add_argument("--qb", action="store_true", help="quantized back-prop (power-of-two x in dW)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=10, help="timed training steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--data", default="synthetic",
                   help="synthetic (random pixels) | cifar10:DIR (binary version, fewmul's spec)")
    p.add_argument("--images", type=int, default=1000,
                   help="training images held in memory (synthetic: generated; cifar10: first N)")
    p.add_argument("--layout", choices=("channels_last", "nchw"), default="channels_last",
                   help="memory format of activations and conv weights (default channels_last, "
                        "faster with oneDNN here)")
    p.add_argument("--malloc", choices=("tuned", "system"), default="tuned",
                   help="tuned (default): run under GLIBC_TUNABLES=%s (re-executing "
                        "itself once), unless GLIBC_TUNABLES is already set; system: glibc's "
                        "defaults" % MALLOC_TUNABLES)
    p.add_argument("--check", action="store_true",
                   help="train --check-steps steps on one fixed batch, print each loss, no timing")
    p.add_argument("--check-steps", type=int, default=2)
    a = p.parse_args(argv)
    if (a.threads < 1 or a.batch < 1 or a.steps < 1 or a.warmup < 0 or a.images < a.batch
            or a.check_steps < 1):
        p.error("need threads, batch, steps, check-steps >= 1, warmup >= 0, images >= batch")
    return a


# Thread counts must be fixed before torch loads its libraries (OpenMP pool for oneDNN
# convolutions and elementwise ops; Debian's torch calls OpenBLAS, with its own pthread pool,
# for the dense GEMMs). Passive OpenMP waiting keeps idle OpenMP threads from spinning on the
# cores while OpenBLAS works (see docs/bench.md); the environment may override it.
ARGS = parse_args(sys.argv[1:])
if ARGS.malloc == "tuned" and "GLIBC_TUNABLES" not in os.environ:
    os.environ["GLIBC_TUNABLES"] = MALLOC_TUNABLES  # read by glibc at start-up only
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

CONV_BWD = torch.ops.aten.convolution_backward
STRIDE, PAD, DIL = [1, 1], [0, 0], [1, 1]


def load_data(spec, n, seed):
    """(pixels uint8 n x 32 x 32 x 3 (NHWC), labels int64 n). cifar10:DIR reads the first n
    records of data_batch_1.bin .. data_batch_5.bin (3073 bytes each: label, then 1024 red,
    1024 green, 1024 blue)."""
    if spec == "synthetic":
        g = np.random.default_rng(seed)
        pixels = g.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = g.integers(0, 10, size=n)
    elif spec.startswith("cifar10:"):
        folder = spec.split(":", 1)[1]
        chunks, have = [], 0
        for i in range(1, 6):
            path = os.path.join(folder, "data_batch_%d.bin" % i)
            raw = np.fromfile(path, np.uint8)
            if raw.size % 3073:
                raise SystemExit("peer_torch_cnn.py: %s: not whole 3073-byte records" % path)
            chunks.append(raw.reshape(-1, 3073))
            have += chunks[-1].shape[0]
            if have >= n:
                break
        rec = np.concatenate(chunks)[:n]
        labels, pixels = rec[:, 0].astype(np.int64), rec[:, 1:].reshape(-1, 3, 32, 32)
        if labels.max(initial=0) > 9:
            raise SystemExit("peer_torch_cnn.py: %s: label byte > 9" % folder)
    else:
        raise SystemExit("peer_torch_cnn.py: unknown --data spec '%s'" % spec)
    return (torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))),
            torch.from_numpy(np.asarray(labels, np.int64)))


def pow2_quantize(x, kmin=None, kmax=None):
    """Q(x) = sign(x) * 2^(k + Bernoulli(|x|/2^k - 1)), k = floor(log2|x|) (clipped to
    [kmin, kmax] when given), Q(0) = 0; unbiased inside the range.

    2^k is |x| with its mantissa bits cleared (exact). Bernoulli(p) is u < p, u ~ U[0,1), so
    p <= 0 gives the lower power and p >= 1 the upper one without a separate clip."""
    low = (x.view(torch.int32) & 0x7F800000).view(torch.float32)  # 2^k (0 or subnormal: 0)
    if kmin is not None:
        low.clamp_(2.0 ** kmin, 2.0 ** kmax)
        p = x.abs().div_(low).sub_(1.0)
        up = torch.rand_like(x).lt_(p)
        return up.to(x.dtype).add_(1.0).mul_(low).mul_(x.sign())  # sign(0) = 0: Q(0) = 0
    # unbounded k: x = 0 gives 0/0 = NaN and u < NaN is false, so Q = +-0 * 1
    p = x.abs().div_(low).sub_(1.0)
    up = torch.rand_like(x).lt_(p)
    return up.to(x.dtype).add_(1.0).mul_((x.view(torch.int32) & -8388608).view(torch.float32))


class QBConv(torch.autograd.Function):
    """y = conv2d(x, Wb); backward: dX with Wb (full precision), dWb from Q(x) (clipped k)."""

    @staticmethod
    def forward(ctx, x, wb):
        ctx.save_for_backward(x, wb)
        return F.conv2d(x, wb)

    @staticmethod
    def backward(ctx, dy):
        # Two oneDNN calls: one asking for both gradients from Q(x) (dX does not depend on the
        # input's values) measured 5-20% slower per step here.
        x, wb = ctx.saved_tensors
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = CONV_BWD(dy, x, wb, None, STRIDE, PAD, DIL, False, [0, 0], 1, (True, False, False))[0]
        if ctx.needs_input_grad[1]:
            q = pow2_quantize(x, QB_CONV_KMIN, QB_CONV_KMAX)
            dw = CONV_BWD(dy, q, wb, None, STRIDE, PAD, DIL, False, [0, 0], 1, (False, True, False))[1]
        return dx, dw


class QBLinear(torch.autograd.Function):
    """y = x . Wb; backward: dX = dY . Wb^T (full precision), dWb = Q(x)^T . dY (unbounded k)."""

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


class PaperCNN:
    def __init__(self, mode, qb, seed, layout):
        self.mode, self.qb = mode, qb
        self.fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        g = torch.Generator().manual_seed(seed)
        self.w, self.w0, self.gamma, self.beta, self.pool = [], [], [], [], []
        c = 3
        shapes = []
        for f, k, pooled in CONVS:
            fan_in, fan_out = c * k * k, f * k * k / (4.0 if pooled else 1.0)
            shapes.append(((f, c, k, k), fan_in, fan_out))
            self.pool.append(pooled)
            c = f
        for f in DENSE:
            shapes.append(((c, f), c, f))
            c = f
        for shape, fan_in, fan_out in shapes:
            w0 = math.sqrt(6.0 / (fan_in + fan_out)) / 2.0
            w = (torch.rand(shape, generator=g) * 4.0 - 2.0) * w0  # U(-2W0, 2W0)
            if len(shape) == 4:
                w = w.contiguous(memory_format=self.fmt)
            self.w.append(w)
            self.w0.append(w0)
            self.gamma.append(torch.ones(shape[0] if len(shape) == 4 else shape[1], requires_grad=True))
            self.beta.append(torch.zeros_like(self.gamma[-1], requires_grad=True))

    def sample(self, w, w0):
        """Weights used by this minibatch's forward and backward pass; keeps w's memory format."""
        m = self.mode
        if m == "bc":  # +W0 with p = clip((W/W0+1)/2, 0, 1), else -W0
            p = w.mul(0.5 / w0).add_(0.5)
            return torch.rand_like(w).lt_(p).to(w.dtype).mul_(2.0 * w0).sub_(w0)
        if m == "tc":  # W0*sign(W)*Bernoulli(clip(|W|/W0, 0, 1)); W = 0 gives 0
            return torch.rand_like(w).lt_(w.abs().mul_(1.0 / w0)).to(w.dtype).mul_(w.sign()).mul_(w0)
        raise AssertionError(m)

    def loss(self, x, t, wb):
        nconv = len(CONVS)
        h = x
        for i in range(nconv):
            z = QBConv.apply(h, wb[i]) if self.qb else F.conv2d(h, wb[i])
            if self.pool[i]:
                z = F.max_pool2d(z, 2)
            z = F.batch_norm(z, None, None, self.gamma[i], self.beta[i], training=True, eps=1e-4)
            h = F.relu(z)
        h = h.flatten(1)  # the last map is 1x1
        for i in range(nconv, len(wb)):
            z = QBLinear.apply(h, wb[i]) if self.qb else h.mm(wb[i])
            z = F.batch_norm(z, None, None, self.gamma[i], self.beta[i], training=True, eps=1e-4)
            h = F.relu(z) if i + 1 < len(wb) else z
        return F.relu(1.0 - t * h).square().sum(dim=1).mean()

    def step(self, x, t, lr):
        """One SGD step on minibatch x (B x 3 x 32 x 32) with +-1 targets t (B x 10); returns the
        loss before the update."""
        if self.mode == "fp32":
            wb = [w.requires_grad_(True) for w in self.w]
        else:
            with torch.no_grad():
                wb = [self.sample(w, w0).requires_grad_(True) for w, w0 in zip(self.w, self.w0)]
        loss = self.loss(x, t, wb)
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


def batch_of(pix, tgt, idx, fmt):
    """Minibatch as float B x 3 x 32 x 32 in memory format fmt (pixels / 255, fewmul's
    --preproc unit), and its +-1 targets."""
    x = pix.index_select(0, idx).permute(0, 3, 1, 2)  # NHWC storage = channels_last view
    x = x.to(torch.float32).div_(255.0).contiguous(memory_format=fmt)
    return x, tgt.index_select(0, idx)


def main(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    pix, labels = load_data(a.data, a.images, a.seed)
    n = pix.shape[0]
    if n < a.batch:
        raise SystemExit("peer_torch_cnn.py: %d images < batch %d" % (n, a.batch))
    tgt = torch.full((n, 10), -1.0)
    tgt[torch.arange(n), labels] = 1.0
    net = PaperCNN(a.mode, a.qb, a.seed, a.layout)
    label = a.mode + ("+qb" if a.qb else "")

    if a.check:
        x, t = batch_of(pix, tgt, torch.arange(a.batch), net.fmt)
        losses = [net.step(x, t, a.lr) for _ in range(a.check_steps)]
        with torch.no_grad():
            wb = net.w if a.mode == "fp32" else [net.sample(w, w0) for w, w0 in zip(net.w, net.w0)]
            after = net.loss(x, t, wb).item()
        for i, v in enumerate(losses):
            print("check %s: step %d loss %.4f" % (label, i + 1, v))
        print("check %s: loss after %d steps %.4f (%s)" % (
            label, a.check_steps, after, "decreased" if after < losses[0] else "did NOT decrease"))
        return

    per_epoch = n // a.batch
    order, pos = None, per_epoch
    loss = float("nan")
    t0 = ru0 = None
    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            t0, ru0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        if pos == per_epoch:  # a fresh shuffle every epoch, the last partial batch dropped
            order, pos = torch.randperm(n), 0
        x, t = batch_of(pix, tgt, order[pos * a.batch:(pos + 1) * a.batch], net.fmt)
        pos += 1
        loss = net.step(x, t, a.lr)
    dt = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
    flt = ru.ru_minflt - ru0.ru_minflt
    print(json.dumps({"peer": "torch", "arch": "paper-cnn", "mode": a.mode, "qb": a.qb,
                      "threads": a.threads, "batch": a.batch, "steps": a.steps, "data": a.data,
                      "layout": a.layout, "images_per_s": round(a.batch * a.steps / dt, 2),
                      "step_seconds": round(dt / a.steps, 4), "final_loss": round(loss, 4),
                      "torch": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available(),
                      "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
                      "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
                      "cpu_s_per_step": round(cpu / a.steps, 4),
                      "minor_faults_per_step": round(flt / a.steps)}))


if __name__ == "__main__":
    main(ARGS)
