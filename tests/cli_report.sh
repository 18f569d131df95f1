#!/usr/bin/env bash
# cli_report.sh — checks `fewmul report` as a user would run it: real tiny runs
# (fp32, bc+qb, tc+qb with --ledger, on small IDX data written here) turned into
# one self-contained page (no script, no external reference, every chart with
# drawn marks), --svg files that are well-formed XML, logs without a result
# line, without a ledger and without an fp32 run, labels, a level "network" in
# the ledger, a 100,000-epoch log (bounded page, at most 1000 points a series,
# spikes kept), the same bytes whatever the locale, and bad input: usage
# errors (2), a missing log (3), logs that are not logs (4, naming FILE:LINE),
# unreadable logs and unwritable outputs (5, the report there before left
# whole). A short MNIST run too when the shared data are there.
# Usage: cli_report.sh PATH_TO_fewmul [SHARED_DATA_DIR]   (prints TAP-like lines)
set -u

NAME=cli_report.sh
source "$(dirname "$0")/cli_common.sh"

# expect_error NAME CODE PATTERN OUT: expect_run_error (cli_common.sh).
expect_error() { expect_run_error "$@"; }

# Python helpers: the page's charts and their marks.
PYLIB='
import json, re, sys
from html.parser import HTMLParser
CHARTS = ["chart-error", "chart-lr", "chart-speed", "chart-energy-phase",
          "chart-energy-layer", "chart-energy-vs-fp32"]
def fail(msg):
    sys.exit(msg)
class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.charts, self.cur, self.tags, self.scripts = {}, None, [], 0
    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        self.tags.append((tag, d))
        if tag == "script":
            self.scripts += 1
        if tag == "svg":
            self.cur = d.get("id")
            self.charts[self.cur] = {"attrs": d, "series": [], "bars": [], "text": [], "marks": 0}
        elif self.cur:
            c = self.charts[self.cur]
            cls = d.get("class", "").split()
            if tag == "polyline" and "fm-series" in cls:
                c["series"].append(d)
            if tag == "rect" and "fm-bar" in cls:
                c["bars"].append(d)
    def handle_endtag(self, tag):
        if tag == "svg":
            self.cur = None
    def handle_data(self, data):
        if self.cur:
            self.charts[self.cur]["text"].append(data)
def load(path):
    text = open(path, encoding="utf-8").read()
    p = Page()
    p.feed(text)
    p.close()
    return text, p
def points(d):
    return [tuple(map(float, xy.split(","))) for xy in d.get("points", "").split()]
def text_of(p, chart):
    return " ".join(p.charts[chart]["text"])
def self_contained(text, p):
    low = text.lower()
    for bad in ["http://", "https://", "//cdn", "url(", "@import", "<link", "<iframe", "<object", "<embed"]:
        if bad in low:
            fail("the page contains %r" % bad)
    if p.scripts:
        fail("the page has %d <script> elements" % p.scripts)
    for tag, d in p.tags:
        for k in ("src", "href", "xlink:href", "srcset", "data", "action"):
            if k in d:
                fail("<%s %s=%r>: an external reference" % (tag, k, d[k]))
'

# ---- help --------------------------------------------------------------------

run help report --help
if [ "$rc" -eq 0 ] && grep -q -- '--svg' "$tmp/help" && grep -q 'Exit status' "$tmp/help" &&
    grep -q 'FILE:LINE' "$tmp/help"; then
    ok "report --help"
else
    not_ok "report --help" "exit $rc or text lacks --svg, Exit status, FILE:LINE"
fi
run help2 help report
if [ "$rc" -eq 0 ] && cmp -s "$tmp/help" "$tmp/help2"; then ok "help report"; else not_ok "help report" "exit $rc or differs from report --help"; fi
run help3 --help
if [ "$rc" -eq 0 ] && grep -q 'fewmul report' "$tmp/help3"; then ok "top-level help lists report"; else not_ok "top-level help lists report" "exit $rc"; fi

# ---- three real runs on small IDX data ----------------------------------------

make_idx "$tmp/data" 600 200 8
TINY=(--data "idx:$tmp/data" --arch mlp:16 --epochs 4 --valid 100 --batch 50 --threads 1
      --lr-final 0.05 --quiet --ledger)
run fp32.out train "${TINY[@]}" --log "$tmp/fp32.jsonl"
fp32_rc=$rc
run bc.out train "${TINY[@]}" --weights bc --qb --log "$tmp/bc.jsonl"
bc_rc=$rc
run tc.out train "${TINY[@]}" --weights tc --qb --log "$tmp/tc.jsonl"
tc_rc=$rc
if [ $fp32_rc -ne 0 ] || [ $bc_rc -ne 0 ] || [ $tc_rc -ne 0 ]; then
    not_ok "three tiny runs with --ledger --log" "exit $fp32_rc, $bc_rc, $tc_rc: $(first_err_line fp32.out.err)"
    finish
    exit
fi
ok "three tiny runs with --ledger --log"
check "each log: 4 epoch lines, then {\"result\": R} with a ledger" '
import json, sys
for path in sys.argv[1:]:
    lines = open(path).read().splitlines()
    objs = [json.loads(l) for l in lines]
    if len(objs) != 5 or [o.get("epoch") for o in objs[:4]] != [1, 2, 3, 4]:
        sys.exit("%s: %d lines, epochs %r" % (path, len(objs), [o.get("epoch") for o in objs]))
    if list(objs[4]) != ["result"] or "ledger" not in objs[4]["result"] or "table" not in objs[4]["result"]:
        sys.exit("%s: last line %r..." % (path, lines[-1][:80]))
' "$tmp/fp32.jsonl" "$tmp/bc.jsonl" "$tmp/tc.jsonl"

run rep report "$tmp/fp32.jsonl" "$tmp/bc.jsonl" "$tmp/tc.jsonl" -o "$tmp/report.html" --svg "$tmp/svg/deep"
if [ "$rc" -eq 0 ] && [ -s "$tmp/report.html" ] && [ ! -s "$tmp/rep.err" ] && [ ! -s "$tmp/rep" ]; then
    ok "report of three runs: exit 0, nothing printed"
else
    not_ok "report of three runs: exit 0, nothing printed" "exit $rc: $(first_err_line rep)"
fi
if [ ! -e "$tmp/report.html.tmp" ]; then ok "no report.html.tmp left"; else not_ok "no report.html.tmp left" "it is there"; fi

check "the page is one self-contained file" "$PYLIB"'
text, p = load(sys.argv[1])
if not text.startswith("<!DOCTYPE html>") or "</html>" not in text:
    fail("not a whole HTML document")
self_contained(text, p)
' "$tmp/report.html"

check "each chart is an <svg class=fm-chart> with its id" "$PYLIB"'
text, p = load(sys.argv[1])
for c in CHARTS:
    if c not in p.charts:
        fail("no <svg id=%s>" % c)
    if "fm-chart" not in p.charts[c]["attrs"].get("class", "").split():
        fail("%s lacks class fm-chart" % c)
' "$tmp/report.html"

check "error chart: validation, training and test series of each run" "$PYLIB"'
text, p = load(sys.argv[1])
s = p.charts["chart-error"]["series"]
got = sorted(d["class"] for d in s)
want = sorted("fm-series fm-run-%d fm-%s" % (i, k) for i in range(3) for k in ["valid", "train", "test"])
if got != want:
    fail("series %r" % got)
for d in s:
    if len(points(d)) != 4:
        fail("%s has %d points, expected 4 epochs" % (d["class"], len(points(d))))
for c in ["chart-lr", "chart-speed"]:
    if len(p.charts[c]["series"]) != 3 or any(len(points(d)) != 4 for d in p.charts[c]["series"]):
        fail("%s: %d series" % (c, len(p.charts[c]["series"])))
' "$tmp/report.html"

check "energy charts: stacked bars of each run, computation and memory levels" "$PYLIB"'
text, p = load(sys.argv[1])
for c in ["chart-energy-phase", "chart-energy-layer", "chart-energy-vs-fp32"]:
    bars = p.charts[c]["bars"]
    runs = {cl for b in bars for cl in b["class"].split() if cl.startswith("fm-run-")}
    if runs != {"fm-run-0", "fm-run-1", "fm-run-2"}:
        fail("%s: bars of %r" % (c, sorted(runs)))
    kinds = {cl for b in bars for cl in b["class"].split() if cl.startswith("fm-seg-")}
    for k in ["fm-seg-compute", "fm-seg-comm"]:
        if k not in kinds:
            fail("%s: no %s segment (%r)" % (c, k, sorted(kinds)))
    if len([k for k in kinds if k.startswith("fm-seg-level-")]) < 2:
        fail("%s: fewer than two memory levels (%r)" % (c, sorted(kinds)))
    for b in bars:
        if float(b["height"]) < 0 or float(b["width"]) <= 0:
            fail("%s: bar %r" % (c, b))
phase_text = text_of(p, "chart-energy-phase")
for ph in ["forward", "backward", "update", "eval"]:
    if ph not in phase_text:
        fail("no phase %s in the phase chart" % ph)
layer_text = text_of(p, "chart-energy-layer")
for layer in ["dense1", "bn1", "dense2", "loss"]:
    if layer not in layer_text:
        fail("no layer %s in the layer chart" % layer)
vs = text_of(p, "chart-energy-vs-fp32")
if "(fp32)" not in vs or vs.count("\u00d7 less") + vs.count("\u00d7 more") != 4:
    fail("vs-fp32 notes: %r" % vs[:300])
' "$tmp/report.html"

check "labels from the modes, and the runs table" "$PYLIB"'
text, p = load(sys.argv[1])
for label in ["fp32", "bc+qb", "tc+qb"]:
    if ">%s<" % label not in text:
        fail("no label %s" % label)
if text.count("fm-run-row") != 3:
    fail("%d rows in the runs table" % text.count("fm-run-row"))
if "mlp:16" not in text:
    fail("the architecture is not named")
' "$tmp/report.html"

check "--svg: six well-formed standalone SVG files, created with their folder" "$PYLIB"'
import os, xml.etree.ElementTree as ET
d = sys.argv[1]
names = ["error", "lr", "speed", "energy-phase", "energy-layer", "energy-vs-fp32"]
if sorted(os.listdir(d)) != sorted(n + ".svg" for n in names):
    fail("files %r" % sorted(os.listdir(d)))
for n in names:
    root = ET.parse(os.path.join(d, n + ".svg")).getroot()
    if root.tag != "{http://www.w3.org/2000/svg}svg" or root.get("id") != "chart-" + n:
        fail("%s.svg: root %s id %s" % (n, root.tag, root.get("id")))
    marks = [e for e in root.iter() if "fm-series" in e.get("class", "").split() or "fm-bar" in e.get("class", "").split()]
    if not marks:
        fail("%s.svg has no marks" % n)
' "$tmp/svg/deep"

# the same bytes whatever the locale, and from one run to the next
locale=$(locale -a 2>/dev/null | grep -Ei '^(de_DE|fr_FR|nl_NL).*utf-?8$' | head -n 1)
LC_ALL=${locale:-C.UTF-8} LANG=${locale:-C.UTF-8} timeout 60 "$FEWMUL" report "$tmp/fp32.jsonl" "$tmp/bc.jsonl" "$tmp/tc.jsonl" \
    -o "$tmp/report2.html" 2>"$tmp/loc.err"
if cmp -s "$tmp/report.html" "$tmp/report2.html"; then
    ok "the same page under LC_ALL=${locale:-C.UTF-8} and from a second run"
else
    not_ok "the same page under LC_ALL=${locale:-C.UTF-8} and from a second run" "pages differ; $(head -c 200 "$tmp/loc.err")"
fi

# ---- logs that are not whole ---------------------------------------------------

head -n 2 "$tmp/bc.jsonl" >"$tmp/running.jsonl"
run partial report "$tmp/fp32.jsonl" "$tmp/running.jsonl" -o "$tmp/partial.html"
check "a log without a result line: curves, a file-name label, no energy, a note" "$PYLIB"'
if int(sys.argv[2]) != 0:
    fail("exit %s" % sys.argv[2])
text, p = load(sys.argv[1])
s = [d for d in p.charts["chart-error"]["series"] if "fm-run-1" in d["class"].split()]
if len(s) != 3 or any(len(points(d)) != 2 for d in s):
    fail("run 1 series: %r" % [len(points(d)) for d in s])
if ">running<" not in text:
    fail("the run is not labelled by its file name")
for c in ["chart-energy-phase", "chart-energy-layer", "chart-energy-vs-fp32"]:
    if any("fm-run-1" in b["class"].split() for b in p.charts[c]["bars"]):
        fail("%s has bars of the unfinished run" % c)
    if not p.charts[c]["bars"]:
        fail("%s lost the fp32 run" % c)
if "no result line" not in text:
    fail("no note about the missing result line")
if "2 of 4" not in text:
    fail("the table does not say 2 of 4 epochs")
' "$tmp/partial.html" "$rc"

run noref report "$tmp/bc.jsonl" "$tmp/tc.jsonl" -o "$tmp/noref.html" --label BC --label TC --title 'No <fp32> here'
check "no fp32 run: said so, no ratios; --label and --title (escaped)" "$PYLIB"'
if int(sys.argv[2]) != 0:
    fail("exit %s" % sys.argv[2])
text, p = load(sys.argv[1])
vs = text_of(p, "chart-energy-vs-fp32")
if "no fp32 run among the inputs" not in vs or "\u00d7" in vs:
    fail("vs-fp32 text: %r" % vs[:300])
if ">BC<" not in text or ">TC<" not in text or ">bc+qb<" in text:
    fail("labels not applied")
if "<title>No &lt;fp32&gt; here</title>" not in text:
    fail("title not escaped")
' "$tmp/noref.html" "$rc"

run plain.out train "${TINY[@]/--ledger/--no-eval}" --epochs 2 --log "$tmp/plain.jsonl"
run same report "$tmp/bc.jsonl" "$tmp/bc.jsonl" "$tmp/plain.jsonl" -o "$tmp/same.html"
check "two runs of one mode get told apart; a run without --ledger has a note" "$PYLIB"'
if int(sys.argv[2]) != 0:
    fail("exit %s" % sys.argv[2])
text, p = load(sys.argv[1])
if ">bc+qb (1)<" not in text or ">bc+qb (2)<" not in text:
    fail("labels of the two bc+qb runs")
if "without --ledger" not in text:
    fail("no note about the run without a ledger")
' "$tmp/same.html" "$rc"

# A table that is not physical (eyeriss16 counts in MACs): left out beside
# joules, the charts' unit when alone.
run mac.out train "${TINY[@]}" --weights bc --qb --table eyeriss16 --epochs 2 --log "$tmp/mac.jsonl"
run mac report "$tmp/fp32.jsonl" "$tmp/mac.jsonl" -o "$tmp/mac.html"
mac_rc=$rc
run mac2 report "$tmp/mac.jsonl" -o "$tmp/mac2.html"
check "a table in MACs: left out beside joules, the unit when alone" "$PYLIB"'
if sys.argv[3] != "0 0":
    fail("exit %s" % sys.argv[3])
text, p = load(sys.argv[1])
if "not comparable" not in text or any("fm-run-1" in b["class"].split() for b in p.charts["chart-energy-phase"]["bars"]):
    fail("the MAC run is not left out of the joule charts")
text, p = load(sys.argv[2])
if not p.charts["chart-energy-phase"]["bars"] or "MAC)" not in text_of(p, "chart-energy-phase"):
    fail("no bars in MACs: %r" % text_of(p, "chart-energy-phase")[:200])
' "$tmp/mac.html" "$tmp/mac2.html" "$mac_rc $rc"

# A ledger with a level "network" (bytes between processes): its own segment.
python3 - "$tmp/fp32.jsonl" "$tmp/net.jsonl" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
res = json.loads(lines[-1])
L = res["result"]["ledger"]
def add(P, n):
    P["read_bytes"]["network"] = n
    P["written_bytes"]["network"] = n
    P["communication"] += 2 * n * 40.0
parts = [L["total"]] + list(L["phases"].values())
for layer in L["layers"]:
    parts += list(layer["phases"].values())
for P in parts:
    add(P, 1000000)
with open(sys.argv[2], "w") as f:
    f.write("\n".join(lines[:-1] + [json.dumps(res)]) + "\n")
EOF
# and as an MPI run writes it: network_cost in each part, the table's costs
# per byte received and sent
python3 - "$tmp/fp32.jsonl" "$tmp/mpi.jsonl" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
res = json.loads(lines[-1])
res["result"]["table"]["network"] = {"send_cost_per_byte": 100.0, "receive_cost_per_byte": 100.0}
L = res["result"]["ledger"]
parts = [L["total"]] + list(L["phases"].values())
for layer in L["layers"]:
    parts += list(layer["phases"].values())
for P in parts:
    P["read_bytes"]["network"] = 500000
    P["written_bytes"]["network"] = 500000
    P["network_cost"] = 1e8
    P["communication"] += 1e8
with open(sys.argv[2], "w") as f:
    f.write("\n".join(lines[:-1] + [json.dumps(res)]) + "\n")
EOF
run mpi report "$tmp/mpi.jsonl" -o "$tmp/mpi.html"
check "an MPI run's network_cost: the network segment, and nothing unpriced" "$PYLIB"'
if int(sys.argv[2]) != 0:
    fail("exit %s" % sys.argv[2])
text, p = load(sys.argv[1])
bars = p.charts["chart-energy-vs-fp32"]["bars"]
if not any("fm-seg-level-network" in b["class"].split() for b in bars):
    fail("no network segment")
if any("fm-seg-other" in b["class"].split() for b in bars):
    fail("an unpriced segment")
' "$tmp/mpi.html" "$rc"

run net report "$tmp/net.jsonl" -o "$tmp/net.html"
check "a level named network: its own segment, after the memory levels" "$PYLIB"'
if int(sys.argv[2]) != 0:
    fail("exit %s" % sys.argv[2])
text, p = load(sys.argv[1])
for c in ["chart-energy-phase", "chart-energy-layer", "chart-energy-vs-fp32"]:
    kinds = [cl for b in p.charts[c]["bars"] for cl in b["class"].split() if cl.startswith("fm-seg-level-")]
    if "fm-seg-level-network" not in kinds:
        fail("%s: no network segment" % c)
    # stacked order within the first bar: network last
    first = [cl for b in p.charts[c]["bars"][:6] for cl in b["class"].split() if cl.startswith("fm-seg-level-")]
    if first and first[-1] != "fm-seg-level-network" and "fm-seg-level-network" in first:
        fail("%s: network not last: %r" % (c, first))
' "$tmp/net.html" "$rc"

# ---- a 100,000-epoch log --------------------------------------------------------

python3 - "$tmp/long.jsonl" <<'EOF'
import json, math, sys
n = 100000
with open(sys.argv[1], "w") as f:
    for e in range(1, n + 1):
        v = 5 + 20 * math.exp(-e / 3000) + (e % 7) * 0.01
        if e == 61234:
            v = 99.0  # a spike that decimation must keep
        f.write(json.dumps({"epoch": e, "epochs": n, "lr": 0.3 * (0.01 / 0.3) ** (e / n),
                            "train_loss": 1 / (1 + e), "train_error_pct": v * 0.8,
                            "valid_error_pct": v, "test_error_pct": v + 0.5, "best_epoch": e,
                            "best_test_error_pct": v + 0.5, "train_seconds": 0.01,
                            "epoch_seconds": 0.02, "images_per_s": 5000 + (e % 100)}) + "\n")
EOF
start=$(date +%s.%N)
run long report "$tmp/long.jsonl" -o "$tmp/long.html" --svg "$tmp/longsvg"
secs=$(python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$start" "$(date +%s.%N)")
echo "# 100000-epoch log: report in $secs s, $(wc -c <"$tmp/long.html") bytes"
check "100000 epochs: a page under 600 KB, at most 1000 points a series, the spike kept, said decimated" "$PYLIB"'
import os
if int(sys.argv[2]) != 0:
    fail("exit %s" % sys.argv[2])
size = os.path.getsize(sys.argv[1])
if size > 600000:
    fail("page of %d bytes" % size)
text, p = load(sys.argv[1])
self_contained(text, p)
for c in ["chart-error", "chart-lr", "chart-speed"]:
    for d in p.charts[c]["series"]:
        n = len(points(d))
        if n > 1000 or n < 900:
            fail("%s %s: %d points" % (c, d["class"], n))
if "Decimated" not in text:
    fail("no caption says the series are decimated")
valid = [d for d in p.charts["chart-error"]["series"] if "fm-valid" in d["class"]][0]
pts = points(valid)
# the x axis of every chart spans epochs 1 to 100000; the learning rate falls
# all along, so its first and last points are those epochs
lr = points(p.charts["chart-lr"]["series"][0])
x0, x1 = lr[0][0], lr[-1][0]
top = min(pts, key=lambda q: q[1])
want = x0 + (61234 - 1) / (100000 - 1) * (x1 - x0)
if abs(top[0] - want) > 1.5:
    fail("the highest point is at x=%.1f, the spike at x=%.1f" % (top[0], want))
if os.path.getsize(os.path.join(sys.argv[3], "error.svg")) > 200000:
    fail("error.svg is too large")
' "$tmp/long.html" "$rc" "$tmp/longsvg"

# ---- bad input --------------------------------------------------------------------

run u1 report
expect_error "report without a log" 2 'no log given' u1
run u2 report "$tmp/fp32.jsonl" --bogus
expect_error "report with an unknown option" 2 "unknown option '--bogus'" u2
run u3 report "$tmp/fp32.jsonl" --label a --label b
expect_error "report with more labels than logs" 2 '2 --label options for 1 log' u3
run u4 report "$tmp/fp32.jsonl" -o
expect_error "report -o without a value" 2 "option '-o' needs a value" u4
run u5 report "$tmp/fp32.jsonl" -o "$tmp/fp32.jsonl"
expect_error "report -o naming a log" 2 'names the log' u5
run u6 report "$tmp/fp32.jsonl" -x
expect_error "report with an unknown short option" 2 "unknown option '-x'" u6

run nf report "$tmp/no-such.jsonl"
expect_error "a log that does not exist" 3 'no-such\.jsonl.*No such file' nf

printf 'hello\n' >"$tmp/hello.jsonl"
run nj report "$tmp/hello.jsonl" -o "$tmp/x.html"
expect_error "a log that is not JSON" 4 'hello\.jsonl:1: not JSON at column 1' nj

head -c 150 "$tmp/fp32.jsonl" >"$tmp/cut.jsonl"
run tr report "$tmp/cut.jsonl" -o "$tmp/x.html"
expect_error "a log cut inside its first line" 4 'cut\.jsonl:1: truncated line' tr

{ head -n 2 "$tmp/fp32.jsonl"; sed -n 3p "$tmp/fp32.jsonl" | head -c 100; } >"$tmp/torn.jsonl"
run torn report "$tmp/torn.jsonl" -o "$tmp/x.html"
expect_error "a log whose last line is torn" 4 'torn\.jsonl:3: truncated line' torn

: >"$tmp/empty.jsonl"
run em report "$tmp/empty.jsonl" -o "$tmp/x.html"
expect_error "an empty log" 4 'empty\.jsonl: empty log' em

printf '\n  \n' >"$tmp/blank.jsonl"
run bl report "$tmp/blank.jsonl" -o "$tmp/x.html"
expect_error "a log of blank lines" 4 'blank\.jsonl: empty log' bl

sed '1s/"lr": [0-9.e-]*/"lr": "fast"/' "$tmp/fp32.jsonl" >"$tmp/type.jsonl"
run ty report "$tmp/type.jsonl" -o "$tmp/x.html"
expect_error "an epoch line with a string for a number" 4 "type\.jsonl:1: 'lr' is a string, expected a number" ty

sed '2s/"train_loss": [0-9.e-]*, //' "$tmp/fp32.jsonl" >"$tmp/nokey.jsonl"
run nk report "$tmp/nokey.jsonl" -o "$tmp/x.html"
expect_error "an epoch line without a key" 4 "nokey\.jsonl:2: no 'train_loss' key" nk

{ sed -n 2p "$tmp/fp32.jsonl"; sed -n 1p "$tmp/fp32.jsonl"; } >"$tmp/order.jsonl"
run or report "$tmp/order.jsonl" -o "$tmp/x.html"
expect_error "epochs out of order" 4 'order\.jsonl:2: epoch 1 follows epoch 2' or

{ cat "$tmp/fp32.jsonl"; sed -n 1p "$tmp/fp32.jsonl"; } >"$tmp/after.jsonl"
run af report "$tmp/after.jsonl" -o "$tmp/x.html"
expect_error "a line after the result line" 4 'after\.jsonl:6: a line after the result line' af

printf '[1, 2]\n' >"$tmp/array.jsonl"
run ar report "$tmp/array.jsonl" -o "$tmp/x.html"
expect_error "a line that is not an object" 4 'array\.jsonl:1: an array, expected a JSON object' ar

printf '{"epoch": 1,}\n' >"$tmp/comma.jsonl"
run cm report "$tmp/comma.jsonl" -o "$tmp/x.html"
expect_error "a trailing comma" 4 "comma\.jsonl:1: not JSON at column 13: a trailing ','" cm

python3 -c 'print("[" * 100 + "]" * 100)' >"$tmp/deep.jsonl"
run dp report "$tmp/deep.jsonl" -o "$tmp/x.html"
expect_error "nesting deeper than 64" 4 'deep\.jsonl:1: not JSON at column 65: nested deeper than 64' dp

sed '$s/"compute": [0-9.e+]*/"compute": "lots"/' "$tmp/fp32.jsonl" >"$tmp/badres.jsonl"
run br report "$tmp/badres.jsonl" -o "$tmp/x.html"
expect_error "a result whose ledger has a string for a cost" 4 'badres\.jsonl:5: result\.ledger\.layers.0.\.phases\.forward\.compute is a string' br

mkdir -p "$tmp/folder.jsonl"
run fo report "$tmp/folder.jsonl" -o "$tmp/x.html"
expect_error "a folder given as a log" 5 'folder\.jsonl.*is a folder' fo

# outputs that cannot be written leave the report there before whole
cp "$tmp/report.html" "$tmp/keep.html"
run nd report "$tmp/fp32.jsonl" -o "$tmp/no/such/dir/r.html"
expect_error "-o in a missing folder" 5 'no/such/dir/r\.html.*No such file' nd
mkdir -p "$tmp/folder.html"
run bl2 report "$tmp/fp32.jsonl" -o "$tmp/folder.html"
expect_error "-o naming a folder" 5 "folder\.html' is a directory, not a regular file" bl2
rmdir "$tmp/folder.html"
if command -v prlimit >/dev/null; then
    # a full disk: a file size limit makes the write fail part-way (EFBIG)
    (trap '' XFSZ; exec prlimit --fsize=1000 "$FEWMUL" report "$tmp/fp32.jsonl" -o "$tmp/keep.html") \
        >"$tmp/fd" 2>"$tmp/fd.err" </dev/null
    rc=$?
    last_args=(report "$tmp/fp32.jsonl" -o "$tmp/keep.html")
    expect_error "-o on a full disk" 5 "writing report '.*keep\.html': File too large" fd
fi
if cmp -s "$tmp/report.html" "$tmp/keep.html" && ! ls "$tmp" | grep -q '^keep\.html\.tmp'; then
    ok "the report there before is left whole, no temporary file left"
else
    not_ok "the report there before is left whole, no temporary file left" "keep.html changed"
fi
: >"$tmp/svgfile"
run sv report "$tmp/fp32.jsonl" -o "$tmp/keep.html" --svg "$tmp/svgfile"
expect_error "--svg naming a file" 5 "svgfile' is not a folder" sv
if cmp -s "$tmp/report.html" "$tmp/keep.html"; then ok "a failed --svg leaves the report whole"; else not_ok "a failed --svg leaves the report whole" "keep.html changed"; fi
if [ "$(id -u)" != 0 ]; then
    mkdir -p "$tmp/ro" && cp "$tmp/report.html" "$tmp/ro/r.html" && chmod 555 "$tmp/ro"
    run ro report "$tmp/fp32.jsonl" -o "$tmp/ro/r.html"
    expect_error "-o in a read-only folder" 5 'Permission denied' ro
    chmod 755 "$tmp/ro"
    if cmp -s "$tmp/report.html" "$tmp/ro/r.html"; then ok "read-only folder: the report is left whole"; else not_ok "read-only folder: the report is left whole" "changed"; fi
    cp "$tmp/fp32.jsonl" "$tmp/secret.jsonl" && chmod 000 "$tmp/secret.jsonl"
    run se report "$tmp/secret.jsonl" -o "$tmp/x.html"
    expect_error "a log that cannot be read" 5 'secret\.jsonl.*Permission denied' se
else
    skip "-o in a read-only folder" "running as root, who may write anywhere"
    skip "a log that cannot be read" "running as root, who may read anything"
fi

# ---- MNIST (or Fashion-MNIST): a report of real runs ----------------------------------

if pick_train_data; then
    M=(--data "$TRAIN_SPEC" --arch mlp:32 --epochs 2 --train-limit 1000 --valid 200 --batch 100
       --quiet --ledger)
    run m1 train "${M[@]}" --log "$tmp/m-fp32.jsonl"
    run m2 train "${M[@]}" --weights bc --qb --log "$tmp/m-bc.jsonl"
    run mr report "$tmp/m-fp32.jsonl" "$tmp/m-bc.jsonl" -o "$tmp/mnist.html"
    check "MNIST: a report of fp32 and bc+qb" "$PYLIB"'
if int(sys.argv[2]) != 0:
    fail("exit %s" % sys.argv[2])
text, p = load(sys.argv[1])
self_contained(text, p)
if len(p.charts["chart-energy-vs-fp32"]["bars"]) < 4 or sys.argv[3] not in text:
    fail("bars or data spec missing")
' "$tmp/mnist.html" "$rc" "$TRAIN_SPEC"
else
    skip "MNIST: a report of fp32 and bc+qb" "neither MNIST in '$SHARED' nor Fashion-MNIST"
fi

finish
