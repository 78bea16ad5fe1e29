#!/bin/bash
# Ctrl-C: SIGINT to a running `nnc train` finishes the step, saves a checkpoint, exits 130;
# the checkpoint resumes, and exactly: stopping mid-epoch then finishing equals not stopping.
source "$NNC_SOURCE_DIR/tests/support/train_e2e.bash"
common=(--data csv:train.csv,label=4 --batch 7 --seed 5)   # 1000 = 142*7 + 6
export FAKE_STEP_DELAY_US=20000   # a slow model: 143 steps of 20 ms per epoch

"$NNC" train fake.so "${common[@]}" --epochs 1000000 > run.txt 2>&1 &
pid=$!
for _ in $(seq 300); do   # the first progress line, after 2 s (in epoch 1)
    grep -q "samples/s" run.txt && break
    sleep 0.1
done
grep -q "samples/s" run.txt || { kill -9 $pid; cat run.txt; fail "no progress line"; }
kill -INT $pid
set +e; wait $pid; status=$?; set -e
[ $status = 130 ] || { cat run.txt; fail "exit status $status after SIGINT, expected 130"; }
grep -q "checkpoint saved to fake.interrupted.safetensors" run.txt || { cat run.txt; fail "no checkpoint message"; }
[ -f fake.interrupted.safetensors ] || fail "no checkpoint file"
ls fake.interrupted.safetensors.tmp* 2>/dev/null && fail "a temporary file was left behind"
# where it stopped: "interrupted at step S (epoch E)"
epoch=$(sed -n 's/^interrupted at step [0-9]* (epoch \([0-9]*\))$/\1/p' run.txt)
[ -n "$epoch" ] || { cat run.txt; fail "no 'interrupted at' line"; }
# finish that epoch and one more; compare with a run of epoch+1 epochs that was not stopped
unset FAKE_STEP_DELAY_US
expect_status 0 "$NNC" train fake.so --data csv:train.csv,label=4 --resume fake.interrupted.safetensors \
    --epochs 2 --save resumed.safetensors --quiet
expect_status 0 "$NNC" train fake.so "${common[@]}" --epochs $((epoch + 1)) --save straight.safetensors --quiet
[ "$(tensors_of resumed.safetensors)" = "$(tensors_of straight.safetensors)" ] ||
    fail "interrupted + resumed differs from uninterrupted"
# --save names the interrupted checkpoint too
FAKE_STEP_DELAY_US=20000 "$NNC" train fake.so "${common[@]}" --epochs 1000000 --save mine.safetensors > run2.txt 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q "samples/s" run2.txt && break; sleep 0.1; done
kill -INT $pid
set +e; wait $pid; status=$?; set -e
[ $status = 130 ] && [ -f mine.safetensors ] || { cat run2.txt; fail "--save not used on SIGINT"; }
echo ok
