#!/bin/bash
# Every malformed data set is refused with exit 1 and its own message (a different text for
# each fault, naming what is wrong); good IDX (raw and gzip) and npy data train.
source "$NNC_SOURCE_DIR/tests/support/train_e2e.bash"
[ -f "$NNC_SOURCE_DIR/runtime/dataset.h" ] || { echo "SKIP: libnnrt has no data set loaders yet"; exit 0; }

# fake.so: input 4 (a 2x2 image), 3 classes.
"$PY" - <<'PYEOF'
import gzip, struct, numpy as np
def idx_images(path, imgs, magic=0x00000803, rows=2, cols=2, count=None, cut=0):
    b = struct.pack(">IIII", magic, len(imgs) if count is None else count, rows, cols) + bytes(imgs.astype(np.uint8).ravel())
    open(path, "wb").write(b[:len(b) - cut] if cut else b)
def idx_labels(path, labels, magic=0x00000801):
    open(path, "wb").write(struct.pack(">II", magic, len(labels)) + bytes(np.array(labels, np.uint8)))
r = np.random.default_rng(0)
lab = r.integers(0, 3, 60)
img = np.clip(np.eye(3, 4)[lab] * 200 + r.integers(0, 50, (60, 4)), 0, 255)
idx_images("img", img); idx_labels("lab", lab)
open("img.gz", "wb").write(gzip.compress(open("img", "rb").read()))
open("lab.gz", "wb").write(gzip.compress(open("lab", "rb").read()))
idx_images("img_bad", img, magic=0x12345678)
idx_images("img_cut", img, cut=7)
idx_labels("lab_short", lab[:50])
idx_images("img_3x3", np.zeros((60, 9)), rows=3, cols=3)
open("bad.gz", "wb").write(gzip.compress(open("img", "rb").read())[:40] + b"\x00garbage" * 8)
idx_labels("lab_big", [7] * 60)
np.save("x.npy", img.astype(np.float32) / 255); np.save("y.npy", np.eye(3)[lab].astype(np.float32))
np.save("x_str.npy", np.array([["a"] * 4] * 60))
np.save("x_wide.npy", np.zeros((60, 5), np.float32))
open("x_cut.npy", "wb").write(open("x.npy", "rb").read()[:-10])
np.save("y_short.npy", np.eye(3)[lab[:59]].astype(np.float32))
open("not.npy", "wb").write(b"PK\x03\x04 this is a zip, not npy" * 4)
PYEOF
printf '1,2,3,4,0\n1,2,abc,4,1\n' > nonnum.csv
printf '1,2,3,4,0\n1,2,3,1\n' > columns.csv
printf '1,2,3,4,0\n1,2,3,4,7\n' > label.csv
: > e.csv

expect_status 0 "$NNC" train fake.so --data idx:img,lab --epochs 2 --quiet
expect_status 0 "$NNC" train fake.so --data idx:img.gz,lab.gz --test idx:img,lab --epochs 2 --quiet
expect_output "test acc"
expect_status 0 "$NNC" train fake.so --data npy:x.npy,y.npy --epochs 2 --quiet

# spec|what the message must mention (an extended regexp, case-insensitive)
cases=(
    "csv:nonnum.csv,label=4|number|numeric"
    "csv:columns.csv,label=4|column|field"
    "csv:label.csv,label=4|label|class"
    "csv:e.csv,label=4|no samples|empty"
    "csv:missing.csv,label=4|No such file"
    "idx:img_bad,lab|magic"
    "idx:img_cut,lab|truncat|short|end"
    "idx:img,lab_short|60|50"
    "idx:img_3x3,lab|9|input"
    "idx:bad.gz,lab|gzip|compress|corrupt|truncat|invalid"
    "idx:img,lab_big|label|class"
    "npy:x_str.npy,y.npy|dtype|type"
    "npy:x_wide.npy,y.npy|5|shape|size"
    "npy:x_cut.npy,y.npy|truncat|short|end|size"
    "npy:x.npy,y_short.npy|59|60|count|match"
    "npy:not.npy,y.npy|magic|not a|npy"
    "nosuchformat:whatever|spec|format|unknown"
)
declare -A seen
for c in "${cases[@]}"; do
    spec=${c%%|*}
    want=${c#*|}
    expect_status 1 "$NNC" train fake.so --data "$spec" --epochs 1
    msg=$(grep "nnc: error:" out.txt | head -1)
    [ -n "$msg" ] || { cat out.txt; fail "$spec: no 'nnc: error:' line"; }
    bare=$msg   # without the file names, which must not make the keyword match
    IFS=':,' read -ra parts <<< "$spec"
    for part in "${parts[@]:1}"; do bare=${bare//"$part"/}; done
    grep -qiE -- "$want" <<< "$bare" || fail "$spec: the message does not say /$want/: $msg"
    core=$(sed "s/'[^']*'//g" <<< "$msg")   # without the quoted spec and file names
    [ -z "${seen[$core]:-}" ] || fail "$spec: the same message as ${seen[$core]}: $msg"
    seen[$core]=$spec
    [ -z "${SHOW:-}" ] || echo "$spec -> $msg"
done
echo ok
