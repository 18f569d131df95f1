#!/usr/bin/env bash
# browser_report.sh — checks a `fewmul report` page in a real browser: three
# tiny runs (fp32, bc+qb, tc+qb with --ledger, on IDX data written here) make a
# report; a copy of it gets a checking <script> of this test before </body>
# (the report itself has none) and headless Chromium loads it and dumps the
# DOM: each chart must be an SVG laid out with a non-zero size, with drawn
# marks (series and bars with a non-empty bounding box and a non-empty d,
# points or size), no text outside its chart, no resource fetched and the
# page no wider than the window. The verdict is JSON in <pre id="fm-verdict">.
# Then a screenshot of the report itself, 1280 px wide, is kept with the page
# under ARTIFACT_DIR (report.png, report.html) and checked to be a PNG of that
# width and of some substance. Without Chromium: SKIP, exit 77.
# Usage: browser_report.sh PATH_TO_fewmul [SHARED_DATA_DIR [ARTIFACT_DIR]]
#        (CHROMIUM=path overrides the browser; prints TAP-like lines)
set -u

NAME=browser_report.sh
source "$(dirname "$0")/cli_common.sh"
artifacts=${3:-$tmp/artifacts}

browser=${CHROMIUM:-}
if [ -z "$browser" ]; then
    for b in chromium chromium-browser google-chrome; do
        if command -v "$b" >/dev/null 2>&1; then
            browser=$(command -v "$b")
            break
        fi
    done
fi
if [ -z "$browser" ] || [ ! -x "$browser" ]; then
    echo "SKIP: no Chromium found (apt-get install chromium, or set CHROMIUM=path); the page was not checked in a browser"
    exit 77
fi

# chrome PROFILE ARGS...: headless Chromium with nothing of its own going out
chrome() {
    local profile=$1
    shift
    HOME=$tmp timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update \
        --disable-sync --disable-extensions --disable-dev-shm-usage --mute-audio \
        --user-data-dir="$profile" "$@"
}

make_idx "$tmp/data" 600 200 8
TINY=(--data "idx:$tmp/data" --arch mlp:16,16 --epochs 5 --valid 100 --batch 50 --threads 1
      --lr-final 0.05 --quiet --ledger)
run fp32.out train "${TINY[@]}" --log "$tmp/fp32.jsonl"
a=$rc
run bc.out train "${TINY[@]}" --weights bc --qb --log "$tmp/bc.jsonl"
b=$rc
run tc.out train "${TINY[@]}" --weights tc --qb --log "$tmp/tc.jsonl"
c=$rc
run rep report "$tmp/fp32.jsonl" "$tmp/bc.jsonl" "$tmp/tc.jsonl" -o "$tmp/report.html" \
    --title "fewmul report: fp32, BC+QB, TC+QB"
if [ $a -ne 0 ] || [ $b -ne 0 ] || [ $c -ne 0 ] || [ "$rc" -ne 0 ]; then
    not_ok "three runs and their report" "exit $a, $b, $c, report $rc: $(first_err_line rep)"
    finish
    exit
fi
ok "three runs and their report"

# The checker runs in the browser, in a copy of the page.
python3 - "$tmp/report.html" "$tmp/check.html" <<'EOF'
import sys
page = open(sys.argv[1], encoding="utf-8").read()
if "<script" in page.lower():
    sys.exit("the report has a script of its own")
checker = r"""<script>
(function () {
  var ids = ["chart-error", "chart-lr", "chart-speed", "chart-energy-phase",
             "chart-energy-layer", "chart-energy-vs-fp32"];
  var v = {ok: true, problems: [], charts: {}};
  function problem(s) { v.ok = false; v.problems.push(s); }
  ids.forEach(function (id) {
    var el = document.getElementById(id), r = {};
    v.charts[id] = r;
    if (!el) { problem(id + ": missing"); return; }
    r.svg = el instanceof SVGSVGElement;
    if (!r.svg) problem(id + ": not an <svg>");
    var box = el.getBoundingClientRect();
    r.width = box.width; r.height = box.height;
    if (!(box.width > 0 && box.height > 0)) problem(id + ": laid out " + box.width + "x" + box.height);
    var marks = el.querySelectorAll(".fm-series, .fm-bar"), drawn = 0;
    r.marks = marks.length;
    marks.forEach(function (m) {
      var b = m.getBBox();
      var shape = m.getAttribute("d") || m.getAttribute("points") ||
          (m.tagName === "rect" && Number(m.getAttribute("width")) > 0 ? "rect" : "");
      if ((b.width > 0 || b.height > 0) && shape && shape.trim()) drawn++;
    });
    r.drawn = drawn;
    if (drawn < 3) problem(id + ": " + drawn + " drawn marks of " + marks.length);
    var outside = 0; /* on the screen, with every transform (rotated labels) applied */
    el.querySelectorAll("text").forEach(function (t) {
      var b = t.getBoundingClientRect();
      if (b.left < box.left - 1 || b.top < box.top - 1 || b.right > box.right + 1 ||
          b.bottom > box.bottom + 1)
        outside++;
    });
    r.texts_outside = outside;
    if (outside) problem(id + ": " + outside + " text(s) outside the chart");
  });
  v.resources = performance.getEntriesByType("resource").map(function (e) { return e.name; });
  if (v.resources.length) problem("resources fetched: " + v.resources.join(" "));
  v.scripts = document.scripts.length;
  v.page_width = document.documentElement.scrollWidth;
  v.window_width = window.innerWidth;
  if (v.page_width > v.window_width + 1) problem("page " + v.page_width + " px wide in " + v.window_width);
  var pre = document.createElement("pre");
  pre.id = "fm-verdict";
  pre.textContent = JSON.stringify(v);
  document.body.appendChild(pre);
})();
</script>
"""
at = page.rindex("</body>")
open(sys.argv[2], "w", encoding="utf-8").write(page[:at] + checker + page[at:])
EOF

chrome "$tmp/profile1" --window-size=1280,3000 --virtual-time-budget=5000 --dump-dom \
    "file://$tmp/check.html" >"$tmp/dom.html" 2>"$tmp/chrome1.err"
chrome_rc=$?
if [ $chrome_rc -ne 0 ] || [ ! -s "$tmp/dom.html" ]; then
    not_ok "Chromium loads the page" "exit $chrome_rc: $(grep -v -e dbus -e '^$' "$tmp/chrome1.err" | tail -n 3 | cut -c1-300)"
else
    ok "Chromium loads the page"
    check "in the browser: every chart laid out, with drawn marks, nothing fetched" '
import html, json, re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r"<pre id=\"fm-verdict\">(.*?)</pre>", dom, re.S)
if not m:
    sys.exit("no verdict in the dumped DOM (the checker did not run)")
v = json.loads(html.unescape(m.group(1)))
print(json.dumps(v["charts"]), file=sys.stderr)
if not v["ok"]:
    sys.exit("; ".join(v["problems"]))
if len(v["charts"]) != 6 or v["scripts"] != 1:
    sys.exit("charts %d, scripts %d" % (len(v["charts"]), v["scripts"]))
for id, r in v["charts"].items():
    if r["width"] < 600:
        sys.exit("%s only %.0f px wide in a 1280 px window" % (id, r["width"]))
' "$tmp/dom.html"
fi

# The screenshot of the report itself: an artifact of the test.
mkdir -p "$artifacts"
cp "$tmp/report.html" "$artifacts/report.html"
rm -f "$artifacts/report.png"
chrome "$tmp/profile2" --window-size=1280,3000 --hide-scrollbars --virtual-time-budget=5000 \
    --screenshot="$artifacts/report.png" "file://$tmp/report.html" >"$tmp/chrome2.out" 2>"$tmp/chrome2.err"
chrome_rc=$?
check "screenshot: a PNG 1280 px wide of more than 20 KB ($artifacts/report.png)" '
import os, struct, sys
path, rc = sys.argv[1], int(sys.argv[2])
if rc != 0 or not os.path.exists(path):
    sys.exit("chromium exit %d, no %s" % (rc, path))
data = open(path, "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
    sys.exit("not a PNG")
w, h = struct.unpack(">II", data[16:24])
if w != 1280 or h < 1000:
    sys.exit("%dx%d" % (w, h))
if len(data) <= 20 * 1024:
    sys.exit("only %d bytes" % len(data))
' "$artifacts/report.png" "$chrome_rc"

finish
