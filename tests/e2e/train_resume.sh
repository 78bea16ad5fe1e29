#!/bin/bash
# --resume continues exactly: N epochs, save, M more == N+M epochs (parameter and optimiser
# bytes), also from the middle of an epoch and with a last batch smaller than the others.
source "$NNC_SOURCE_DIR/tests/support/train_e2e.bash"
common=(--data csv:train.csv,label=4 --batch 30 --lr 0.05 --seed 3)   # 1000 = 33*30 + 10

expect_status 0 "$NNC" train fake.so "${common[@]}" --epochs 5 --save full.safetensors --quiet
expect_status 0 "$NNC" train fake.so "${common[@]}" --epochs 2 --save part.safetensors --quiet
expect_status 0 "$NNC" train fake.so --data csv:train.csv,label=4 --epochs 3 \
    --resume part.safetensors --save resumed.safetensors
expect_output "resuming at epoch 3, step 1 of 34"
expect_output "epoch 5/5: train loss"
[ "$(tensors_of full.safetensors)" = "$(tensors_of resumed.safetensors)" ] ||
    fail "2 + 3 epochs differ from 5 epochs"
# the lr came from the checkpoint: with another lr the result differs
expect_status 0 "$NNC" train fake.so --data csv:train.csv,label=4 --epochs 3 --lr 0.01 \
    --resume part.safetensors --save other.safetensors --quiet
[ "$(tensors_of full.safetensors)" != "$(tensors_of other.safetensors)" ] || fail "--lr was ignored on resume"
# a checkpoint of another model, or not a checkpoint, is refused
build_fake curve -DFAKE_CURVE
printf '0.1,0.2\n0.3,0.4\n' > c.csv
expect_status 0 "$NNC" train curve.so --data csv:c.csv --epochs 1 --save curve.safetensors --quiet
expect_status 1 "$NNC" train fake.so --data csv:train.csv,label=4 --resume curve.safetensors
expect_output "nnc: error: cannot resume from 'curve.safetensors': "
: > empty.safetensors
expect_status 1 "$NNC" train fake.so --data csv:train.csv,label=4 --resume empty.safetensors
expect_output "nnc: error: cannot resume from 'empty.safetensors': "
echo ok
