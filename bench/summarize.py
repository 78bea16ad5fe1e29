#!/usr/bin/python3
"""Merges one bench/run's measurements into bench/RESULTS.md (markdown on stdout).

Inputs in the run folder: nnc.jsonl (bench_nnc), torch_*.json (bench_torch.py),
fann.txt (bench_fann), cpu_peak.txt (cpu_peak, run at the start and the end),
fashion.json (bench/fashion.py: Fashion-MNIST epoch, peak memory, compile time).
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
EPOCH_TARGET = 0.4      # nnc epoch time / PyTorch's (issue 6)
ACC_TOLERANCE = 0.01    # "equal accuracy": nnc's test accuracy at most 1 point below PyTorch's
RSS_TARGET = 0.5        # nnc train's max RSS / PyTorch's
COMPILE_TARGET = 1.0    # seconds of wall time (the wait), nnc examples/fashion.nn -O2


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
    print("The models (bench/models) are compiled at nnc's default -O2. Times are medians of")
    print("per-repetition medians, in microseconds per step.\n")
    print("The last section compares whole training runs: the Fashion-MNIST epoch of `nnc train`")
    print("against the anchors' `fashion_torch.py` (both batch 64, Adam, 2 threads), the peak")
    print("memory (max RSS) of those training processes, and the time to compile examples/fashion.nn.")
    print("`bench/run` ends with the whole run's duration.\n")
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
    fashion_section(folder)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fashion_section(folder):
    path = os.path.join(folder, "fashion.json")
    if not os.path.exists(path):
        return
    d = json.load(open(path))
    E, R = d["epochs"], d["rounds"]
    nnc, torch = d["nnc"], d["torch"]
    print(f"\n## Fashion-MNIST end to end ({d['threads']} threads, batch {d['batch']}, Adam)\n")
    print(f"`bench/fashion.py`: `nnc train fashion.so --data fashion-mnist --epochs {E} --batch {d['batch']} "
          f"--threads {d['threads']}`")
    print("(fashion.so compiled from examples/fashion.nn at -O2 beforehand, so no compile time is in")
    print("the training process) against")
    print(f"`bench/fashion_torch.py --preset tuned --threads {d['threads']} --epochs {E}` (the anchors' script: the same")
    print("784-256-128-10 relu net, softmax cross-entropy, Adam lr 0.001, shuffled batches of 64, last")
    print(f"batch partial), interleaved nnc, PyTorch, nnc, PyTorch, ... ({R} round{'s' if R > 1 else ''} of {E} "
          f"epoch{'s' if E > 1 else ''} each).")
    print("**Epoch time**: nnc's, its own per-epoch timer (the epoch's batch gathering and train_step")
    print("calls; read in milliseconds from the checkpoint's `nnc.train` history, as the printed")
    print("`(0.8 s)` has one decimal); PyTorch's, the script's `perf_counter` around the shuffle, the")
    print("batching and the steps. Neither includes start-up, data loading or the evaluation.")
    print("Medians over every epoch of every round. **Test accuracy** after the last epoch (10,000 test")
    print(f"images); equal accuracy means nnc's is at most {100 * ACC_TOLERANCE:.0f} point below PyTorch's (different")
    print("initialisations and shuffles, so not the same figure). **Peak memory**: the max RSS of the")
    print("whole process (`wait4`, as `/usr/bin/time -f %M`; `nnc train` runs as nnc-train), median over")
    print("rounds. **Process wall**: the whole command, start-up, loading and evaluations included.\n")
    ne = [e["wall_s"] for r in nnc for e in r["epochs"]]
    te = [e["wall_s"] for r in torch for e in r["epochs"]]
    n_acc = [r["epochs"][-1]["test_acc"] for r in nnc]
    t_acc = [r["epochs"][-1]["test_acc"] for r in torch]
    n_ep, t_ep = med(ne), med(te)
    ratio = n_ep / t_ep
    acc_ok = med(n_acc) >= med(t_acc) - ACC_TOLERANCE
    n_rss = med([r["maxrss_kib"] for r in nnc]) / 1024
    t_rss = med([r["maxrss_kib"] for r in torch]) / 1024

    def accs(xs):
        return " / ".join(f"{100 * x:.2f}%" for x in xs)

    def walls(runs):
        return " ; ".join(" / ".join(f"{e['wall_s']:.3f}" for e in r["epochs"]) for r in runs)

    print("| measurement | nnc | PyTorch | nnc / PyTorch | target |")
    print("|---|---:|---:|---:|---:|")
    print(f"| median epoch time, s | {n_ep:.3f} | {t_ep:.3f} | {ratio:.2f}× | ≤ {EPOCH_TARGET}× at equal accuracy "
          + ("✓" if ratio <= EPOCH_TARGET and acc_ok else "✗") + " |")
    print(f"| epoch times, s (rounds separated by ;) | {walls(nnc)} | {walls(torch)} | | |")
    steps = torch[0]["epochs"][0].get("steps", -(-60000 // d["batch"]))
    print(f"| steps per second (median epoch) | {steps / n_ep:.0f} | {steps / t_ep:.0f} | | |")
    print(f"| test accuracy after {E} epoch{'s' if E > 1 else ''} (each round) | {accs(n_acc)} | {accs(t_acc)} | "
          f"{100 * (med(n_acc) - med(t_acc)):+.2f} points | equal (≥ −{100 * ACC_TOLERANCE:.0f} point) "
          + ("✓" if acc_ok else "✗") + " |")
    print(f"| peak memory (max RSS), MiB | {n_rss:.1f} | {t_rss:.1f} | {n_rss / t_rss:.2f}× | ≤ {RSS_TARGET}× "
          + ("✓" if n_rss / t_rss <= RSS_TARGET else "✗") + " |")
    print(f"| process wall, s (median) | {med([r['process_wall_s'] for r in nnc]):.2f} | "
          f"{med([r['process_wall_s'] for r in torch]):.2f} | "
          f"{med([r['process_wall_s'] for r in nnc]) / med([r['process_wall_s'] for r in torch]):.2f}× | |")
    print(f"| process CPU (user + sys), s (median) | {med([r['cpu_s'] for r in nnc]):.2f} | "
          f"{med([r['cpu_s'] for r in torch]):.2f} | | |")
    c = d["compile"]
    if c:
        w, u = min(x["wall_s"] for x in c), min(x["cpu_s"] for x in c)
        ok = "✓" if w <= COMPILE_TARGET else "✗"
        print(f"\n**Compile time**: `nnc examples/fashion.nn -O2 -o fashion.so`, best of {len(c)}: "
              f"{w:.3f} s wall, {u:.3f} s CPU (user + system, children included), max RSS "
              f"{max(x['maxrss_kib'] for x in c) / 1024:.0f} MiB (target ≤ {COMPILE_TARGET:.0f} s of wall time {ok}; "
              "the CPU time adds up nnc's two processes and the linker's; all runs, wall/CPU: "
              + ", ".join(f"{x['wall_s']:.3f}/{x['cpu_s']:.3f}" for x in c) + ").")
    print()


if __name__ == "__main__":
    main(sys.argv[1])
