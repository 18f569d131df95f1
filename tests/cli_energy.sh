#!/usr/bin/env bash
# cli_energy.sh — checks `fewmul energy` and `fewmul train --ledger` as a user
# would run them: the paper's multiplication counts, the JSON shape and its
# internal sums, the text report's sections, the built-in and user energy
# tables, and a short training run's ledger on MNIST (skipped when absent).
# Usage: cli_energy.sh PATH_TO_fewmul [SHARED_DATA_DIR]   (prints TAP-like lines)
set -u

NAME=cli_energy.sh
source "$(dirname "$0")/cli_common.sh"

# A JSON result must be one object on the last line of stdout, and valid.
json_last_line() {
    python3 - "$1" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
if not lines:
    sys.exit("no output")
obj = json.loads(lines[-1])
if not isinstance(obj, dict):
    sys.exit("last line is not an object")
EOF
}

# Python helpers shared by the checks: L and P shapes, and sums.
PYLIB='
import json, sys
OPS = ["fmul", "fadd", "fma", "fspecial", "iadd", "shift", "sign", "xnor_popcount", "cmp", "rand"]
PHASES = ["forward", "backward", "update", "eval"]
def load(path):
    return json.loads(open(path).read().splitlines()[-1])
def fail(msg):
    sys.exit(msg)
def close(a, b, rel=1e-6):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)
def check_P(P, levels, physical, where):
    for k in ["ops", "read_bytes", "written_bytes", "compute", "communication", "comm_to_compute", "landauer_bits"]:
        if k not in P:
            fail("%s lacks %s" % (where, k))
    if sorted(P["ops"]) != sorted(OPS):
        fail("%s ops keys %s" % (where, sorted(P["ops"])))
    for k in OPS:
        if not isinstance(P["ops"][k], int) or P["ops"][k] < 0:
            fail("%s ops.%s = %r is not a count" % (where, k, P["ops"][k]))
    for k in ["read_bytes", "written_bytes"]:
        if sorted(P[k]) != sorted(levels):
            fail("%s %s keys %s, levels %s" % (where, k, sorted(P[k]), levels))
        if any(not isinstance(v, int) for v in P[k].values()):
            fail("%s %s not integers" % (where, k))
    for k in ["compute_j", "communication_j", "landauer_j"]:
        if physical and k not in P:
            fail("%s lacks %s (physical table)" % (where, k))
        if not physical and k in P:
            fail("%s has %s but the table is not physical" % (where, k))
def check_L(L, table, where):
    levels = [lv["name"] for lv in table["levels"]]
    physical = table["joules_per_unit"] > 0
    for k in ["layers", "tensors", "total"]:
        if k not in L:
            fail("%s lacks %s" % (where, k))
    check_P(L["total"], levels, physical, where + ".total")
    sums = {k: 0 for k in OPS}
    for layer in L["layers"]:
        for k in ["name", "shape", "phases"]:
            if k not in layer:
                fail("%s layer lacks %s" % (where, k))
        for ph, P in layer["phases"].items():
            if ph not in PHASES:
                fail("%s: unknown phase %s" % (where, ph))
            check_P(P, levels, physical, "%s.%s.%s" % (where, layer["name"], ph))
            for k in OPS:
                sums[k] += P["ops"][k]
    if sums != L["total"]["ops"]:
        fail("%s: layer ops sum to %s, total says %s" % (where, sums, L["total"]["ops"]))
    for t in L["tensors"]:
        if sorted(t) != ["bytes", "level", "name"] or t["level"] not in levels:
            fail("%s: bad tensor %r" % (where, t))
    tot = L["total"]
    if physical and not close(tot["compute_j"], tot["compute"] * table["joules_per_unit"]):
        fail("%s: compute_j != compute * joules_per_unit" % where)
'

# ---- help and tables --------------------------------------------------------

run help energy --help
if [ "$rc" -eq 0 ] && grep -q -- '--table' "$tmp/help" && grep -q 'Exit status' "$tmp/help" &&
    grep -q 'docs/ledger.md' "$tmp/help"; then
    ok "energy --help"
else
    not_ok "energy --help" "exit $rc or text lacks --table, Exit status, docs/ledger.md"
fi
run help2 help energy
if [ "$rc" -eq 0 ] && cmp -s "$tmp/help" "$tmp/help2"; then ok "help energy"; else not_ok "help energy" "exit $rc or differs from energy --help"; fi
run help3 --help
if [ "$rc" -eq 0 ] && grep -q 'fewmul energy' "$tmp/help3"; then ok "top-level help lists energy"; else not_ok "top-level help lists energy" "exit $rc"; fi
run help4 train --help
if [ "$rc" -eq 0 ] && grep -q -- '--ledger' "$tmp/help4" && grep -q -- '--table' "$tmp/help4"; then
    ok "train --help mentions --ledger and --table"
else
    not_ok "train --help mentions --ledger and --table" "exit $rc"
fi

run tables energy --list-tables
if [ "$rc" -eq 0 ] && [ "$(awk 'NR == 1 { print $1 }' "$tmp/tables")" = horowitz45 ]; then
    ok "--list-tables lists horowitz45 first"
else
    not_ok "--list-tables lists horowitz45 first" "exit $rc; $(head -n 1 "$tmp/tables")"
fi
other_table=$(awk 'NR == 2 { print $1 }' "$tmp/tables")

run printed energy --print-table horowitz45
if [ "$rc" -eq 0 ] && [ -s "$tmp/printed" ]; then ok "--print-table horowitz45"; else not_ok "--print-table horowitz45" "exit $rc"; fi
cp "$tmp/printed" "$tmp/same.table"

# ---- the paper's network: BC + QB ----------------------------------------------

run bcqb energy --arch paper-mlp --batch 200 --weights bc --qb --json
if [ "$rc" -ne 0 ]; then
    not_ok "energy bc+qb --json" "exit $rc; $(first_err_line bcqb)"
elif why=$(json_last_line "$tmp/bcqb" 2>&1); then
    ok "energy bc+qb --json: last line is one JSON object"
else
    not_ok "energy bc+qb --json: last line is one JSON object" "$why"
fi

# The paper's table: B*(3*sum MN + 3*sum M) over 784-1024-1024-1024-10; BC+QB
# leaves B*3*sum M. Computed here, not copied from the library.
check "paper multiplication counts (BC+QB, batch 200)" "$PYLIB"'
d = load(sys.argv[1])
widths = [784, 1024, 1024, 1024, 10]
mn = sum(widths[i] * widths[i + 1] for i in range(4))
m = sum(widths[1:])
B = 200
std, method = B * (3 * mn + 3 * m), B * 3 * m
if (d["paper_mults_standard"], d["paper_mults_method"]) != (std, method):
    fail("got %r, %r; expected %d, %d" % (d["paper_mults_standard"], d["paper_mults_method"], std, method))
if not close(d["paper_ratio"], method / std):
    fail("paper_ratio %r, expected %r" % (d["paper_ratio"], method / std))
' "$tmp/bcqb"

check "energy --json keys and ledger shapes" "$PYLIB"'
d = load(sys.argv[1])
need = ["command", "arch", "weights", "qb", "batch", "describe", "table", "train_step", "inference",
        "fp32", "paper_mults_standard", "paper_mults_method", "paper_ratio", "landauer_j_per_bit"]
missing = [k for k in need if k not in d]
if missing:
    fail("lacks " + ", ".join(missing))
if (d["command"], d["arch"], d["weights"], d["qb"], d["batch"]) != ("energy", "paper-mlp", "bc", True, 200):
    fail("values: %r" % [d[k] for k in ["command", "arch", "weights", "qb", "batch"]])
t = d["table"]
for k in ["name", "source", "unit", "joules_per_unit", "levels", "ops"]:
    if k not in t:
        fail("table lacks " + k)
if t["name"] != "horowitz45" or not t["joules_per_unit"] > 0:
    fail("default table %r, joules_per_unit %r" % (t["name"], t["joules_per_unit"]))
if sorted(t["ops"]) != sorted(OPS):
    fail("table ops keys %s" % sorted(t["ops"]))
if t["levels"][-1]["capacity_bytes"] is not None:
    fail("last level is not unbounded (null)")
for lv in t["levels"]:
    if sorted(lv) != ["capacity_bytes", "name", "read_cost_per_byte", "write_cost_per_byte"]:
        fail("level keys %s" % sorted(lv))
check_L(d["train_step"], t, "train_step")
check_L(d["inference"], t, "inference")
check_L(d["fp32"]["train_step"], t, "fp32.train_step")
check_L(d["fp32"]["inference"], t, "fp32.inference")
step = set(p for l in d["train_step"]["layers"] for p in l["phases"])
if not {"forward", "backward", "update"} <= step:
    fail("training step phases %s" % sorted(step))
if not d["inference"]["layers"] or not any(l["phases"] for l in d["inference"]["layers"]):
    fail("inference has no work")
if not close(d["landauer_j_per_bit"], 1.380649e-23 * 300 * 0.6931471805599453):
    fail("landauer_j_per_bit %r" % d["landauer_j_per_bit"])
' "$tmp/bcqb"

check "fp32 compute > bc+qb compute (step and inference)" "$PYLIB"'
d = load(sys.argv[1])
for k in ["train_step", "inference"]:
    a, b = d["fp32"][k]["total"]["compute"], d[k]["total"]["compute"]
    if not a > b:
        fail("%s: fp32 %r, bc+qb %r" % (k, a, b))
' "$tmp/bcqb"

check "bc+qb step has no more multiplies than fp32, and some shifts" "$PYLIB"'
d = load(sys.argv[1])
m = d["train_step"]["total"]["ops"]
f = d["fp32"]["train_step"]["total"]["ops"]
if m["fmul"] + m["fma"] >= f["fmul"] + f["fma"]:
    fail("multiplies: bc+qb %d, fp32 %d" % (m["fmul"] + m["fma"], f["fmul"] + f["fma"]))
if m["shift"] == 0:
    fail("no shifts with --qb")
' "$tmp/bcqb"

# ---- text report ----------------------------------------------------------------

run text energy --arch paper-mlp --weights bc --qb
if [ "$rc" -ne 0 ]; then
    not_ok "energy text report" "exit $rc; $(first_err_line text)"
else
    missing=""
    for want in '^fewmul energy: ' '^table horowitz45' '^levels: ' '^training step' '^inference' \
        'layer/phase' 'forward' 'backward' 'update' 'eval' '^  all layers' 'memory level' \
        '^method vs fp32' 'fp32/method' '^Landauer floor' '^paper view' '1747974000' '1849200'; do
        grep -Eq -- "$want" "$tmp/text" || missing="$missing '$want'"
    done
    wide=$(awk 'length > 100' "$tmp/text" | wc -l)
    if [ -n "$missing" ]; then
        not_ok "energy text report" "lacks$missing"
    elif [ "$wide" -ne 0 ]; then
        not_ok "energy text report" "$wide lines wider than 100 columns"
    elif [ -s "$tmp/text.err" ]; then
        not_ok "energy text report" "stderr not empty: $(first_err_line text)"
    else
        ok "energy text report"
    fi
fi

run verbose energy --arch mlp:32 --verbose
if [ "$rc" -eq 0 ] && grep -q '^  tensors: ' "$tmp/verbose"; then ok "energy --verbose lists the tensors"; else not_ok "energy --verbose lists the tensors" "exit $rc"; fi

# ---- other shapes: --input, --classes, fp32 ------------------------------------

run shape energy --arch mlp:64,32 --input 32x32x3 --classes 5 --batch 7 --json
check "--input 32x32x3 --classes 5: paper count" "$PYLIB"'
d = load(sys.argv[1])
w = [3072, 64, 32, 5]
mn = sum(w[i] * w[i + 1] for i in range(3))
std = 7 * (3 * mn + 3 * sum(w[1:]))
if d["paper_mults_standard"] != std or d["paper_mults_method"] != std:
    fail("got %r, %r; expected %d for both (fp32 removes nothing)" % (d["paper_mults_standard"], d["paper_mults_method"], std))
if d["input_dim"] != 3072 or d["classes"] != 5:
    fail("input_dim %r classes %r" % (d["input_dim"], d["classes"]))
' "$tmp/shape"

run t1 energy --arch mlp:64 --weights tc --qb --threads 1 --json
run t2 energy --arch mlp:64 --weights tc --qb --threads 2 --json
check "counts do not depend on --threads" "$PYLIB"'
a, b = load(sys.argv[1]), load(sys.argv[2])
for k in ["train_step", "inference"]:
    if a[k]["total"]["ops"] != b[k]["total"]["ops"] or a[k]["total"]["read_bytes"] != b[k]["total"]["read_bytes"]:
        fail(k + " differs between 1 and 2 threads")
' "$tmp/t1" "$tmp/t2"

# ---- tables: another built-in, and user files ----------------------------------

if [ -n "$other_table" ]; then
    run other energy --arch mlp:64 --weights bc --table "$other_table" --json
    check "--table $other_table" "$PYLIB"'
d = load(sys.argv[1])
t = d["table"]
if t["name"] != sys.argv[2]:
    fail("table name %r" % t["name"])
check_L(d["train_step"], t, "train_step")
check_L(d["inference"], t, "inference")
' "$tmp/other" "$other_table"
    run othertext energy --arch mlp:64 --weights bc --table "$other_table"
    unit=$(python3 -c "$PYLIB"'
print(load(sys.argv[1])["table"]["unit"])' "$tmp/other" 2>/dev/null)
    physical=$(python3 -c "$PYLIB"'
print(1 if load(sys.argv[1])["table"]["joules_per_unit"] > 0 else 0)' "$tmp/other" 2>/dev/null)
    if [ "$rc" -ne 0 ]; then
        not_ok "--table $other_table text" "exit $rc; $(first_err_line othertext)"
    elif [ "$physical" = 0 ] && grep -q 'Landauer' "$tmp/othertext"; then
        not_ok "--table $other_table text" "Landauer floor shown for a table that is not physical"
    elif [ "$physical" = 0 ] && ! grep -Eq "costs in (1e[0-9]+ )?$unit\)" "$tmp/othertext"; then
        not_ok "--table $other_table text" "costs not in the table's unit '$unit'"
    else
        ok "--table $other_table text"
    fi
else
    skip "--table (second built-in)" "only one built-in table"
fi

# paper-mlp: its weight matrices are too large for any SRAM level, so DRAM has work.
run same energy --weights bc --qb --table "$tmp/same.table" --json
run builtin energy --weights bc --qb --json
check "the printed table, read back, prices as the built-in" "$PYLIB"'
a, b = load(sys.argv[1]), load(sys.argv[2])
for k in ["train_step", "inference"]:
    for q in ["compute", "communication"]:
        if not close(a[k]["total"][q], b[k]["total"][q]):
            fail("%s %s: file %r, built-in %r" % (k, q, a[k]["total"][q], b[k]["total"][q]))
' "$tmp/same" "$tmp/builtin"

# A user table: horowitz45 with the last level's (DRAM's) costs doubled.
python3 - "$tmp/printed" "$tmp/dram2.table" <<'EOF'
import sys
out, levels = [], []
for line in open(sys.argv[1]).read().splitlines():
    body = line.split("#", 1)[0].split()
    if body and body[0] == "level":
        levels.append(len(out))
    if body and body[0] == "name":
        line = "name dram-doubled"
    out.append(line)
last = levels[-1]
body = out[last].split("#", 1)[0].split()
# level NAME CAPACITY READ WRITE [BITS]
body[3] = repr(float(body[3]) * 2)
body[4] = repr(float(body[4]) * 2)
out[last] = " ".join(body)
open(sys.argv[2], "w").write("\n".join(out) + "\n")
EOF
run dram2 energy --weights bc --qb --table "$tmp/dram2.table" --json
if [ "$rc" -ne 0 ]; then
    not_ok "user table: DRAM costs doubled" "exit $rc; $(first_err_line dram2)"
else
    check "user table: DRAM costs doubled" "$PYLIB"'
a, b = load(sys.argv[1]), load(sys.argv[2])
if b["table"]["name"] != "dram-doubled":
    fail("table name %r" % b["table"]["name"])
la, lb = a["table"]["levels"][-1], b["table"]["levels"][-1]
if not (close(lb["read_cost_per_byte"], 2 * la["read_cost_per_byte"]) and close(lb["write_cost_per_byte"], 2 * la["write_cost_per_byte"])):
    fail("table levels: %r vs %r" % (la, lb))
# bc inference keeps only packed weights, all in SRAM: its DRAM share is zero and
# its cost must not move; the training step and the fp32 inference use DRAM.
parts = [("train_step", a["train_step"], b["train_step"], True),
         ("inference", a["inference"], b["inference"], False),
         ("fp32 inference", a["fp32"]["inference"], b["fp32"]["inference"], True)]
for k, pa, pb, uses_dram in parts:
    ta, tb = pa["total"], pb["total"]
    dram = ta["read_bytes"][la["name"]] * la["read_cost_per_byte"] + ta["written_bytes"][la["name"]] * la["write_cost_per_byte"]
    if uses_dram and dram <= 0:
        fail(k + ": nothing at DRAM, the check proves nothing")
    if not uses_dram and dram != 0:
        fail(k + ": expected no DRAM traffic, found cost %r" % dram)
    if not close(tb["communication"], ta["communication"] + dram):
        fail("%s communication %r, expected %r + %r" % (k, tb["communication"], ta["communication"], dram))
    if not close(tb["compute"], ta["compute"]):
        fail("%s compute changed: %r vs %r" % (k, ta["compute"], tb["compute"]))
' "$tmp/builtin" "$tmp/dram2"
fi

# ---- train --ledger on MNIST (or Fashion-MNIST) ---------------------------------

if pick_train_data; then
    run ledger train --data "$TRAIN_SPEC" --arch mlp:16 --epochs 1 --train-limit 500 --valid 100 \
        --threads 2 --quiet --json --ledger
    if [ "$rc" -ne 0 ]; then
        not_ok "train --ledger --json" "exit $rc; $(first_err_line ledger)"
    else
        check "train --ledger --json" "$PYLIB"'
d = load(sys.argv[1])
if "ledger" not in d or "table" not in d:
    fail("no ledger or table key")
L, t = d["ledger"], d["table"]
check_L(L, t, "ledger")
passes = L.get("passes")
if not passes or sorted(passes) != sorted(PHASES):
    fail("passes %r" % passes)
for ph in PHASES:
    if passes[ph]["passes"] <= 0 or passes[ph]["examples"] <= 0:
        fail("no %s passes: %r" % (ph, passes))
if not passes["forward"]["passes"] == passes["backward"]["passes"] == passes["update"]["passes"]:
    fail("steps differ: %r" % passes)
if not 400 <= passes["forward"]["examples"] <= 500:
    fail("forward examples %d, expected those of 500 images" % passes["forward"]["examples"])
for ph in PHASES:
    if ph not in L["phases"]:
        fail("no work recorded in " + ph)
' "$tmp/ledger"
    fi
    run ledgertext train --data "$TRAIN_SPEC" --arch mlp:16 --epochs 1 --train-limit 500 \
        --valid 100 --threads 2 --quiet --table "$tmp/dram2.table"
    if [ "$rc" -eq 0 ] && grep -q '^ledger of the run' "$tmp/ledgertext" &&
        grep -q '^table dram-doubled' "$tmp/ledgertext" && grep -q '^passes: forward' "$tmp/ledgertext" &&
        grep -q '^test error' "$tmp/ledgertext"; then
        ok "train --table FILE (implies --ledger): text report"
    else
        not_ok "train --table FILE (implies --ledger): text report" "exit $rc; $(first_err_line ledgertext)"
    fi
else
    skip "train --ledger --json" "neither MNIST in '$SHARED' nor Fashion-MNIST"
    skip "train --table FILE (implies --ledger): text report" "neither MNIST in '$SHARED' nor Fashion-MNIST"
fi

finish
