#!/usr/bin/python3
# peer_torch_cnn_infer.py: the PyTorch peer of a deployed `paper-cnn` (Lin et al. 2016, the
# authors' CIFAR-10/SVHN net) at inference, used by bench/cnn_infer_bench.sh to time the same
# network as `fewmul bench infer` in the same run. See docs/bench.md, "Deployed paper-cnn".
"""PyTorch peer for fewmul's deployed paper-cnn: evaluation latency and throughput.

Network (32x32x3 input, every convolution 'valid', stride 1, no bias), as fewmul deploys it:
  conv 3x3 128 -> BN -> act;  conv 3x3 128 -> maxpool 2x2 -> BN -> act
  conv 2x2 256 -> BN -> act;  conv 2x2 256 -> maxpool 2x2 -> BN -> act
  conv 2x2 512 -> BN -> act;  conv 2x2 512 -> maxpool 2x2 -> BN -> act
  conv 2x2 1024 (map 1x1) -> BN -> act;  dense 1024 (no bias) -> BN -> act;  dense 10 -> BN
act is ReLU (--acts relu) or the sign, +1 where x >= 0 else -1 (--acts binary). BN is in eval
mode (running statistics). The weights are +-1 floats from a fixed seed: PyTorch has no
binary convolution, so the peer runs the same network in float arithmetic, as a PyTorch user
would deploy it; its speed does not depend on the values.

How it is made fast (each option measured on the 2-core AMD EPYC of docs/bench.md):
torch.inference_mode(); the model frozen by TorchScript (torch.jit.trace, torch.jit.freeze and
torch.jit.optimize_for_inference, which folds each batch norm that directly follows a
convolution into it and runs the convolutions in oneDNN's blocked layout) unless --eager
(eager was 1.5-2x slower); --layout nchw (default) or channels_last, which measured the same
or slower with the frozen model; torch.set_num_threads(--threads) and
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS to match; OMP_WAIT_POLICY=PASSIVE unless set; --warmup
untimed calls before the timed ones.

Prints one JSON line: {"peer": "torch", "acts": ..., "batch": B, "threads": T, "runs": R,
"latency_us": median seconds per call x 1e6, "images_per_s": B / median seconds per call, ...}.
"""
import argparse
import json
import os
import sys
import time

CONVS = ((128, 3, False), (128, 3, True), (256, 2, False), (256, 2, True),
         (512, 2, False), (512, 2, True), (1024, 2, False))
DENSE = (1024, 10)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--acts", choices=("relu", "binary"), default="relu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=200, help="timed calls")
    p.add_argument("--warmup", type=int, default=20, help="untimed calls first")
    p.add_argument("--layout", choices=("channels_last", "nchw"), default="nchw",
                   help="memory format of the input and weights (default nchw: with the frozen model's "
                        "oneDNN layouts it was as fast or faster here)")
    p.add_argument("--eager", action="store_true", help="plain eager modules, no TorchScript freezing")
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args(argv)
    if a.batch < 1 or a.threads < 1 or a.runs < 1 or a.warmup < 0:
        p.error("need batch, threads, runs >= 1 and warmup >= 0")
    return a


ARGS = parse_args(sys.argv[1:])
# thread counts must be fixed before torch loads its OpenMP and OpenBLAS pools
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402


class Sign(nn.Module):
    """+1 where x >= 0, else -1 (fewmul's binary activation). Of the exact forms measured, the
    fastest (batch 1, frozen): 3.87 ms against 4.09 ms for torch.where(x >= 0, ones, -ones);
    torch.sign (3.60 ms) gives 0 for 0 and is not the same function."""

    def forward(self, x):
        return (x >= 0).to(x.dtype).mul(2.0).sub(1.0)


def build(acts, seed):
    g = torch.Generator().manual_seed(seed)

    def pm1(*shape):
        return torch.randint(0, 2, shape, generator=g).float() * 2 - 1

    def bn(n, dims):
        b = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(n, eps=1e-4)
        b.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
        b.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        b.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
        b.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
        return b

    act = (lambda: Sign()) if acts == "binary" else (lambda: nn.ReLU())
    layers, c = [], 3
    for f, k, pool in CONVS:
        conv = nn.Conv2d(c, f, k, bias=False)
        conv.weight.data.copy_(pm1(f, c, k, k))
        layers.append(conv)
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers += [bn(f, 2), act()]
        c = f
    layers.append(nn.Flatten())
    for i, n in enumerate(DENSE):
        lin = nn.Linear(c, n, bias=False)
        lin.weight.data.copy_(pm1(n, c))
        layers += [lin, bn(n, 1)]
        if i + 1 < len(DENSE):
            layers.append(act())
        c = n
    return nn.Sequential(*layers).eval()


def main():
    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(ARGS.seed)
    model = build(ARGS.acts, ARGS.seed)
    fmt = torch.channels_last if ARGS.layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randint(0, 256, (ARGS.batch, 3, 32, 32)).float().div(255).contiguous(memory_format=fmt)
    with torch.inference_mode():
        if not ARGS.eager:
            model = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
        for _ in range(ARGS.warmup):
            model(x)
        times = []
        for _ in range(ARGS.runs):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({
        "peer": "torch", "arch": "paper-cnn", "acts": ARGS.acts, "batch": ARGS.batch,
        "threads": ARGS.threads, "runs": ARGS.runs, "warmup": ARGS.warmup, "layout": ARGS.layout,
        "frozen": not ARGS.eager, "latency_us": med * 1e6, "images_per_s": ARGS.batch / med,
        "min_us": times[0] * 1e6, "torch": torch.__version__,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}))


if __name__ == "__main__":
    main()
