#!/bin/bash
# nnc train on a hand-written model (tests/support/fake_model.c): the loss falls, the
# accuracy is reported per epoch, --save writes a loadable checkpoint, --plot an SVG.
source "$NNC_SOURCE_DIR/tests/support/train_e2e.bash"

expect_status 0 "$NNC" train fake.so --data csv:train.csv,label=4 --test csv:test.csv,label=4 \
    --epochs 4 --batch 32 --lr 0.01 --seed 7 --save ck.safetensors --plot run.svg
expect_output "training 'fake': 15 parameters, 1000 samples (test 300), batch 32, 32 steps per epoch"
expect_output "epoch 4/4: train loss"
expect_output "saved ck.safetensors"
# the training loss falls from the first epoch to the last; the test accuracy is high
first=$(sed -n 's/^epoch 1\/4: train loss \([0-9.]*\).*/\1/p' out.txt)
last=$(sed -n 's/^epoch 4\/4: train loss \([0-9.]*\).*/\1/p' out.txt)
acc=$(sed -n 's/^epoch 4\/4: .*test acc \([0-9.]*\)%.*/\1/p' out.txt)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "loss did not fall: $first -> $last"
awk -v a="$acc" 'BEGIN { exit !(a > 85) }' || fail "test accuracy $acc% <= 85%"
# the same seed gives the same run
cp out.txt first.txt
expect_status 0 "$NNC" train fake.so --data csv:train.csv,label=4 --test csv:test.csv,label=4 \
    --epochs 4 --batch 32 --lr 0.01 --seed 7 --save ck2.safetensors
[ "$(tensors_of ck.safetensors)" = "$(tensors_of ck2.safetensors)" ] || fail "same seed, different parameters"
# the checkpoint records where the run stands
grep -q '"nnc.train":"v1 epoch=4 batch_index=0 seed=7 batch=32 n=1000 lr=0.00999999978' ck.safetensors ||
    fail "no training state in the checkpoint"
# the plot is well-formed SVG with both panels, axes and legends
"$PY" - run.svg <<'PYEOF'
import sys, xml.etree.ElementTree as ET
t = ET.parse(sys.argv[1]).getroot()
text = " ".join(e.text or "" for e in t.iter())
for want in ["Training fake", "Loss", "Accuracy", "epoch", "train loss", "test loss", "test accuracy"]:
    assert want in text, want
assert len([e for e in t.iter() if e.tag.endswith("polyline")]) >= 4
PYEOF
# not a terminal: no carriage returns in the output
! grep -q $'\r' first.txt || fail "progress bar drawn although stdout is not a terminal"

# on a terminal: a progress bar redrawn in place with speed, loss and ETA
if command -v script > /dev/null; then
    FAKE_STEP_DELAY_US=20000 script -qec "'$NNC' train fake.so --data csv:train.csv,label=4 --epochs 1" \
        /dev/null > tty.txt
    grep -q $'\r''epoch 1/1 \[=*>* *\] *[0-9]*%  [0-9]* samples/s  loss [0-9.]*  ETA 0:0' tty.txt ||
        { cat -A tty.txt; fail "no progress bar on a terminal"; }
fi

# npy data, no test set, --quiet
"$PY" - <<'PYEOF'
import numpy as np
r = np.random.default_rng(3)
c = r.integers(0, 3, 200)
np.save("x.npy", (r.normal(size=(200, 4)) + np.eye(3, 4)[c] * 2.5).astype(np.float32))
np.save("y.npy", np.eye(3)[c].astype(np.float32))
PYEOF
if [ -f "$NNC_SOURCE_DIR/runtime/dataset.h" ]; then
    expect_status 0 "$NNC" train fake.so --data npy:x.npy,y.npy --epochs 2 --quiet
    expect_output "epoch 2/2: train loss"
    grep -q "^training" out.txt && fail "--quiet printed the header"
fi
echo ok
