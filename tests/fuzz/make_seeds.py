#!/usr/bin/env python3
"""make_seeds.py — writes the seed corpora of fewmul's fuzz targets
(tests/fuzz/corpus/NAME/, NAME = idx, cifar10, svhn, energy_table, model,
checkpoint):
small valid files of each format and a few near-valid ones (one field wrong,
cut short), a few KB each. The corpora are committed; rerun this to
regenerate them after a format changes:

    tests/fuzz/make_seeds.py [--fewmul build/fewmul] [NAME...]

The model seeds are training-state files written by `fewmul train --state`,
the checkpoint seeds files of `fewmul train --checkpoint` (finished runs, and
runs stopped mid-epoch by a log that cannot be written), both on a tiny
synthetic IDX data set (6x6 images), so they need a built fewmul
(--fewmul, default build/fewmul or build-b/fewmul); without one they are
skipped, saying so. Everything else is built byte by byte here, from the
formats in docs/data.md, docs/energy-tables.md and docs/model-format.md.
Output is deterministic: the same script writes the same files (the model
seeds too, for a given fewmul: training is seeded and single-threaded), but
for the timings a checkpoint records (seconds of training so far).
The deploy corpus (packed model files) is not written here."""

import argparse
import gzip
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def reset(name):
    d = os.path.join(CORPUS, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


def write(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gz(data):
    # mtime 0 keeps the bytes the same from run to run
    return gzip.compress(data, compresslevel=6, mtime=0)


# ---- IDX (fuzz_idx: 4-byte header, image part, label part) -----------------

def idx_images(n, rows, cols, count=None, magic=0x803, extra=b"", cut=0):
    pix = bytes((i * 31 + 7) & 0xFF for i in range(n * rows * cols))
    data = struct.pack(">IIII", magic, n if count is None else count, rows, cols) + pix + extra
    return data[: len(data) - cut] if cut else data


def idx_labels(labels, count=None, magic=0x801):
    return struct.pack(">II", magic, len(labels) if count is None else count) + bytes(labels)


def idx_input(images, labels, flags=0, level=6):
    return struct.pack("<BBH", flags, level, len(images)) + images + labels


def make_idx():
    d = reset("idx")
    im, lb = idx_images(3, 2, 3), idx_labels([0, 9, 5])
    write(d, "raw", idx_input(im, lb))
    write(d, "raw-28x28", idx_input(idx_images(1, 28, 28), idx_labels([7])))
    write(d, "harness-gzip-both", idx_input(im, lb, flags=3))
    write(d, "harness-gzip-stored", idx_input(im, lb, flags=1, level=0))
    write(d, "harness-gzip-two-members", idx_input(im, lb, flags=7, level=9))
    # through pipes: the reader learns the size only from the data
    write(d, "pipe-raw", idx_input(im, lb, flags=0x18))
    write(d, "pipe-harness-gzip", idx_input(im, lb, flags=0x1b))
    write(d, "pipe-extra-byte", idx_input(idx_images(3, 2, 3, extra=b"\0"), lb, flags=0x08))
    # gzip streams as the file holds them, so mutations corrupt the stream itself
    write(d, "file-gzip", idx_input(gz(im), gz(lb)))
    write(d, "file-gzip-two-members", idx_input(gz(im[:9]) + gz(im[9:]), lb))
    # near-valid
    write(d, "bad-label", idx_input(im, idx_labels([0, 10, 5])))
    write(d, "count-mismatch", idx_input(im, idx_labels([0, 9])))
    write(d, "truncated-pixels", idx_input(idx_images(3, 2, 3, cut=1), lb))
    write(d, "extra-byte", idx_input(idx_images(3, 2, 3, extra=b"\0"), lb))
    write(d, "zero-rows", idx_input(idx_images(0, 0, 3, count=3), lb))
    write(d, "huge-count-gzip", idx_input(gz(idx_images(1, 2, 3, count=100000000)),
                                          idx_labels([1], count=100000000)))
    write(d, "truncated-gzip", idx_input(gz(im)[:-5], lb))
    write(d, "labels-as-images", idx_input(lb, lb))


# ---- CIFAR-10 binary version ----------------------------------------------

def cifar_record(label, seed):
    return bytes([label]) + bytes((i * seed + (i >> 5) * 3) & 0xFF for i in range(3072))


def make_cifar10():
    d = reset("cifar10")
    write(d, "one-record", cifar_record(3, 7))
    write(d, "two-records", cifar_record(0, 1) + cifar_record(9, 13))
    write(d, "bad-label", cifar_record(10, 5))
    write(d, "short-record", cifar_record(1, 3)[:-1])
    write(d, "record-and-a-byte", cifar_record(2, 11) + b"\x04")


# ---- SVHN: MAT level-5 files ----------------------------------------------

miINT8, miUINT8, miINT16, miUINT16, miINT32, miUINT32, miSINGLE = 1, 2, 3, 4, 5, 6, 7
miDOUBLE, miINT64, miUINT64, miMATRIX, miCOMPRESSED, miUTF8 = 9, 12, 13, 14, 15, 16
mxCELL, mxCHAR, mxDOUBLE, mxSINGLE, mxUINT8, mxINT16, mxFUNCTION = 1, 4, 6, 7, 9, 10, 16
PACK = {miINT8: "b", miUINT8: "B", miINT16: "h", miUINT16: "H", miINT32: "i", miUINT32: "I",
        miSINGLE: "f", miDOUBLE: "d", miINT64: "q", miUINT64: "Q"}


class Mat:
    def __init__(self, big=False, version=0x0100, endian=None):
        self.big = big
        self.e = ">" if big else "<"
        text = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by fewmul's make_seeds.py"
        self.b = bytearray(text.ljust(116, b" ") + b" " * 8)
        self.b += struct.pack(self.e + "H", version)
        self.b += endian if endian else (b"MI" if big else b"IM")

    def u32(self, *v):
        return struct.pack(self.e + "I" * len(v), *v)

    def tag(self, t, n):
        return self.u32(t, n)

    @staticmethod
    def pad(b):
        return b + b"\0" * (-len(b) % 8)

    def sub(self, t, data, small=False):
        if small and 0 < len(data) <= 4:
            return self.u32(len(data) << 16 | t) + data.ljust(4, b"\0")
        return self.pad(self.tag(t, len(data)) + data)

    def matrix(self, name, klass, dims, dtype, values, flags=0, name_small=False,
               data_small=False):
        body = self.sub(miUINT32, self.u32(klass | flags, 0))
        body += self.sub(miINT32, struct.pack(self.e + "i" * len(dims), *dims))
        body += self.sub(miINT8, name.encode(), small=name_small)
        if isinstance(values, (bytes, bytearray)):
            data = bytes(values)
        else:
            data = struct.pack(self.e + PACK[dtype] * len(values), *values)
        body += self.sub(dtype, data, small=data_small)
        return self.tag(miMATRIX, len(body)) + body

    def add(self, element, compressed=False, level=6, cut=0):
        if compressed:
            z = zlib.compress(element, level)
            z = z[: len(z) - cut]
            self.b += self.tag(miCOMPRESSED, len(z)) + z
        else:
            self.b += self.pad(element)
        return self

    def bytes(self):
        return bytes(self.b)


def svhn_pixels(n, seed):
    # smooth, so that zlib shrinks it, but not constant
    return bytes(((i % 32) * seed + (i // 1024) * 40 + (i // 3072) * 17) & 0xFF
                 for i in range(n * 3072))


def make_svhn():
    d = reset("svhn")
    m = Mat()
    write(d, "plain-le", m.add(m.matrix("X", mxUINT8, [32, 32, 3], miUINT8, svhn_pixels(1, 5)))
          .add(m.matrix("y", mxDOUBLE, [1, 1], miDOUBLE, [10.0])).bytes())
    m = Mat()
    write(d, "compressed-le", m.add(m.matrix("y", mxDOUBLE, [2, 1], miUINT8, b"\x01\x0a",
                                             name_small=True, data_small=True), True)
          .add(m.matrix("X", mxUINT8, [32, 32, 3, 2], miUINT8, svhn_pixels(2, 3)), True).bytes())
    m = Mat(big=True)
    write(d, "compressed-be", m.add(m.matrix("X", mxUINT8, [32, 32, 3, 2], miUINT8,
                                             svhn_pixels(2, 7)), True, level=1)
          .add(m.matrix("y", mxINT16, [2, 1], miINT16, [3, 4])).bytes())
    m = Mat()
    write(d, "other-variables", m
          .add(m.matrix("__header__", mxCHAR, [1, 4], miUTF8, b"fewm"))
          .add(m.matrix("names", mxCELL, [0, 0], miUINT8, b""), True)
          .add(m.tag(miMATRIX, 16) + m.sub(miUINT32, m.u32(mxFUNCTION, 0)))
          .add(m.matrix("y", mxSINGLE, [1, 1], miSINGLE, [2.0]), True)
          .add(m.matrix("X", mxUINT8, [32, 32, 3, 1], miUINT8, svhn_pixels(1, 9)), True)
          .add(m.tag(miMATRIX, 0)).bytes())
    m = Mat()
    write(d, "stored-blocks", m.add(m.matrix("X", mxUINT8, [32, 32, 3], miUINT8,
                                             svhn_pixels(1, 11)), True, level=0)
          .add(m.matrix("y", mxDOUBLE, [1, 1], miINT8, [1]), True).bytes())
    # near-valid
    m = Mat()
    write(d, "label-zero", m.add(m.matrix("X", mxUINT8, [32, 32, 3], miUINT8, svhn_pixels(1, 1)), True)
          .add(m.matrix("y", mxDOUBLE, [1, 1], miDOUBLE, [0.0]), True).bytes())
    m = Mat()
    write(d, "wrong-dims", m.add(m.matrix("X", mxUINT8, [32, 16, 3], miUINT8, svhn_pixels(1, 1)[:1536]), True)
          .add(m.matrix("y", mxDOUBLE, [1, 1], miDOUBLE, [1.0]), True).bytes())
    m = Mat()
    write(d, "truncated-stream", m.add(m.matrix("X", mxUINT8, [32, 32, 3, 2], miUINT8,
                                                svhn_pixels(2, 2)), True, cut=40).bytes())
    m = Mat()
    write(d, "count-mismatch", m.add(m.matrix("X", mxUINT8, [32, 32, 3, 2], miUINT8, svhn_pixels(2, 4)), True)
          .add(m.matrix("y", mxDOUBLE, [3, 1], miDOUBLE, [1.0, 2.0, 3.0]), True).bytes())
    m = Mat(version=0x0200)
    write(d, "hdf5-version", m.bytes() + b"\0" * 64)


# ---- energy tables ---------------------------------------------------------

def builtin_tables():
    """The built-in tables' texts, from the C string literals of
    src/ledger/builtin_tables.c."""
    src = open(os.path.join(ROOT, "src", "ledger", "builtin_tables.c"), encoding="utf-8").read()
    out = {}
    for m in re.finditer(r'static const char (\w+)\[\] =((?:\s*"(?:[^"\\]|\\.)*")+)\s*;', src):
        lits = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2))
        text = "".join(lits)
        text = re.sub(r'\\(.)', lambda e: {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}[e.group(1)], text)
        out[m.group(1)] = text.encode()
    return out


EXAMPLE = b"""fewmul-energy-table 1
# My 28 nm numbers (made up for this example).
name my28
source lab measurements, 2024   # comments may follow any line
unit pJ 1e-12
op fmul 1.2
op fadd 0.35
op fma 1.5
op fspecial 5
op iadd 0.04
op shift 0.01
op sign 0.01
op xnor_popcount 0.001
op cmp 0.04
op rand 0.2
level l1   32KiB 6   6   64
level l2   1MiB  30  35  64
level dram inf   640 640 64
"""


def make_energy_table():
    d = reset("energy_table")
    for name, text in builtin_tables().items():
        write(d, name, text)
    write(d, "example", EXAMPLE)
    write(d, "crlf-bom", b"\xef\xbb\xbf" + EXAMPLE.replace(b"\n", b"\r\n"))
    write(d, "numbers", EXAMPLE.replace(b"1.2", b"+.5E+1").replace(b"0.35", b"2.")
          .replace(b"32KiB", b"512B").replace(b"1MiB", b"4G").replace(b"1e-12", b"0"))
    write(d, "eight-levels", EXAMPLE.replace(
        b"level l1   32KiB 6   6   64\nlevel l2   1MiB  30  35  64\n",
        b"".join(b"level s%d %dK 1 1 %d\n" % (i, 1 << i, 8 << i) for i in range(7))))
    # near-valid
    write(d, "negative", EXAMPLE.replace(b"op cmp 0.04", b"op cmp -0.04"))
    write(d, "missing-ops", b"\n".join(l for l in EXAMPLE.split(b"\n") if not l.startswith(b"op r")))
    write(d, "not-inf-last", EXAMPLE.replace(b"dram inf", b"dram 2G"))
    write(d, "version-2", EXAMPLE.replace(b"table 1", b"table 2"))
    write(d, "levels-out-of-order", EXAMPLE.replace(b"1MiB", b"16K"))


# ---- training-state model files -------------------------------------------

def synthetic_idx(d, prefix, n, seed):
    """n 6x6 images of ten classes, a bright band whose place is the class."""
    pix = bytearray()
    labels = bytearray()
    x = seed
    for i in range(n):
        c = i % 10
        labels.append(c)
        for r in range(6):
            for col in range(6):
                x = (x * 1103515245 + 12345) & 0x7FFFFFFF
                on = (r * 6 + col) % 10 == c
                pix.append((200 if on else 20) + (x >> 16) % 40)
    with open(os.path.join(d, prefix + "-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 6, 6) + bytes(pix))
    with open(os.path.join(d, prefix + "-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(labels))


MODELS = [
    ("mlp8-fp32", ["--arch", "mlp:8"]),
    ("mlp4x4-bc-qb-adam-xent", ["--arch", "mlp:4,4", "--weights", "bc", "--qb", "--opt", "adam",
                                "--loss", "xent"]),
    ("mlp6-tc-binary-unit", ["--arch", "mlp:6", "--weights", "tc", "--acts", "binary",
                             "--preproc", "unit", "--bn-stats", "running"]),
    ("mlp4-synapse8-qbrange-dropout", ["--arch", "mlp:4", "--weights", "synapse:8",
                                       "--qb=-8:2", "--dropout", "0.2", "--qb-bn-jacobian"]),
    ("conv-bcdet-pool", ["--arch", "conv:2k3,pool2,fc4", "--weights", "bc-det", "--qb",
                         "--qb-conv", "none", "--scale", "one", "--test-weights", "quantized"]),
    ("conv-same-stride-lcn", ["--arch", "conv:2k3same,2k2s2,fc4", "--weights", "tc-det",
                              "--preproc", "gcn-lcn"]),
    ("conv-gcn-zca", ["--arch", "conv:2k3,fc4", "--preproc", "gcn-zca"]),
]


def crc_fixed(body):
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def tiny_runs(fewmul, runs, epochs):
    """Runs `fewmul train` on the synthetic 6x6 set once per (name, options,
    output file name, expected exit status), the option OUT standing for the
    output file, and returns each output file's bytes by name."""
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        synthetic_idx(data, "train", 120, 1)
        synthetic_idx(data, "t10k", 20, 2)
        env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
        for name, args, out_name, status in runs:
            cmd = [fewmul, "train", "--data", "idx:" + data, "--valid", "20", "--epochs",
                   str(epochs), "--batch", "20", "--threads", "1", "--seed", "7", "--quiet"]
            out = os.path.join(tmp, out_name)
            done = subprocess.run([out if a == "OUT" else a for a in cmd + args], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if done.returncode != status:
                sys.exit("make_seeds.py: %s exited %d, not %d" % (" ".join(cmd + args),
                                                                 done.returncode, status))
            files[name] = open(out, "rb").read()
    return files


def make_model(fewmul):
    if not fewmul:
        print("make_seeds.py: no fewmul binary (--fewmul): model seeds skipped", file=sys.stderr)
        return
    d = reset("model")
    files = tiny_runs(fewmul, [(name, args + ["--state", "OUT"], name + ".fm", 0)
                               for name, args in MODELS], 1)
    for name in files:
        write(d, name, files[name])
    # older versions of a flat-input file: version 2 lacks the input shape and
    # the conv exponent range (bytes 104..123), version 1 also the activations
    v3 = files["mlp8-fp32"]
    body = v3[:-4]
    v2 = body[:8] + struct.pack("<I", 2) + body[12:104] + body[124:]
    write(d, "mlp8-fp32-version2", crc_fixed(v2))
    v1 = body[:8] + struct.pack("<I", 1) + body[12:100] + body[124:]
    write(d, "mlp8-fp32-version1", crc_fixed(v1))
    # near-valid
    write(d, "truncated", files["mlp4x4-bc-qb-adam-xent"][:300])
    bad = bytearray(files["conv-bcdet-pool"])
    bad[-5] ^= 0x40
    write(d, "bad-crc", bytes(bad))
    m = files["mlp8-fp32"][:-4]
    arch_len = struct.unpack_from("<I", m, 124)[0]
    wide = m[:124] + struct.pack("<I", 7) + b"mlp:800" + m[128 + arch_len:]
    write(d, "arch-state-mismatch", crc_fixed(wide))


# ---- checkpoints ------------------------------------------------------------

# (name, options, stopped): a stopped run writes its log to /dev/full, so it
# stops after the first minibatch of epoch 2 and checkpoints there.
CHECKPOINTS = [
    ("mlp8-fp32-finished", ["--arch", "mlp:8"], False),
    ("mlp4x4-bc-qb-momentum-stopped", ["--arch", "mlp:4,4", "--weights", "bc", "--qb",
                                       "--momentum", "0.9"], True),
    ("mlp4-tc-adam-ledger-stopped", ["--arch", "mlp:4", "--weights", "tc", "--opt", "adam",
                                     "--ledger"], True),
    ("conv-bcdet-qb-finished", ["--arch", "conv:2k3,pool2,fc4", "--weights", "bc-det", "--qb"],
     False),
    ("mlp4-synapse-mulfree-no-valid-stopped", ["--arch", "mlp:4", "--weights", "synapse:8", "--qb",
                                               "--exec", "mulfree", "--valid", "0",
                                               "--train-limit", "60"], True),
]


def make_checkpoint(fewmul):
    if not fewmul:
        print("make_seeds.py: no fewmul binary (--fewmul): checkpoint seeds skipped",
              file=sys.stderr)
        return
    d = reset("checkpoint")
    files = tiny_runs(fewmul, [(name, args + ["--checkpoint", "OUT"] +
                                (["--log", "/dev/full"] if stopped else []),
                                name + ".fmc", 5 if stopped else 0)
                               for name, args, stopped in CHECKPOINTS], 2)
    for name in files:
        write(d, name, files[name])
    # near-valid: cut short, and the data order damaged with the CRC right again
    write(d, "truncated", files["mlp8-fp32-finished"][:1000])
    bad = bytearray(files["mlp4x4-bc-qb-momentum-stopped"])
    bad[-9] ^= 0x01  # the last order index
    write(d, "order-not-a-permutation", crc_fixed(bytes(bad[:-4])))


def find_fewmul(given):
    if given:
        return given
    for p in ("build/fewmul", "build-b/fewmul"):
        p = os.path.join(ROOT, p)
        if os.access(p, os.X_OK):
            return p
    return None


def main():
    makers = {"idx": make_idx, "cifar10": make_cifar10, "svhn": make_svhn,
              "energy_table": make_energy_table, "model": None, "checkpoint": None}
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fewmul", help="a built fewmul binary (for the model seeds)")
    ap.add_argument("names", nargs="*", choices=[[]] + list(makers), metavar="NAME",
                    help="corpora to write: " + ", ".join(makers) + " (default: all)")
    args = ap.parse_args()
    for name in args.names or list(makers):
        if name == "model":
            make_model(find_fewmul(args.fewmul))
        elif name == "checkpoint":
            make_checkpoint(find_fewmul(args.fewmul))
        else:
            makers[name]()
    total = 0
    for name in args.names or list(makers):
        d = os.path.join(CORPUS, name)
        if os.path.isdir(d):
            files = os.listdir(d)
            size = sum(os.path.getsize(os.path.join(d, f)) for f in files)
            total += size
            print("corpus/%s: %d files, %d bytes" % (name, len(files), size))
    print("total: %d bytes" % total)


if __name__ == "__main__":
    main()
