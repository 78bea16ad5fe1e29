#!/bin/bash
# examples/embed: a C program includes a generated header, trains XOR to 100%,
# saves, reloads into a fresh instance and predicts the same (issue: backend).
set -euo pipefail
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
"$NNC" "$NNC_SOURCE_DIR/examples/xor.nn" -o "$t/xor_net.so"
test -f "$t/xor_net.h"
cc ${NNC_TEST_CFLAGS:-} -std=c99 -Wall -Wextra -pedantic -Werror -I"$t" "$NNC_SOURCE_DIR/examples/embed/embed.c" \
   "$t/xor_net.so" -Wl,-rpath,"$t" -o "$t/embed" -lm
cd "$t"
./embed "$t/xor.safetensors" | tee "$t/out.txt"
grep -q "accuracy 4/4" "$t/out.txt"
grep -q "reloaded model predicts the same" "$t/out.txt"
