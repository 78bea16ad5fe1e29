#!/bin/bash
# `nnc train MODEL.nn` compiles the model into $XDG_CACHE_HOME/nnc once: the second run
# reuses it (no "compiling" line), an edited file is compiled again; a .nn with errors
# exits 1 with its diagnostics. Skipped while the backend is missing.
source "$NNC_SOURCE_DIR/tests/support/train_e2e.bash"
cat > blobs.nn <<'NN'
# Softmax regression on three blobs.
model blobs {
    input  x[4];
    target y[3];
    z = dense(x, 3);
    output softmax(z);
    loss softmax_cross_entropy(z, y);
    train sgd(lr = 0.1, momentum = 0.9);
}
NN
set +e
"$NNC" blobs.nn -o probe.so > probe.txt 2>&1
set -e
if grep -q "no backend" probe.txt; then echo "SKIP: nnc has no backend yet"; exit 0; fi
[ -f probe.so ] || { cat probe.txt; fail "cannot compile blobs.nn"; }

expect_status 0 "$NNC" train blobs.nn --data csv:train.csv,label=4 --test csv:test.csv,label=4 --epochs 3
expect_output "compiling blobs.nn"
expect_output "epoch 3/3: train loss"
[ "$(ls cache/nnc/*.so | wc -l)" = 1 ] || fail "expected one cached model, got: $(ls cache/nnc)"
ls cache/nnc/*.tmp* 2>/dev/null && fail "temporary files left in the cache"
expect_status 0 "$NNC" train blobs.nn --data csv:train.csv,label=4 --epochs 1
grep -q "compiling" out.txt && fail "the second run compiled again"
acc=$(sed -n 's/^epoch 1\/1: .*train acc \([0-9.]*\)%.*/\1/p' out.txt)
awk -v a="$acc" 'BEGIN { exit !(a > 85) }' || fail "train accuracy $acc% <= 85%"
# another content, another entry
echo "# edited" >> blobs.nn
expect_status 0 "$NNC" train blobs.nn --data csv:train.csv,label=4 --epochs 1
expect_output "compiling blobs.nn"
[ "$(ls cache/nnc/*.so | wc -l)" = 2 ] || fail "an edited model was not compiled again"
# the .so in the cache trains like the .nn, and gives the same parameters
expect_status 0 "$NNC" train blobs.nn --data csv:train.csv,label=4 --epochs 2 --save a.safetensors
so=$(ls -t cache/nnc/*.so | head -1)
expect_status 0 "$NNC" train "$so" --data csv:train.csv,label=4 --epochs 2 --save b.safetensors
[ "$(tensors_of a.safetensors)" = "$(tensors_of b.safetensors)" ] || fail ".nn and its cached .so differ"
# the examples through the whole pipeline: xor (binary accuracy), curve (the fitted-curve plot)
printf '0,0,0\n0,1,1\n1,0,1\n1,1,0\n' > xor.csv
expect_status 0 "$NNC" train "$NNC_SOURCE_DIR/examples/xor.nn" --data csv:xor.csv --epochs 2000 --batch 4 --quiet
expect_output "epoch 2000/2000: train loss"
expect_output "train acc 100.00%"
"$PY" -c '
import numpy as np
x = np.linspace(-3, 3, 200)
np.savetxt("curve.csv", np.c_[x, np.sin(2 * x)], delimiter=",", fmt="%.5f")'
expect_status 0 "$NNC" train "$NNC_SOURCE_DIR/examples/curve.nn" --data csv:curve.csv --epochs 100 --batch 16 \
    --plot curve.svg --quiet
grep -q ">Fitted curve</text>" curve.svg || fail "no fitted curve in the plot of curve.nn"
# a model with errors: the compiler's diagnostics, then exit 1
printf 'model bad {\n    input x[4];\n    output y;\n}\n' > bad.nn
expect_status 1 "$NNC" train bad.nn --data csv:train.csv,label=4
expect_output "bad.nn:"
expect_output "nnc: error: cannot compile 'bad.nn'"
echo ok
