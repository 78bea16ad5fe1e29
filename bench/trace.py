#!/usr/bin/env python3
"""trace.py: where a train step's time goes between its parallel regions.

A runtime built with -DNNRT_TRACE (runtime/threads.c) logs each parallel region
of the calling thread and each product computed on one thread: its function,
when it started, when the caller's own chunk ended, when the last chunk ended.
A product is named after its callback when it has one (a fused epilogue or a
weight's update, MODEL_parN_chunk), else gemm_region.
This script finds the step's period in the log (the same sequence of functions
over and over) and prints, for each region of a step, the medians of
  gap   the caller's serial code before it (since the previous region ended),
  own   the caller's own chunk (for a product: its share of the units),
  wait  the wait for the other threads after it,
and the step's median. docs/performance.md section 16 shows what it found.

  ROOT=/path/to/nnc; mkdir -p /tmp/trace && cd /tmp/trace
  for f in $ROOT/runtime/*.c; do
      cc -O2 -fPIC -fvisibility=hidden -DNNRT_TRACE -I$ROOT/runtime -I$ROOT/include \
         -I$ROOT/build -c $f -o $(basename ${f%.c}).o; done
  ar rcs libnnrt.a *.o
  NNC_RUNTIME=$PWD/libnnrt.a $ROOT/build/nnc model.nn -o model.so
  NNRT_TRACE=log.txt $ROOT/build/bench/bench_nnc ./model.so model 2 1 256
  $ROOT/bench/trace.py log.txt model.so

The log does not say where a step begins: the regions are listed from the one
after the longest serial stretch.
"""
import statistics
import subprocess
import sys


def names(lib):
    out = subprocess.run(["nm", lib], capture_output=True, text=True).stdout
    return {int(f[0], 16): f[2] for f in (l.split() for l in out.splitlines()) if len(f) == 3}


def period(fns):
    """The shortest p with which the middle of the log repeats."""
    lo, hi = len(fns) * 6 // 10, len(fns) * 9 // 10
    for p in range(1, 200):
        if hi - lo > 4 * p and all(fns[i] == fns[i + p] for i in range(lo, hi - p)):
            return p, lo, hi
    sys.exit("trace.py: no repeating step found")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: trace.py LOG LIBRARY.so")
    rows = [l.split() for l in open(sys.argv[1])]
    fns = [int(r[0], 16) for r in rows]
    t = [[int(x) for x in r[1:]] for r in rows]
    sym = names(sys.argv[2])
    p, lo, hi = period(fns)
    # The step starts after its longest gap (the caller's code between steps).
    first = max(range(lo + 1, lo + 1 + p), key=lambda i: statistics.median(
        t[j][0] - t[j - 1][2] for j in range(i, hi, p)))
    steps = range(first, hi - p, p)
    us = lambda v: v / 1000
    print(f"{len(steps)} steps of {p} regions")
    print(f"{'':3} {'region':28} {'gap':>8} {'own':>8} {'wait':>8}   (us, medians)")
    total = [0.0, 0.0, 0.0]
    for k in range(p):
        g = statistics.median(us(t[s + k][0] - t[s + k - 1][2]) for s in steps)
        o = statistics.median(us(t[s + k][1] - t[s + k][0]) for s in steps)
        w = statistics.median(us(t[s + k][2] - t[s + k][1]) for s in steps)
        for i, v in enumerate((g, o, w)):
            total[i] += v
        print(f"{k:3} {sym.get(fns[first + k], hex(fns[first + k])):28} {g:8.1f} {o:8.1f} {w:8.1f}")
    print(f"{'':3} {'sum':28} {total[0]:8.1f} {total[1]:8.1f} {total[2]:8.1f}")
    step = statistics.median(us(t[s + p][0] - t[s][0]) for s in steps)
    print(f"step {step:.1f} us")


if __name__ == "__main__":
    main()
