#!/bin/bash
# A non-finite loss stops the run with an error naming the step and the epoch (exit 1).
source "$NNC_SOURCE_DIR/tests/support/train_e2e.bash"
# 1000 samples, batch 32: 32 steps per epoch, so step 37 is in epoch 2
FAKE_NAN_AT_STEP=37 expect_status 1 "$NNC" train fake.so --data csv:train.csv,label=4 --epochs 3 \
    --save never.safetensors
expect_output "nnc: error: loss is nan at step 37 (epoch 2); parameters are unchanged"
expect_output "epoch 1/3: train loss"
[ ! -f never.safetensors ] || fail "a checkpoint was saved after a nan"
echo ok
