# models.sh — sourced by tests/cli_export.sh and tests/cli_export_m4.sh after
# cli_common.sh and pick_train_data: the three networks the C export is
# checked on (issue 24): a binary mlp:256,256 (real activations: group
# lookups, batch norm in floats), the fully binary paper-mlp (--acts binary:
# xor and popcount) and a small fully binary CNN (pools on signs, padding),
# each trained briefly and exported (models_ready); the first test images
# of the set as raw bytes or as C (test_images); and the check that a list of
# predicted classes is `fewmul infer --show`'s (same_classes).

EXPORT_MODELS=(mlp paper conv)
EXPORT_IMAGES=1000
EXPORT_SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

export_arch() {
    case $1 in
    mlp) echo "--arch mlp:256,256 --weights bc-det" ;;
    paper) echo "--arch paper-mlp --weights bc-det --acts binary" ;;
    conv) echo "--arch conv:16k3,pool2,32k3same,pool2,fc64 --weights bc-det --acts binary" ;;
    esac
}

# models_ready WHAT: the data (pick_train_data), then train_and_export; 1
# (after a skip of WHAT, or a failure) when the models are not there.
models_ready() {
    if ! pick_train_data; then
        skip "$1" "neither MNIST in '$SHARED' nor Fashion-MNIST in $FASHION_DIR"
        return 1
    fi
    echo "# training on $TRAIN_NAME ($TRAIN_SPEC)"
    train_and_export
}

# train_and_export: trains each model for a short epoch into $tmp/M.fmp, has
# `fewmul infer --show` predict the first EXPORT_IMAGES test images
# ($tmp/infer_M), and exports it as $tmp/gen/M.h and M.c; 1 on a failure.
train_and_export() {
    local m
    for m in "${EXPORT_MODELS[@]}"; do
        # shellcheck disable=SC2046
        run "train_$m" train --data "$TRAIN_SPEC" $(export_arch "$m") --epochs 1 --train-limit 2000 \
            --valid 500 --batch 100 --quiet --out "$tmp/$m.fmp"
        if [ "$rc" -ne 0 ]; then
            not_ok "train $m" "exit $rc: $(first_err_line "train_$m")"
            return 1
        fi
        run "infer_$m" infer --model "$tmp/$m.fmp" --data "$TRAIN_SPEC" --show "$EXPORT_IMAGES" --json
        if [ "$rc" -ne 0 ]; then
            not_ok "infer $m" "exit $rc: $(first_err_line "infer_$m")"
            return 1
        fi
        run "export_$m" export --model "$tmp/$m.fmp" --c "$tmp/gen" --name "$m" --json
        if [ "$rc" -ne 0 ]; then
            not_ok "export $m" "exit $rc: $(first_err_line "export_$m")"
            return 1
        fi
    done
}

# test_images FORMAT FILE: the first EXPORT_IMAGES test images of the set,
# raw (the IDX pixels) or as C (const uint8_t test_images[N][784], test_count).
test_images() {
    python3 - "$1" "$2" "$TRAIN_DIR" "$EXPORT_IMAGES" <<'PY'
import gzip, os, sys
fmt, out, folder, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
path = os.path.join(folder, "t10k-images-idx3-ubyte")
data = gzip.open(path + ".gz").read() if os.path.exists(path + ".gz") else open(path, "rb").read()
dim = int.from_bytes(data[8:12], "big") * int.from_bytes(data[12:16], "big")
pixels = data[16:16 + n * dim]
if fmt == "raw":
    open(out, "wb").write(pixels)
else:
    with open(out, "w") as f:
        f.write("#include <stdint.h>\nconst int test_count = %d;\n" % n)
        f.write("const uint8_t test_images[%d][%d] = {\n" % (n, dim))
        for i in range(n):
            f.write("{" + ",".join(map(str, pixels[i * dim:(i + 1) * dim])) + "},\n")
        f.write("};\n")
PY
}

# same_classes NAME MODEL FILE: the first EXPORT_IMAGES lines of FILE are the
# classes `fewmul infer --show` gave ($tmp/infer_MODEL).
same_classes() {
    check "$1" '
import json, sys
want = json.loads(open(sys.argv[1]).read().splitlines()[-1])["shown_classes"]
lines = open(sys.argv[2]).read().split()
got = [int(v) for v in lines[:len(want)]]
if len(got) != len(want):
    sys.exit("%d classes, expected %d" % (len(got), len(want)))
differ = [i for i in range(len(want)) if got[i] != want[i]]
if differ:
    sys.exit("%d of %d differ, the first at image %d: %d, infer %d" % (len(differ), len(want), differ[0], got[differ[0]], want[differ[0]]))
' "$tmp/infer_$2" "$3"
}
