#!/bin/bash
# The universal-approximation example on a hand-written 1-16-1 sigmoid network: a
# 1-D regression prints losses only and --plot draws the fitted curve over the data.
source "$NNC_SOURCE_DIR/tests/support/train_e2e.bash"
build_fake curve -DFAKE_CURVE
"$PY" - <<'PYEOF'
import numpy as np
r = np.random.default_rng(1)
x = r.uniform(-3, 3, 300)
y = np.sin(2 * x) + 0.3 * x + r.normal(0, 0.05, 300)
np.savetxt("curve.csv", np.c_[x, y], delimiter=",", fmt="%.5f")
PYEOF
expect_status 0 "$NNC" train curve.so --data csv:curve.csv --epochs 60 --batch 16 --plot curve.svg --quiet
expect_output "epoch 60/60: train loss"
grep -q "acc" out.txt && fail "a regression model reports an accuracy"
last=$(sed -n 's/^epoch 60\/60: train loss \([0-9.]*\).*/\1/p' out.txt)
awk -v a="$last" 'BEGIN { exit !(a < 0.15) }' || fail "the curve is not fitted: loss $last"
"$PY" - curve.svg <<'PYEOF'
import sys, xml.etree.ElementTree as ET
t = ET.parse(sys.argv[1]).getroot()
text = " ".join(e.text or "" for e in t.iter())
for want in ["Fitted curve", "training data", "model prediction", "x (input)"]:
    assert want in text, want
circles = [e for e in t.iter() if e.tag.endswith("circle")]
assert len(circles) >= 300, len(circles)
PYEOF

# targets all 0 or 1 (a step): binary classification, so the accuracy is shown
"$PY" -c '
import numpy as np
x = np.linspace(-3, 3, 200)
np.savetxt("step.csv", np.c_[x, (x > 0.5).astype(float)], delimiter=",", fmt="%.5f")'
expect_status 0 "$NNC" train curve.so --data csv:step.csv --epochs 30 --batch 16 --quiet
acc=$(sed -n 's/^epoch 30\/30: .*train acc \([0-9.]*\)%.*/\1/p' out.txt)
awk -v a="$acc" 'BEGIN { exit !(a > 95) }' || { cat out.txt; fail "binary accuracy '$acc' <= 95%"; }
echo ok
