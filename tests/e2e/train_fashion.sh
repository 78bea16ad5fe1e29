#!/bin/bash
# Real data: softmax regression (a hand-written 784 -> 10 model) on Debian's Fashion-MNIST,
# with its test part picked up by --data fashion-mnist alone. Skipped without the package.
source "$NNC_SOURCE_DIR/tests/support/train_e2e.bash"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    { echo "SKIP: dataset-fashion-mnist is not installed"; exit 0; }
build_fake fashion -DFAKE_IN=784 -DFAKE_OUT=10 -O2
expect_status 0 "$NNC" train fashion.so --data fashion-mnist --epochs 1 --batch 100 --lr 0.01
expect_output "training 'fake': 7850 parameters, 60000 samples (test 10000), batch 100, 600 steps per epoch"
acc=$(sed -n 's/^epoch 1\/1: .*test acc \([0-9.]*\)%.*/\1/p' out.txt)
awk -v a="$acc" 'BEGIN { exit !(a > 75) }' || { cat out.txt; fail "test accuracy $acc% <= 75%"; }
echo ok
