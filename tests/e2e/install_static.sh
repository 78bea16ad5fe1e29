#!/bin/bash
# `cmake --install` installs nnc, libnnrt, <nnc/model.h> and nnrt.pc; a model
# compiled with -c links statically into a C program through pkg-config
# (ABI.md §1: cc app.c model.o $(pkg-config --libs nnrt)).
set -euo pipefail
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
cmake --install "$NNC_BINARY_DIR" --prefix "$t/prefix" > /dev/null
test -x "$t/prefix/bin/nnc"
test -f "$t/prefix/include/nnc/model.h"
lib=$(ls -d "$t"/prefix/lib*/ | head -1)
test -f "$lib/libnnrt.a"
export PKG_CONFIG_PATH="$lib/pkgconfig"
cd "$t"
# The installed compiler finds the installed runtime (no build tree involved).
NNC_BUILD_RUNTIME= "$t/prefix/bin/nnc" "$NNC_SOURCE_DIR/examples/xor.nn" -c -o xor_net.o
test -f xor_net.h
cc ${NNC_TEST_CFLAGS:-} -std=c99 -Wall -Wextra -pedantic -Werror $(pkg-config --cflags nnrt) -I. \
   "$NNC_SOURCE_DIR/examples/embed/embed.c" xor_net.o $(pkg-config --libs nnrt) -o embed
./embed "$t/xor.safetensors" | grep -q "reloaded model predicts the same"
# The shared library built by the installed compiler links the installed runtime.
"$t/prefix/bin/nnc" "$NNC_SOURCE_DIR/examples/xor.nn" -o xor_net.so
nm -D --defined-only xor_net.so | grep -q " T nnc_model_entry"
