#!/bin/bash
# Every examples/*.nn is compiled and trained briefly (issue 5, item 6): three
# epochs on small data that fits it; the run must succeed with finite losses,
# and the training loss must fall (except for the chaotic logistic map).
set -euo pipefail
: "${NNC:?}" "${NNC_SOURCE_DIR:?}"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
export XDG_CACHE_HOME="$t/cache"
fm=${NNRT_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}

# 2,000 Fashion-MNIST training samples as raw IDX files (head closes the pipes early).
n=2000
set +o pipefail
{ printf '\x00\x00\x08\x03\x00\x00\x07\xd0\x00\x00\x00\x1c\x00\x00\x00\x1c'
  zcat "$fm/train-images-idx3-ubyte.gz" | tail -c +17 | head -c $((n * 784)); } > "$t/images.idx"
{ printf '\x00\x00\x08\x01\x00\x00\x07\xd0'
  zcat "$fm/train-labels-idx1-ubyte.gz" | tail -c +9 | head -c $n; } > "$t/labels.idx"
set -o pipefail

# random_csv FILE ROWS INPUTS TARGETS: inputs in [0,1), targets a smooth function of them.
random_csv() {
    awk -v rows="$2" -v nin="$3" -v nout="$4" 'BEGIN {
        srand(7);
        for (r = 0; r < rows; r++) {
            s = 0; line = "";
            for (i = 0; i < nin; i++) { v = rand(); s += v; line = line (i ? "," : "") sprintf("%.5f", v) }
            for (j = 0; j < nout; j++) line = line "," sprintf("%.5f", 0.5 + 0.4 * sin(s + j))
            print line
        }
    }' > "$1"
}
# classes_csv FILE ROWS INPUTS CLASSES: inputs then a class index (label=last).
classes_csv() {
    awk -v rows="$2" -v nin="$3" -v k="$4" 'BEGIN {
        srand(11);
        for (r = 0; r < rows; r++) {
            c = int(rand() * k); line = "";
            for (i = 0; i < nin; i++) line = line (i ? "," : "") sprintf("%.4f", rand() + (i % k == c ? 1 : 0))
            print line "," c
        }
    }' > "$1"
}

data_for() {
    case "$1" in
        fashion|fashion_cnn|mnist) echo "idx:$t/images.idx,$t/labels.idx" ;;
        autoencoder)  echo "idx:$t/images.idx" ;;
        handwritten)  classes_csv "$t/hw.csv" 500 256 10; echo "csv:$t/hw.csv,label=last" ;;
        seed)         random_csv "$t/d.csv" 256 2 2; echo "csv:$t/d.csv" ;;
        three_layer)  random_csv "$t/d.csv" 256 4 3; echo "csv:$t/d.csv" ;;
        linear4|explicit) random_csv "$t/d.csv" 256 4 4; echo "csv:$t/d.csv" ;;
        neuron|logistic|curve) random_csv "$t/d.csv" 256 1 1; echo "csv:$t/d.csv" ;;
        xor)          printf '0,0,0\n0,1,1\n1,0,1\n1,1,0\n' > "$t/d.csv"; echo "csv:$t/d.csv" ;;
        *)            echo "no data for example '$1'" >&2; exit 1 ;;
    esac
}

for nn in "$NNC_SOURCE_DIR"/examples/*.nn; do
    name=$(basename "$nn" .nn)
    spec=$(data_for "$name")
    "$NNC" train "$nn" --data "$spec" --epochs 3 --batch 16 --quiet > "$t/out.txt" 2>&1 ||
        { cat "$t/out.txt"; echo "FAIL: $name did not train" >&2; exit 1; }
    first=$(awk '/^epoch 1\//{for (i = 1; i <= NF; i++) if ($i == "loss") {print $(i + 1); exit}}' "$t/out.txt" | tr -d ,)
    last=$(awk '/^epoch 3\//{for (i = 1; i <= NF; i++) if ($i == "loss") {print $(i + 1); exit}}' "$t/out.txt" | tr -d ,)
    echo "$name: train loss $first -> $last"
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(a == a + 0 && b == b + 0) }' ||
        { cat "$t/out.txt"; echo "FAIL: $name: losses not finite" >&2; exit 1; }
    if [ "$name" != logistic ]; then
        awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' ||
            { cat "$t/out.txt"; echo "FAIL: $name: the loss did not fall" >&2; exit 1; }
    fi
done
