#!/usr/bin/env python3
# random_cifar.py: writes a CIFAR-10 binary folder of random pixels for the benchmarks (speed does
# not depend on the values): each record is a label byte 0..9, then 1024 red, 1024 green and 1024
# blue bytes. data_batch_1.bin holds the N training images; data_batch_2..5 and test_batch.bin
# hold 100 records each (fewmul's --train-limit keeps the first N).
# Usage: random_cifar.py FOLDER N SEED
import os
import random
import sys

folder, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)


def write(name, count):
    with open(os.path.join(folder, name), "wb") as f:
        for _ in range(count):
            f.write(bytes([rng.randrange(10)]) + rng.randbytes(3072))


write("data_batch_1.bin", n)
for i in range(2, 6):
    write("data_batch_%d.bin" % i, 100)
write("test_batch.bin", 100)
