#!/usr/bin/python3
"""Independent reference values for tests/unit/test_ir_interp.c (seed_network_*).

The [2,3,2,2] sigmoid network of seeds/000 (LANGUAGE.md section 1):
    h1 = sigmoid(W1 @ x + b1); h2 = sigmoid(W2 @ h1 + b2); o = sigmoid(W3 @ h2 + b3)
    loss = 0.5 * sum((y - o)^2) per sample; objective = mean of the losses.
Computed with NumPy in float64, sharing no code with the compiler. Run it and
paste its output into the test when the weights change.
"""
import numpy as np

W1 = np.array([[0.1, -0.2], [0.3, 0.4], [-0.5, 0.6]])
b1 = np.array([0.01, -0.02, 0.03])
W2 = np.array([[0.7, -0.8, 0.9], [-0.1, 0.2, -0.3]])
b2 = np.array([0.05, -0.05])
W3 = np.array([[0.25, -0.35], [0.45, 0.55]])
b3 = np.array([-0.1, 0.1])
X = np.array([[0.5, -1.0], [1.5, 2.0]])
Y = np.array([[1.0, 0.0], [0.0, 1.0]])


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


losses = []
for n, (x, y) in enumerate(zip(X, Y)):
    h1 = sigmoid(W1 @ x + b1)
    h2 = sigmoid(W2 @ h1 + b2)
    o = sigmoid(W3 @ h2 + b3)
    loss = 0.5 * np.sum((y - o) ** 2)
    losses.append(loss)
    print(f"sample {n}: o = {{ {o[0]!r}, {o[1]!r} }}, loss = {loss!r}")
print(f"objective (mean) = {np.mean(losses)!r}")
