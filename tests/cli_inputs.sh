#!/usr/bin/env bash
# cli_inputs.sh — the command reading what a hostile folder can hold: a FIFO
# without a writer given as every kind of input (model, packed model,
# checkpoint, IDX, CIFAR-10 and SVHN data, energy table, report log, the log
# a resumed run keeps) ends at once instead of blocking in open(); a sparse
# file with a good header and gigabytes of hole is refused under a small
# address-space limit as bad input, not out of memory; /dev/zero and an
# endless line as a report log; a checkpoint with an impossible field behind
# a valid CRC; a dense training state on images of another shape; a loop of
# symbolic links and an unsearchable folder in a data path (I/O errors, not
# missing files). Every case must end within 10 seconds.
# Usage: cli_inputs.sh PATH_TO_fewmul [SHARED_DATA_DIR]   (prints TAP-like lines)
set -u

NAME=cli_inputs.sh
source "$(dirname "$0")/cli_common.sh"

# quick NAME CODE PATTERN ARGS...: fewmul ARGS (started through `wrap`, when
# set) ends within 10 seconds with status CODE and one line "fewmul: error:
# ..." matching PATTERN (extended regexp); recorded for docs/errors.md.
wrap=()
quick() {
    local name=$1 code=$2 pattern=$3
    shift 3
    last_args=("$@")
    timeout 10 "${wrap[@]}" "$FEWMUL" "$@" >"$tmp/out" 2>"$tmp/out.err" </dev/null
    rc=$?
    record_case "$name" "$tmp/out.err"
    if [ "$rc" -eq 124 ]; then
        not_ok "$name" "still running after 10 s"
    elif [ "$rc" -ne "$code" ]; then
        not_ok "$name" "exit $rc, expected $code: $(first_err_line out)"
    elif [ "$(awk 'END { print NR }' "$tmp/out.err")" -ne 1 ] ||
        ! grep -Eq "^fewmul: error: .*($pattern)" "$tmp/out.err"; then
        not_ok "$name" "stderr is not one error line matching /$pattern/: $(first_err_line out)"
    else
        ok "$name"
    fi
}

good=$tmp/good
make_idx "$good" 120 30 8
small=(--arch mlp:8 --epochs 1 --batch 10 --valid 20 --threads 1 --quiet)
"$FEWMUL" train --data "idx:$good" "${small[@]}" --state "$tmp/model.fm" --out "$tmp/model.fmp" \
    --checkpoint "$tmp/run.fmc" --log "$tmp/run.jsonl" >/dev/null 2>&1 ||
    { not_ok "a small run to read back" "exit $?"; finish; exit 1; }

# ---- FIFOs without a writer -------------------------------------------------------

mkfifo "$tmp/fifo"
quick "a FIFO as eval --model" 5 'fifo: not a regular file \(a FIFO\)' \
    eval --model "$tmp/fifo" --data "idx:$good"
quick "a FIFO as infer --model" 5 'fifo: not a regular file \(a FIFO\)' \
    infer --model "$tmp/fifo" --data "idx:$good"
quick "a FIFO given to info" 5 'fifo: not a regular file \(a FIFO\)' info "$tmp/fifo"
quick "a FIFO as --resume" 5 'fifo: not a regular file \(a FIFO\)' train --resume "$tmp/fifo"
quick "a FIFO as --table (read as a pipe: empty)" 4 'fifo: empty' energy --table "$tmp/fifo"
quick "a FIFO as a report log (read as a pipe: empty)" 4 'fifo: empty log' \
    report "$tmp/fifo" -o "$tmp/r.html"

fifo_idx=$tmp/fifo_idx
make_idx "$fifo_idx" 120 30 8
rm "$fifo_idx/train-images-idx3-ubyte" && mkfifo "$fifo_idx/train-images-idx3-ubyte"
quick "a FIFO as an IDX file (read as a pipe: no data)" 4 'train-images-idx3-ubyte: a pipe or FIFO that gave no data' \
    train --data "idx:$fifo_idx" "${small[@]}"

mkdir "$tmp/fifo_cifar"
for b in data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do : >"$tmp/fifo_cifar/$b.bin"; done
mkfifo "$tmp/fifo_cifar/data_batch_1.bin"
quick "a FIFO as a CIFAR-10 batch" 5 'data_batch_1\.bin: not a regular file \(a FIFO\)' \
    train --data "cifar10:$tmp/fifo_cifar" --arch conv:4k5,pool4 --epochs 1 --quiet

mkdir "$tmp/fifo_svhn"
: >"$tmp/fifo_svhn/test_32x32.mat"
mkfifo "$tmp/fifo_svhn/train_32x32.mat"
quick "a FIFO as an SVHN .mat file" 5 'train_32x32\.mat: not a regular file \(a FIFO\)' \
    train --data "svhn:$tmp/fifo_svhn" --arch conv:4k5,pool4 --epochs 1 --quiet

mkfifo "$tmp/fifo.jsonl"
# refused as an output before it is read (cli_files.sh); the reader's own
# refusal (fm_open_input) covers a FIFO put there after that check
quick "a FIFO as the --log a resumed run keeps" 5 "fifo\\.jsonl' is a FIFO, not a regular file" \
    train --resume "$tmp/run.fmc" --log "$tmp/fifo.jsonl" --quiet

# ---- report logs that are no logs ----------------------------------------------------

quick "/dev/zero as a report log" 5 "log file '/dev/zero': not a regular file \(a character device\)" \
    report /dev/zero -o "$tmp/r.html"
head -c 3000000 /dev/zero | tr '\0' 'x' >"$tmp/long.jsonl"
quick "a report log of one 3 MB line" 4 'long\.jsonl:1: a line longer than 1048576 bytes' \
    report "$tmp/long.jsonl" -o "$tmp/r.html"
{ head -n 1 "$tmp/run.jsonl"; head -c 2000000 /dev/zero; } >"$tmp/nul.jsonl"
quick "a report log whose line 2 is 2 MB of NUL bytes" 4 'nul\.jsonl:2: a line longer than' \
    report "$tmp/nul.jsonl" -o "$tmp/r.html"

# ---- sparse files: a header, then gigabytes of hole --------------------------------------

# Under a 200 MB address space the file cannot be read whole: it must be
# refused from its head. (AddressSanitizer reserves terabytes at start, so
# its build runs without the limit; the C tests check the largest
# allocation there.)
if command -v prlimit >/dev/null && ! ldd "$FEWMUL" 2>/dev/null | grep -q libasan; then
    wrap=(prlimit --as=200000000)
fi
sparse() { # sparse OUT FROM [BYTES]: FROM's first BYTES (all) bytes, then a hole to 3 GiB more
    if [ -n "${3:-}" ]; then head -c "$3" "$2" >"$1"; else cp "$2" "$1"; fi
    truncate -s "+${SPARSE:-3G}" "$1"
}
sparse "$tmp/magic.fm" "$tmp/model.fm" 8
quick "a model file of its magic and a 3 GiB hole" 4 'magic\.fm: model file version 0' \
    eval --model "$tmp/magic.fm" --data "idx:$good"
sparse "$tmp/hole.fm" "$tmp/model.fm"
quick "a good model file and a 3 GiB hole" 4 'hole\.fm: 3221225472 unexpected bytes after the parameters' \
    eval --model "$tmp/hole.fm" --data "idx:$good"
SPARSE=900M sparse "$tmp/hole.fmp" "$tmp/model.fmp"
quick "a good packed model and a 900 MiB hole" 4 'hole\.fmp: 943718400 unexpected bytes after the end' \
    eval --model "$tmp/hole.fmp" --data "idx:$good"
sparse "$tmp/hole.fmc" "$tmp/run.fmc"
quick "a good checkpoint and a 3 GiB hole" 4 'hole\.fmc: 3221225472 unexpected bytes at the end of the checkpoint' \
    train --resume "$tmp/hole.fmc"
sparse "$tmp/magic.fmc" "$tmp/run.fmc" 8
quick "a checkpoint of its magic and a 3 GiB hole" 4 'magic\.fmc: checkpoint version 0' \
    train --resume "$tmp/magic.fmc"
rm -f "$tmp"/magic.fm "$tmp"/hole.fm "$tmp"/hole.fmp "$tmp"/hole.fmc "$tmp"/magic.fmc
wrap=()

# ---- fields out of range behind a valid CRC ----------------------------------------------

# patch_run IN OUT OFFSET FORMAT VALUE: the checkpoint with one field of its run
# (offset from the run's start, struct format) rewritten and its CRC recomputed.
patch_run() {
    python3 - "$@" <<'EOF'
import struct, sys, zlib
src, dst, at, fmt, value = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
d = bytearray(open(src, "rb").read()[:-4])
model = struct.unpack_from("<Q", d, 12)[0]
config = 20 + model
fields = 64 + (4 if struct.unpack_from("<I", d, 8)[0] >= 2 else 0)  # version 2: the latent precision
run = config + fields + 4 + struct.unpack_from("<I", d, config + fields)[0] + 28
struct.pack_into(fmt, d, run + at, value if fmt.endswith("d") else int(value))
open(dst, "wb").write(bytes(d) + struct.pack("<I", zlib.crc32(bytes(d))))
EOF
}
patch_run "$tmp/run.fmc" "$tmp/best.fmc" 72 "<d" 500
quick "a checkpoint's best test error of 500%" 4 'best\.fmc: checkpoint best test error 500%' \
    train --resume "$tmp/best.fmc"
patch_run "$tmp/run.fmc" "$tmp/step.fmc" 8 "<Q" 1e12
quick "a checkpoint's step beyond its position" 4 'step\.fmc: checkpoint step 1000000000000' \
    train --resume "$tmp/step.fmc"
patch_run "$tmp/run.fmc" "$tmp/time.fmc" 100 "<d" nan
quick "a checkpoint's elapsed time NaN" 4 'time\.fmc: checkpoint elapsed time nan s is not a duration' \
    train --resume "$tmp/time.fmc"

# ---- a dense state on images of another shape -------------------------------------------

wide=$tmp/wide # the same 64 pixels as 4 x 16 images
python3 - "$good" "$wide" <<'EOF'
import os, shutil, struct, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst)
for part in ("train", "t10k"):
    d = open(os.path.join(src, part + "-images-idx3-ubyte"), "rb").read()
    magic, n, _, _ = struct.unpack(">IIII", d[:16])
    open(os.path.join(dst, part + "-images-idx3-ubyte"), "wb").write(struct.pack(">IIII", magic, n, 4, 16) + d[16:])
    shutil.copy(os.path.join(src, part + "-labels-idx1-ubyte"), dst)
EOF
quick "a dense 8x8 state on 4x16 images" 4 'test images are 4x16x1 = 64 values, but model .*model\.fm. expects 8x8x1 = 64 inputs' \
    eval --model "$tmp/model.fm" --data "idx:$wide"

# ---- a data path that cannot be looked at ---------------------------------------------------

looped=$tmp/looped
make_idx "$looped" 120 30 8
rm "$looped/train-images-idx3-ubyte"
ln -s train-images-idx3-ubyte "$looped/train-images-idx3-ubyte"
quick "a loop of symbolic links in a data path" 5 'train-images-idx3-ubyte: Too many levels of symbolic links' \
    train --data "idx:$looped" "${small[@]}"

# As root every folder can be searched: the case runs as nobody, through
# setpriv, in a folder nobody may search.
unprivileged_wrap
if [ "${wrap[0]:-}" != none ]; then
    chmod 755 "$tmp"
    cp -r "$good" "$tmp/locked"
    chmod 644 "$tmp/locked"/* && chmod 644 "$tmp/locked" # readable, not searchable
    quick "a data folder that may not be searched" 5 'train-images-idx3-ubyte: Permission denied' \
        train --data "idx:$tmp/locked" "${small[@]}"
    chmod 755 "$tmp/locked"
else
    skip "a data folder that may not be searched" "running as root without setpriv or a nobody user"
fi
wrap=()

finish
