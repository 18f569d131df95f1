#!/usr/bin/env python3
"""normalize.py — makes a run's outputs comparable across runs: the wall-clock
fields of a --json result, a --log line and a checkpoint are zeroed (and the
checkpoint's trailing CRC recomputed), everything else is kept byte for byte.
Usage: normalize.py json|jsonl|checkpoint IN OUT"""
import json
import struct
import sys
import zlib

# Fields that measure time or speed; every other field must not change.
TIMED = {"train_seconds", "total_seconds", "train_images_per_s", "epoch_seconds",
         "images_per_s", "seconds", "elapsed_seconds", "time"}


def scrub(value):
    if isinstance(value, dict):
        return {k: (0 if k in TIMED else scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def checkpoint(data):
    """Zeroes the three f64 clocks of a checkpoint (docs/checkpoint-format.md)."""
    b = bytearray(data)
    assert b[:8] == b"FMULCKPT", "not a checkpoint"
    (version,) = struct.unpack_from("<I", b, 8)
    at = 12
    (model_len,) = struct.unpack_from("<Q", b, at)
    at += 8 + model_len
    at += 4 + 4 + 8 + 8 + 8 + 4 + 4 + 8 + 4 + 4 + 4 + 4  # configuration
    if version >= 2:  # the latent precision (the golden runs have no bop fields)
        at += 4
    (spec_len,) = struct.unpack_from("<I", b, at)
    at += 4 + spec_len + 4 + 4 + 12 + 4 + 4  # data
    at += 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8  # position, up to the epoch's seconds
    b[at:at + 8] = bytes(8)
    at += 8 + 8 + 8 + 4 + 4 + 4  # the best epoch
    b[at:at + 16] = bytes(16)  # training seconds, seconds since the start
    struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])) & 0xFFFFFFFF)
    return bytes(b)


def main():
    kind, src, dst = sys.argv[1:4]
    if kind == "checkpoint":
        with open(src, "rb") as f:
            out = checkpoint(f.read())
        with open(dst, "wb") as f:
            f.write(out)
        return
    with open(src) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    if kind == "json":  # the last line of stdout is the result
        lines = lines[-1:]
    with open(dst, "w") as f:
        for line in lines:
            f.write(json.dumps(scrub(json.loads(line)), sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
