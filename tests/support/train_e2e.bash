# train_e2e.bash: shared set-up of the tests/e2e/train_*.sh scripts (sourced, not a test).
# Builds the hand-written models of tests/support/fake_model.c against the built libnnrt,
# generates small data sets, and gives a private cache directory and helpers.
set -euo pipefail
: "${NNC:?set NNC to the nnc binary}"
: "${NNC_SOURCE_DIR:?}"
: "${NNC_BINARY_DIR:?}"
PY=/usr/bin/python3

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nnc-train-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export XDG_CACHE_HOME="$WORK/cache"

fail() { echo "FAIL: $*" >&2; exit 1; }

# build_fake NAME [CFLAGS...]: NAME.so from fake_model.c
build_fake() {
    local name=$1; shift
    cc -shared -fPIC -fvisibility=hidden -O1 "$@" -I "$NNC_SOURCE_DIR/runtime" -I "$NNC_SOURCE_DIR/include" \
        "$NNC_SOURCE_DIR/tests/support/fake_model.c" "$NNC_BINARY_DIR/libnnrt.a" \
        -lcjson -lz -lm -lpthread -o "$name.so"
}

# blobs N FILE: a CSV of N samples, 4 features then a class label 0..2 (three Gaussian blobs).
blobs() {
    "$PY" - "$1" "$2" "${3:-0}" <<'PYEOF'
import sys, numpy as np
n, path, seed = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
r = np.random.default_rng(seed)
c = r.integers(0, 3, n)
x = r.normal(size=(n, 4)) + np.eye(3, 4)[c] * 2.5
with open(path, "w") as f:
    for v, l in zip(x, c):
        f.write(",".join("%.5f" % a for a in v) + ",%d\n" % l)
PYEOF
}

# expect_status WANT CMD...: runs CMD, stdout+stderr into out.txt, checks the exit status.
expect_status() {
    local want=$1; shift
    set +e
    "$@" > out.txt 2>&1
    local got=$?
    set -e
    [ "$got" = "$want" ] || { cat out.txt >&2; fail "'$*' exited $got, expected $want"; }
}

# expect_output TEXT: out.txt contains TEXT (fixed string).
expect_output() {
    grep -qF -- "$1" out.txt || { cat out.txt >&2; fail "output lacks '$1'"; }
}

# tensors_of FILE: the tensor data of a safetensors file, as hex (metadata excluded).
tensors_of() {
    "$PY" - "$1" <<'PYEOF'
import sys, struct, json
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
meta = h.pop("__metadata__")
print(meta["step"], b[8 + n:].hex())
PYEOF
}

build_fake fake
blobs 1000 train.csv 0
blobs 300 test.csv 1
