#!/usr/bin/python3
"""Merges one bench/run's measurements into bench/RESULTS.md (markdown on stdout).

Inputs in the run folder: nnc.jsonl (bench_nnc), torch_*.json (bench_torch.py),
fann.txt (bench_fann), cpu_peak.txt (cpu_peak, run at the start and the end).
Every ratio compares figures measured in this same run.
"""
import glob
import json
import os
import re
import statistics
import sys

TARGETS = {  # (model, batch): minimum speed-up over PyTorch at 1 thread (issue 6)
    ("seed_2322", 1): 100, ("seed_2322", 32): 100, ("xor", 4): 100,
    ("mnist_mlp", 1): 15, ("mnist_mlp", 32): 2.5, ("mnist_mlp", 256): 1.3,
    ("fashion_mlp", 64): 2, ("fashion_mlp", 256): 1.2, ("deep_sigmoid", 32): 5,
}
FANN_NAME = {"seed_2322": "seed_2322", "xor": "xor"}
ANCHOR_PEAK = {1: 213.0, 2: 408.0}  # ../shared/anchors: the FMA loop on a quiet machine, GFLOP/s


def load(folder):
    nnc = {}
    for line in open(os.path.join(folder, "nnc.jsonl")):
        if line.startswith("{"):
            r = json.loads(line)
            nnc.setdefault((r["model"], r["batch"], r["threads"]), []).append(r)
    torch = {}
    for path in sorted(glob.glob(os.path.join(folder, "torch_*.json"))):
        for r in json.load(open(path)):
            torch.setdefault((r["model"], r["batch"], r["threads"]), []).append(r)
    fann = {}
    path = os.path.join(folder, "fann.txt")
    if os.path.exists(path):
        for line in open(path):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) > 5 and cells[1] == "train":
                fann[cells[0]] = float(cells[4])
    peak = {}
    for line in open(os.path.join(folder, "cpu_peak.txt")):
        m = re.match(r"fma zmm \(AVX-512\) (\d) threads?\s+median\s+([\d.]+)", line)
        if m:
            peak.setdefault(int(m.group(1)), []).append(float(m.group(2)))
    return nnc, torch, fann, {t: statistics.median(v) for t, v in peak.items()}


def median_of(rs):
    return statistics.median(v for r in rs for v in r["rep_medians_us"])


def main(folder):
    nnc, torch, fann, peak = load(folder)
    print("# nnc benchmark results\n")
    print("Produced by `bench/run` (this file is overwritten by each run). Every ratio compares")
    print("figures measured side by side in the same run, interleaved: nnc's `train_step` and")
    print("PyTorch 1.13 (Debian `python3-torch`, preset `tuned` of ../shared/anchors: OpenBLAS")
    print("AVX-512 kernels, malloc thresholds raised, `OMP_WAIT_POLICY=PASSIVE`), same model,")
    print("batch, optimiser and thread count; FANN 2.2 per sample; the FMA peak of `cpu_peak`.")
    print("Times are medians of per-repetition medians, in microseconds per step.\n")
    print(f"FMA peak (AVX-512, median of the start and end runs): "
          + ", ".join(f"{peak[t]:.0f} GFLOP/s at {t} thread{'s' if t > 1 else ''}" for t in sorted(peak)) + "\n")
    print("The FMA loop shares the machine with everything else running, so under load it")
    print("measures less than the quiet-machine anchors (213 GFLOP/s on one core, 408 on two);")
    print("both percentages are shown. GFLOP/s counts 6 x batch x params per step (the issue's")
    print("convention; the first layer's input gradient, counted there, is never computed).\n")
    print("| model | batch | threads | nnc us | PyTorch us | speed-up | target | nnc GFLOP/s | % of FMA peak (this run) | % of anchor peak |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in sorted(nnc, key=lambda k: (k[2], k[0], k[1])):
        model, batch, threads = key
        ours = median_of(nnc[key])
        theirs = median_of(torch[key]) if key in torch else float("nan")
        flop = nnc[key][0]["flop_per_step"]
        gf = flop / (ours * 1e3)
        target = TARGETS.get((model, batch)) if threads == 1 else None
        ok = "" if target is None else (f"≥ {target}× " + ("✓" if theirs / ours >= target else "✗"))
        pk = peak.get(threads)
        if model == "wide" and threads in ANCHOR_PEAK:
            want = 80 if threads == 1 else 75
            ok = f"≥ {want}% of peak " + ("✓" if 100 * gf / ANCHOR_PEAK[threads] >= want else "✗")
        pk_run = f"{100 * gf / pk:.1f}%" if pk else "?"
        print(f"| {model} | {batch} | {threads} | {ours:.2f} | {theirs:.1f} | {theirs / ours:.2f}× | {ok} | "
              f"{gf:.2f} | {pk_run} | {100 * gf / ANCHOR_PEAK.get(threads, float('nan')):.1f}% |")
    if fann:
        print("\n## Against FANN (per training sample, 1 thread)\n")
        print("| model | batch | nnc us/sample | FANN us/sample (fann_train) | speed-up | target |")
        print("|---|---:|---:|---:|---:|---:|")
        for key in sorted(nnc):
            model, batch, threads = key
            if threads != 1 or model not in FANN_NAME or FANN_NAME[model] not in fann:
                continue
            per = median_of(nnc[key]) / batch
            f = fann[FANN_NAME[model]]
            print(f"| {model} | {batch} | {per:.4f} | {f:.3f} | {f / per:.1f}× | ≥ 5× {'✓' if f / per >= 5 else '✗'} |")
    for model, batch in (("wide", 256), ("fashion_mlp", 256)):
        a, b = nnc.get((model, batch, 1)), nnc.get((model, batch, 2))
        if a and b:
            r = median_of(a) / median_of(b)
            print(f"\n{model} at batch {batch}: 2 threads are {r:.2f}× one thread (target ≥ 1.8× "
                  + ("✓" if r >= 1.8 else "✗") + ").")


if __name__ == "__main__":
    main(sys.argv[1])
