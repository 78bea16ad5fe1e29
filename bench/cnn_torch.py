#!/usr/bin/python3
"""PyTorch's train step for examples/fashion_cnn.nn (not one of issue 6's reference
models): conv 8 -> pool -> conv 16 -> pool -> 64 -> 10, softmax cross-entropy, Adam,
one fixed random batch, median of 200 steps after 20 of warm-up, one thread.
Run with the anchors' tuned settings, e.g.

    OMP_WAIT_POLICY=PASSIVE MALLOC_MMAP_THRESHOLD_=1000000000 \\
    MALLOC_TRIM_THRESHOLD_=1000000000 /usr/bin/python3 bench/cnn_torch.py 64

and compare with `bench_nnc fashion_cnn.so cnn 1 1 64` (bench/bench_nnc.c) on a
fashion_cnn.so compiled from examples/fashion_cnn.nn, alternating the two.
"""
import sys
import time

import torch

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 64
torch.set_num_threads(1)
nn = torch.nn
model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
x = torch.rand(batch, 1, 28, 28)
y = torch.randint(0, 10, (batch,))


def step():
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()


for _ in range(20):
    step()
times = []
for _ in range(200):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
times.sort()
print(f"fashion_cnn batch {batch}, 1 thread: median {times[len(times) // 2] * 1e6:.1f} us per step")
