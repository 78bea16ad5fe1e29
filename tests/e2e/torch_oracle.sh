#!/bin/bash
# Compares nnc-compiled models with an independent float64 PyTorch autograd oracle
# (tests/oracle/torch_oracle.py): loss, grad and three optimiser steps of every example
# (but the chaotic logistic.nn) and of tests/oracle/models/*.nn, which cover every built-in,
# both optimisers and their options. Skipped only when /usr/bin/python3 has no torch.
set -euo pipefail
: "${NNC:?set NNC to the nnc binary}"
: "${NNC_SOURCE_DIR:?}"
PY=/usr/bin/python3
# In the sanitizer build every model.so carries the instrumented runtime, which an
# uninstrumented Python cannot load; the numbers are the normal build's business.
case "${NNC_TEST_CFLAGS:-}" in
    *sanitize*) echo "SKIP: the sanitizer build's models cannot be loaded into Python"; exit 0 ;;
esac
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
    echo "SKIP: $PY cannot import torch (apt-get install python3-torch); oracle not run"
    exit 0
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nnc-oracle-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export XDG_CACHE_HOME="$WORK/cache"
ORACLE="$NNC_SOURCE_DIR/tests/oracle/torch_oracle.py"
SMALL="seed three_layer xor curve explicit linear4 neuron elementwise shapes reductions conv
       adamclip sgdplain ties stable"
echo "== batch 5, every model"
ORACLE_BATCH=5 "$PY" "$ORACLE" "$NNC" "$NNC_SOURCE_DIR" "$WORK"
for b in 1 37; do
    echo "== batch $b, the small models"
    # shellcheck disable=SC2086
    ORACLE_BATCH=$b "$PY" "$ORACLE" "$NNC" "$NNC_SOURCE_DIR" "$WORK" $SMALL
done
echo ok
