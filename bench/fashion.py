#!/usr/bin/python3
"""bench/fashion.py: the end-to-end part of bench/run (issue 6's last three targets).

  1. compile time of `nnc examples/fashion.nn -O2 -o fashion.so`: wall and CPU
     (user + system of the process and its children), best of --compile-reps;
  2. the Fashion-MNIST epoch, `nnc train` (batch 64, Adam, 2 threads) against
     bench/fashion_torch.py --preset tuned (the anchors' script and settings),
     interleaved nnc, torch, nnc, torch, ... for --rounds rounds of --epochs epochs;
  3. the peak memory (max RSS, from wait4 like /usr/bin/time's %M) of each of
     those training processes.

Epoch times: nnc's own per-epoch timer (train_loop.c: the epoch's batch gathering
and train_step calls, not the shuffle or the evaluation), read with millisecond
precision from the `nnc.train` history of the checkpoint written by --save (the
printed "(0.8 s)" has one decimal); PyTorch's from the script's perf_counter
(shuffle, batching and steps, not the evaluation). The .so compiled in part 1 is the
model given to `nnc train`, so no compilation happens in the training processes.

Writes one JSON document (see the end of main) for bench/summarize.py.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import time


def run(cmd, log, env=None):
    """Runs cmd with stdout/stderr appended to log; returns (wall s, cpu s, max RSS KiB)."""
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"bench/fashion.py: '{' '.join(cmd)}' failed with status {p.returncode}, see {log}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def checkpoint_history(path):
    """The per-epoch history of an nnc train checkpoint (safetensors __metadata__ nnc.train)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(f.read(n))["__metadata__"]["nnc.train"]
    hist = dict(kv.split("=", 1) for kv in meta.split()[1:])["history"]
    epochs = []
    for item in hist.split(";"):
        e, loss, acc, tloss, tacc, sec = item.split(":")
        epochs.append({"epoch": int(e), "wall_s": float(sec), "loss": float(loss), "train_acc": float(acc),
                       "test_loss": float(tloss), "test_acc": float(tacc)})
    return epochs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nnc", required=True)
    ap.add_argument("--out", required=True, help="folder for the .so, checkpoints, logs and fashion.json")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--compile-reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--python", default="/usr/bin/python3")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.abspath(args.out)
    log = os.path.join(out, "fashion.log")
    open(log, "w").close()
    so = os.path.join(out, "fashion.so")

    compiles = []
    for _ in range(args.compile_reps):
        wall, cpu, rss = run([args.nnc, os.path.join(root, "examples/fashion.nn"), "-O2", "-o", so], log)
        compiles.append({"wall_s": wall, "cpu_s": cpu, "maxrss_kib": rss})

    nnc_runs, torch_runs = [], []
    for r in range(1, args.rounds + 1):
        ckpt = os.path.join(out, f"fashion_{r}.safetensors")
        cmd = [args.nnc, "train", so, "--data", "fashion-mnist", "--epochs", str(args.epochs),
               "--batch", str(args.batch), "--threads", str(args.threads), "--quiet", "--save", ckpt]
        wall, cpu, rss = run(cmd, log)
        nnc_runs.append({"round": r, "process_wall_s": wall, "cpu_s": cpu, "maxrss_kib": rss,
                         "epochs": checkpoint_history(ckpt)})
        js = os.path.join(out, f"fashion_torch_{r}.json")
        cmd = [args.python, os.path.join(root, "bench/fashion_torch.py"), "--threads", str(args.threads),
               "--epochs", str(args.epochs), "--batch", str(args.batch), "--preset", "tuned", "--json", js]
        wall, cpu, rss = run(cmd, log)
        with open(js) as f:
            t = json.load(f)
        torch_runs.append({"round": r, "process_wall_s": wall, "cpu_s": cpu, "maxrss_kib": rss,
                           "load_s": t["load_s"], "epochs": t["epochs"], "torch": t["torch"]})

    doc = {"epochs": args.epochs, "rounds": args.rounds, "threads": args.threads, "batch": args.batch,
           "compile": compiles, "nnc": nnc_runs, "torch": torch_runs}
    with open(os.path.join(out, "fashion.json"), "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
