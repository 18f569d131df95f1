#!/usr/bin/env bash
# cli_files.sh — the files `fewmul` writes, in a folder an attacker may write
# to too (docs/errors.md, "Files in a shared folder"): a symbolic or hard
# link planted at the old FILE.tmp name or at a --log is never written
# through; an output that is a FIFO, a folder or a link to a device is
# refused (exit 5) and left as it was; one file named twice by different
# spellings (./F, dir/../F, a link to F), outputs against each other and
# against the inputs (--resume, the data files, --table, report's logs), is a
# usage error (exit 2) before anything is written; a run that fails its
# checks leaves the previous --log whole; two runs with one --checkpoint:
# the second is refused at once, naming the first's pid.
# Usage: cli_files.sh PATH_TO_fewmul [SHARED_DATA_DIR]   (prints TAP-like lines)
set -u

NAME=cli_files.sh
source "$(dirname "$0")/cli_common.sh"

# same_text NAME FILE TEXT: FILE still holds TEXT (one line).
same_text() {
    if printf '%s\n' "$3" | cmp -s - "$2"; then
        ok "$1"
    else
        not_ok "$1" "$2 holds '$(head -c 60 "$2" 2>/dev/null | tr -cd '[:print:]')'"
    fi
}

# Runs that should end at once (refused) but would train for long, or block,
# if they were not, are run with run_limit=30 (cli_common.sh).

data=$tmp/data
make_idx "$data" 120 30 8
args=(--data "idx:$data" --arch mlp:8 --epochs 1 --batch 10 --valid 20 --threads 1 --quiet)
victim_text="another user's file, which must not change"

# A checkpoint, a log and a table to name later.
run ck train "${args[@]}" --checkpoint "$tmp/run.fmc" --log "$tmp/run.jsonl"
if [ "$rc" -ne 0 ] || [ ! -s "$tmp/run.fmc" ] || [ ! -s "$tmp/run.jsonl" ]; then
    not_ok "a run with --checkpoint and --log" "exit $rc: $(first_err_line ck)"
    finish
    exit 1
fi
ok "a run with --checkpoint and --log"
"$FEWMUL" energy --print-table horowitz45 >"$tmp/my.table"

# ---- links planted beside an output -------------------------------------------

echo "$victim_text" >"$tmp/victim"
ln -s "$tmp/victim" "$tmp/o.fmp.tmp"
run sym train "${args[@]}" --out "$tmp/o.fmp"
same_text "--out: a symbolic link at FILE.tmp is not followed" "$tmp/victim" "$victim_text"
run info info "$tmp/o.fmp"
if [ "$rc" -eq 0 ] && [ -f "$tmp/o.fmp" ] && [ ! -L "$tmp/o.fmp" ]; then
    ok "... and FILE is the packed model, not the link"
else
    not_ok "... and FILE is the packed model, not the link" "info: exit $rc; $(ls -l "$tmp/o.fmp")"
fi

echo "$victim_text" >"$tmp/other"
ln "$tmp/other" "$tmp/s.fm.tmp"
run hard train "${args[@]}" --state "$tmp/s.fm"
same_text "--state: a hard link at FILE.tmp keeps its other name's content" "$tmp/other" "$victim_text"

echo "$victim_text" >"$tmp/victim2"
ln -s "$tmp/victim2" "$tmp/c2.fmc.tmp"
run symck train "${args[@]}" --checkpoint "$tmp/c2.fmc"
same_text "--checkpoint: a symbolic link at FILE.tmp is not followed" "$tmp/victim2" "$victim_text"

echo "$victim_text" >"$tmp/victim3"
ln -s "$tmp/victim3" "$tmp/page.html.tmp"
run symrep report "$tmp/run.jsonl" -o "$tmp/page.html"
same_text "report -o: a symbolic link at FILE.tmp is not followed" "$tmp/victim3" "$victim_text"

# the log is written as it goes: a link at its own name is replaced, not
# written through
echo "$victim_text" >"$tmp/victim4"
ln -s "$tmp/victim4" "$tmp/l1.jsonl"
run symlog train "${args[@]}" --log "$tmp/l1.jsonl"
same_text "--log: a symbolic link at FILE is replaced, its target untouched" "$tmp/victim4" "$victim_text"
echo "$victim_text" >"$tmp/other2"
ln "$tmp/other2" "$tmp/l2.jsonl"
run hardlog train "${args[@]}" --log "$tmp/l2.jsonl"
same_text "--log: a hard link at FILE keeps its other name's content" "$tmp/other2" "$victim_text"
if [ "$(grep -c '"epoch"' "$tmp/l2.jsonl")" -eq 1 ] && grep -q '"result"' "$tmp/l2.jsonl"; then
    ok "... and FILE is the run's log"
else
    not_ok "... and FILE is the run's log" "$(head -c 80 "$tmp/l2.jsonl")"
fi
# a resumed run rewrites the log: through a temporary file of its own
cp "$tmp/run.fmc" "$tmp/r.fmc"
cp "$tmp/run.jsonl" "$tmp/r.jsonl"
echo "$victim_text" >"$tmp/victim5"
ln -s "$tmp/victim5" "$tmp/r.jsonl.tmp"
run symres train --resume "$tmp/r.fmc" --log "$tmp/r.jsonl" --quiet
same_text "--resume --log: a symbolic link at FILE.tmp is not followed" "$tmp/victim5" "$victim_text"
rm -f "$tmp"/*.tmp
check "no temporary file left by the runs" '
import os, sys
left = [n for n in os.listdir(sys.argv[1]) if ".tmp" in n]
if left:
    sys.exit("left: %s" % left)' "$tmp"

# ---- what is not a regular file ---------------------------------------------------

mkfifo "$tmp/fifo"
ln -s /dev/null "$tmp/devnull"
mkdir "$tmp/folder"
run ofifo train "${args[@]}" --out "$tmp/fifo"
expect_run_error "--out naming a FIFO" 5 "--out: '.*fifo' is a FIFO, not a regular file; fewmul replaces only regular files" ofifo
run sdev train "${args[@]}" --state "$tmp/devnull"
expect_run_error "--state naming a link to /dev/null" 5 "--state: '.*devnull' is a symbolic link to a character device, not to a regular file" sdev
run cfifo train "${args[@]}" --checkpoint "$tmp/fifo"
expect_run_error "--checkpoint naming a FIFO" 5 "--checkpoint: '.*fifo' is a FIFO" cfifo
run odir train "${args[@]}" --out "$tmp/folder"
expect_run_error "--out naming a folder" 5 "--out: '.*folder' is a directory, not a regular file" odir
# a FIFO opened for writing with no reader blocks: a short limit tells a hang
run_limit=30 run lfifo train "${args[@]}" --log "$tmp/fifo"
expect_run_error "--log naming a FIFO" 5 "--log: '.*fifo' is a FIFO" lfifo
run rfifo report "$tmp/run.jsonl" -o "$tmp/fifo"
expect_run_error "report -o naming a FIFO" 5 "-o: '.*fifo' is a FIFO" rfifo
run rdev report "$tmp/run.jsonl" -o "$tmp/devnull"
expect_run_error "report -o naming a link to /dev/null" 5 "-o: '.*devnull' is a symbolic link to a character device" rdev
if [ -p "$tmp/fifo" ] && [ -L "$tmp/devnull" ] && [ "$(readlink "$tmp/devnull")" = /dev/null ] &&
    [ -d "$tmp/folder" ] && [ -c /dev/null ]; then
    ok "... and the FIFO, the link and the folder are left as they were"
else
    not_ok "... and the FIFO, the link and the folder are left as they were" "$(ls -l "$tmp/fifo" "$tmp/devnull")"
fi

# ---- one file by two names ---------------------------------------------------------

echo "$victim_text" >"$tmp/F"
ln -s "$tmp/F" "$tmp/linkF"
mkdir -p "$tmp/sub"
run s1 train "${args[@]}" --out "$tmp/F" --state "$tmp/./F"
expect_run_error "--out F --state ./F" 2 "--out '.*F' and --state '.*/\./F' name the same file" s1
run s2 train "${args[@]}" --out "$tmp/sub/../new.fmp" --state "$tmp/new.fmp"
expect_run_error "--out dir/../F --state F, F not there yet" 2 "--out '.*sub/\.\./new\.fmp' and --state '.*new\.fmp' name the same file" s2
run s3 train "${args[@]}" --out "$tmp/F" --state "$tmp/linkF"
expect_run_error "--out F --state a link to F" 2 "--out '.*F' and --state '.*linkF' name the same file" s3
run s4 train "${args[@]}" --log "$tmp/F" --out "$tmp/./F"
expect_run_error "--out naming the --log file" 2 "--out '.*F' and --log '.*F' name the same file" s4
run s5 train "${args[@]}" --log "$tmp/F" --state "$tmp/sub/../F"
expect_run_error "--state naming the --log file" 2 "--state '.*F' and --log '.*F' name the same file" s5
run s6 train "${args[@]}" --log "$tmp/F" --checkpoint "$tmp/linkF"
expect_run_error "--checkpoint naming the --log file" 2 "--checkpoint '.*linkF' and --log '.*F' name the same file" s6
same_text "... and F is untouched" "$tmp/F" "$victim_text"

cp "$tmp/run.fmc" "$tmp/X.fmc"
cp "$tmp/X.fmc" "$tmp/X.copy"
run s7 train --resume "$tmp/X.fmc" --log "$tmp/./X.fmc" --quiet
expect_run_error "--resume X --log ./X" 2 "--resume '.*X\.fmc' and --log '.*X\.fmc' name the same file" s7
run s8 train --resume "$tmp/X.fmc" --out "$tmp/sub/../X.fmc" --quiet
expect_run_error "--resume X --out dir/../X" 2 "--out '.*X\.fmc' and --resume '.*X\.fmc' name the same file" s8
if cmp -s "$tmp/X.fmc" "$tmp/X.copy"; then ok "... and the checkpoint is untouched"; else not_ok "... and the checkpoint is untouched" "it changed"; fi
# --checkpoint ./X goes on with the checkpoint it resumes: that is no collision
run s9 train --resume "$tmp/X.fmc" --checkpoint "$tmp/./X.fmc" --quiet
if [ "$rc" -eq 0 ]; then ok "--resume X --checkpoint ./X is allowed"; else not_ok "--resume X --checkpoint ./X is allowed" "exit $rc: $(first_err_line s9)"; fi

cp -r "$data" "$tmp/data2"
cp "$tmp/data2/train-labels-idx1-ubyte" "$tmp/labels.copy"
run s10 train "${args[@]}" --data "idx:$tmp/data2" --log "$tmp/data2/../data2/train-labels-idx1-ubyte"
expect_run_error "--log naming a data file" 2 "--log '.*train-labels-idx1-ubyte' and --data '.*train-labels-idx1-ubyte' name the same file" s10
run s11 train "${args[@]}" --data "idx:$tmp/data2" --out "$tmp/data2/./t10k-images-idx3-ubyte"
expect_run_error "--out naming a data file" 2 "--out '.*t10k-images-idx3-ubyte' and --data '.*t10k-images-idx3-ubyte' name the same file" s11
if cmp -s "$tmp/data2/train-labels-idx1-ubyte" "$tmp/labels.copy"; then ok "... and the data file is untouched"; else not_ok "... and the data file is untouched" "it changed"; fi
cp "$tmp/my.table" "$tmp/table.copy"
run s12 train "${args[@]}" --table "$tmp/my.table" --state "$tmp/./my.table"
expect_run_error "--state naming the --table file" 2 "--state '.*my\.table' and --table '.*my\.table' name the same file" s12
if cmp -s "$tmp/my.table" "$tmp/table.copy"; then ok "... and the table is untouched"; else not_ok "... and the table is untouched" "it changed"; fi

cp "$tmp/run.jsonl" "$tmp/L.jsonl"
cp "$tmp/L.jsonl" "$tmp/L.copy"
run s13 report "$tmp/L.jsonl" -o "$tmp/./L.jsonl"
expect_run_error "report L -o ./L" 2 "-o '.*L\.jsonl' and the log '.*L\.jsonl' name the same file" s13
mkdir -p "$tmp/charts"
cp "$tmp/run.jsonl" "$tmp/charts/error.svg"
cp "$tmp/charts/error.svg" "$tmp/svg.copy"
run s14 report "$tmp/charts/error.svg" -o "$tmp/page2.html" --svg "$tmp/charts"
expect_run_error "report --svg DIR writing over a log" 2 "--svg '.*charts/error\.svg' and the log '.*error\.svg' name the same file" s14
if cmp -s "$tmp/L.jsonl" "$tmp/L.copy" && cmp -s "$tmp/charts/error.svg" "$tmp/svg.copy"; then
    ok "... and the logs are untouched"
else
    not_ok "... and the logs are untouched" "a log changed"
fi

# ---- a run that fails its checks leaves the previous log -------------------------

echo "$victim_text" >"$tmp/prev.jsonl"
run nodata train "${args[@]}" --data "idx:$tmp/no-such-data" --log "$tmp/prev.jsonl"
expect_run_error "a missing data folder with --log" 3 "no-such-data" nodata
same_text "... and the previous log is whole" "$tmp/prev.jsonl" "$victim_text"
run novalid train "${args[@]}" --valid 500 --log "$tmp/prev.jsonl"
expect_run_error "--valid larger than the data with --log" 2 "--valid 500 leaves no training images" novalid
same_text "... and the previous log is whole" "$tmp/prev.jsonl" "$victim_text"

# ---- two runs, one checkpoint ------------------------------------------------------

# start_run OUT WAIT_FOR ARGS...: fewmul in the background, its pid in
# bg_pid; returns once the file WAIT_FOR exists (10 s at most).
start_run() {
    local out=$1 wait_for=$2
    shift 2
    "$FEWMUL" "$@" >"$tmp/$out" 2>"$tmp/$out.err" </dev/null &
    bg_pid=$!
    for _ in $(seq 100); do [ -e "$wait_for" ] && break; sleep 0.1; done
}

# refused_by NAME PID OUT: the last run ended with exit 5 and the one line
# naming PID as the checkpoint's holder.
refused_by() {
    if [ "$rc" -eq 5 ] && [ "$(awk 'END { print NR }' "$tmp/$3.err")" -eq 1 ] &&
        grep -Eq "^fewmul: error: another run \(pid $2\) holds the checkpoint '.*shared\.fmc'" "$tmp/$3.err"; then
        ok "$1"
    else
        not_ok "$1" "exit $rc: $(first_err_line "$3")"
    fi
}

long=(--data "idx:$data" --arch mlp:64 --epochs 1000000 --batch 10 --valid 20 --threads 1 --quiet)
start_run first "$tmp/shared.fmc" train "${long[@]}" --checkpoint "$tmp/shared.fmc"
first=$bg_pid
run_limit=30 run second train "${args[@]}" --checkpoint "$tmp/./shared.fmc"
refused_by "a second run with the same --checkpoint is refused at once, naming the first's pid" "$first" second
run_limit=30 run third train --resume "$tmp/shared.fmc" --quiet
refused_by "... and so is a run resuming it" "$first" third
kill -INT "$first" 2>/dev/null
wait "$first"
got=$?
if [ "$got" -eq 130 ] && [ ! -e "$tmp/shared.fmc.lock" ]; then
    ok "the first run, interrupted, lets the lock go"
else
    not_ok "the first run, interrupted, lets the lock go" "exit $got; $(ls "$tmp" | grep lock)"
fi
# a resumed run takes the lock: once the holder has gone, the checkpoint is free
start_run again "$tmp/shared.fmc.lock" train --resume "$tmp/shared.fmc" --quiet
run_limit=30 run fourth train --resume "$tmp/shared.fmc" --quiet
refused_by "a resumed run holds the lock in turn" "$bg_pid" fourth
kill -INT "$bg_pid" 2>/dev/null
wait "$bg_pid"
# a killed run leaves its lock file, which holds no lock: the next run takes it
start_run killed "$tmp/shared.fmc.lock" train --resume "$tmp/shared.fmc" --quiet
kill -KILL "$bg_pid" 2>/dev/null
wait "$bg_pid" 2>/dev/null
run after train "${args[@]}" --checkpoint "$tmp/shared.fmc"
if [ "$rc" -eq 0 ] && [ ! -e "$tmp/shared.fmc.lock" ]; then
    ok "a lock file left by a killed run does not stop the next"
else
    not_ok "a lock file left by a killed run does not stop the next" "exit $rc: $(first_err_line after)"
fi

finish
