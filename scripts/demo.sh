#!/bin/sh
# `make demo`: train examples/fashion.nn (784-256-128-10, Adam) on the real
# Fashion-MNIST data set (Debian's dataset-fashion-mnist), showing the progress
# bar, the per-epoch accuracy and the time taken.
set -e
build=${1:-build}
cd "$(dirname "$0")/.."
scripts/install-deps.sh dataset-fashion-mnist
exec "$build/nnc" train examples/fashion.nn --data fashion-mnist --test fashion-mnist:test \
    --epochs 10 --batch 64 --threads 2 --seed 1 --save "$build/fashion.safetensors" \
    --plot "$build/fashion.svg"
