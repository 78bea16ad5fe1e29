#!/bin/bash
# nnc compiles a library's kernels in two processes (compiler/cg_fork.c); the
# code of every function must be what one process gives (NNC_ONE_PROCESS=1):
# the disassembly is compared function by function, with addresses and the
# nops that pad between functions left out (the layout differs, the code not;
# objdump shows the two-byte nop 66 90 as `xchg %ax,%ax`).
set -euo pipefail
: "${NNC:?set NNC to the nnc binary}"
: "${NNC_SOURCE_DIR:?}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nnc-split-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }

# code LIB: one line per instruction, "function<TAB>instruction", addresses masked.
code() {
    objdump -d --no-show-raw-insn "$1" | awk '
        /^[0-9a-f]+ <.*>:$/ { fn = $2; next }
        /^ / { sub(/^ *[0-9a-f]+:\t/, ""); gsub(/0x[0-9a-f]+/, "X"); gsub(/[0-9a-f]+ <[^>]*>/, "L");
               if ($0 !~ /nop|xchg +%ax,%ax/) print fn "\t" $0 }' | sort -s -t "$(printf '\t')" -k1,1
}

for model in bench/models/mnist_mlp.nn bench/models/xor.nn examples/fashion_cnn.nn; do
    name=$(basename "$model" .nn)
    "$NNC" "$NNC_SOURCE_DIR/$model" -o "$name.two.so"
    NNC_ONE_PROCESS=1 "$NNC" "$NNC_SOURCE_DIR/$model" -o "$name.one.so"
    cmp -s "$name.one.so" "$name.two.so" && fail "$model: the library was not split"
    code "$name.one.so" > one.txt
    code "$name.two.so" > two.txt
    [ "$(wc -l < one.txt)" -gt 1000 ] || fail "$model: objdump gave too little code"
    if ! cmp -s one.txt two.txt; then
        diff one.txt two.txt | head -20
        fail "$model: the code differs"
    fi
    echo "$model: $(cut -f1 one.txt | uniq | wc -l) functions, the same code"
done
