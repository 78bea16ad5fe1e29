#!/usr/bin/python3
"""torch_oracle.py: check nnc-compiled models against an independent float64 PyTorch oracle.

For every model: compile it with nnc, load the .so through nnc_model_entry() (ctypes), copy
its initial parameters into a hand-written float64 PyTorch version of the same model, then
compare (a) loss() and predict() on a random batch, (b) grad() with torch autograd, (c) three
optimiser steps (train_step; grad + apply; set_lr(lr / 2) + train_step) with torch.optim.SGD /
AdamW (+ clip_grad_norm_), the parameters after every step.
Errors are relative to the max |entry| of the torch tensor; tolerance 1e-4 (float32 vs float64).

usage: torch_oracle.py NNC SOURCE_DIR WORKDIR [MODEL...]
"""
import ctypes
import os
import re
import subprocess
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
TOL = 1e-4
BATCH = int(os.environ.get("ORACLE_BATCH", "5"))
SEED = int(os.environ.get("ORACLE_SEED", "0"))


# ---------------------------------------------------------------- ctypes view of model.h
class TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("rank", ctypes.c_int),
                ("shape", ctypes.c_int64 * 4), ("offset", ctypes.c_size_t)]


FP = ctypes.POINTER(ctypes.c_float)
VP = ctypes.c_void_p
SZ = ctypes.c_size_t


class ModelInfo(ctypes.Structure):
    _fields_ = [("abi_version", ctypes.c_int), ("name", ctypes.c_char_p),
                ("input_size", SZ), ("target_size", SZ), ("output_size", SZ),
                ("param_count", SZ), ("n_tensors", SZ),
                ("tensors", ctypes.POINTER(TensorInfo)),
                ("create", ctypes.CFUNCTYPE(VP, ctypes.c_uint64)),
                ("destroy", ctypes.CFUNCTYPE(None, VP)),
                ("train_step", ctypes.CFUNCTYPE(ctypes.c_float, VP, FP, FP, SZ)),
                ("loss", ctypes.CFUNCTYPE(ctypes.c_float, VP, FP, FP, SZ)),
                ("predict", ctypes.CFUNCTYPE(None, VP, FP, FP, SZ)),
                ("grad", ctypes.CFUNCTYPE(ctypes.c_float, VP, FP, FP, SZ, FP)),
                ("apply", ctypes.CFUNCTYPE(None, VP, FP)),
                ("params", ctypes.CFUNCTYPE(FP, VP)),
                ("set_lr", ctypes.CFUNCTYPE(None, VP, ctypes.c_float)),
                ("set_threads", ctypes.CFUNCTYPE(None, VP, ctypes.c_int)),
                ("save", ctypes.CFUNCTYPE(ctypes.c_int, VP, ctypes.c_char_p)),
                ("load", ctypes.CFUNCTYPE(ctypes.c_int, VP, ctypes.c_char_p))]


def fptr(a):
    return None if a is None else a.ctypes.data_as(FP)


# ---------------------------------------------------------------- torch building blocks
def dense(P, name, x, act=lambda t: t, bias=True):
    z = x @ P[name + ".W"].T
    if bias:
        z = z + P[name + ".b"]
    return act(z)


def conv(P, name, x, stride=1, padding=0, act=lambda t: t, bias=True):
    b = P[name + ".b"] if bias else None
    return act(F.conv2d(x, P[name + ".W"], b, stride=stride, padding=padding))


def flat(t):
    return t.reshape(t.shape[0], -1)


def S(t):           # per-sample sum
    return flat(t).sum(1) if t.dim() > 1 else t


def M(t):           # per-sample mean
    return flat(t).mean(1) if t.dim() > 1 else t


def mse(o, y): return M((o - y) ** 2)
def sse(o, y): return 0.5 * S((o - y) ** 2)
def xent(p, y): return -S(y * torch.log(p))
def sxent(z, y): return -S(y * torch.log_softmax(z, -1))
def bce(p, y): return -S(y * torch.log(p) + (1 - y) * torch.log(1 - p))


sig = torch.sigmoid


def onehot(r, b, n):
    return np.eye(n)[r.integers(0, n, b)]


def probs(r, b, n):
    p = r.uniform(0.1, 1, (b, n))
    return p / p.sum(1, keepdims=True)


# ---------------------------------------------------------------- the models
def m_seed(P, x, y):
    h1 = dense(P, "h1", x, sig); h2 = dense(P, "h2", h1, sig); o = dense(P, "o", h2, sig)
    return 0.5 * S((y - o) ** 2), o


def m_three_layer(P, x, y):
    a2 = dense(P, "a2", x, sig); a3 = dense(P, "a3", a2, sig)
    return 0.5 * S((y - a3) ** 2), a3


def m_xor(P, x, y):
    o = dense(P, "o", dense(P, "h", x, torch.tanh), sig)
    return mse(o, y), o


def m_curve(P, x, y):
    o = dense(P, "o", dense(P, "h", x, sig))
    return mse(o, y), o


def m_explicit(P, x, y):
    z = x @ P["A"].T
    h = z * sig(z)
    o = h @ P["B"].T
    return S((o - y) ** 2), o


def m_linear4(P, x, y):
    p = x @ P["W1"] @ P["W2"] @ P["W3"]
    return 0.5 * S((p - y) ** 2), p


def m_neuron(P, x, y):
    f = 1 / (torch.exp(-(P["w"] * x + P["b"])) + 1)
    return 0.5 * S((f - y) ** 2), f


def m_handwritten(P, x, y):
    h = dense(P, "h", x, sig)
    p = torch.softmax(dense(P, "p", h), -1)
    return xent(p, y), p


def m_mnist(P, x, y):
    z = dense(P, "z", dense(P, "h", x, torch.relu))
    return sxent(z, y), torch.softmax(z, -1)


def m_fashion(P, x, y):
    h1 = dense(P, "h1", x, torch.relu); h2 = dense(P, "h2", h1, torch.relu)
    z = dense(P, "z", h2)
    return sxent(z, y), torch.softmax(z, -1)


def m_fashion_cnn(P, x, y):
    c1 = conv(P, "c1", x, padding=1, act=torch.relu); p1 = F.max_pool2d(c1, 2)
    c2 = conv(P, "c2", p1, padding=1, act=torch.relu); p2 = F.max_pool2d(c2, 2)
    h = dense(P, "h", flat(p2), torch.relu)
    z = dense(P, "z", h)
    return sxent(z, y), torch.softmax(z, -1)


def m_autoencoder(P, x, y):
    e1 = dense(P, "e1", x, torch.relu); code = dense(P, "code", e1, torch.relu)
    d1 = dense(P, "d1", code, torch.relu); r = dense(P, "r", d1, sig)
    return bce(r, x) / 784, r


def m_elementwise(P, x, y):
    a, c, e = P["a"], P["c"], P["e"]
    u = a * x
    v = c * x
    t1 = torch.exp(0.3 * u) + torch.log(u) + torch.sqrt(u) + torch.abs(v) + torch.tanh(v) + sig(v)
    t2 = (torch.relu(v) + F.softplus(v) + torch.sin(v) + torch.cos(v) + torch.square(v)
          + F.leaky_relu(v, 0.1))
    t3 = (torch.maximum(v, a - 1) + torch.minimum(c, u - 1) + v + u ** 3 + u ** -1 + v ** 2)
    t4 = u ** c + u ** e + 2 ** v + u ** 0.5
    return S(y * (t1 + t2)) + M(y * t3) + 0.1 * S(t4), t1 + t2 + t3 + t4


def m_shapes(P, x, y):
    W, v, u, row, col, s = P["W"], P["v"], P["u"], P["row"], P["col"], P["s"]
    b1 = x + row
    b2 = b1 * col - v
    b3 = b2 * s + 1
    m1 = W @ b3                                   # [B,4,4]
    m2 = m1 @ v                                   # [B,4]
    m3 = v @ W                                    # [3]
    m4 = m3 @ u                                   # scalar
    r = flat(b3 * s).reshape(-1, 4, 3) @ u        # [B,4]
    return sse(m2 + m4 * v, y) + M(W.T * x) + 0.1 * S(r * y), m2 + m4 * v + r


def m_reductions(P, x, y):
    h = dense(P, "h", x, torch.tanh, bias=False)
    z = dense(P, "z", h)
    g = dense(P, "g", h, sig, bias=False)
    return (mse(z, y) + sse(h, y) + xent(torch.softmax(z, -1), y) + sxent(z, y) + bce(g, y)
            + 0.1 * torch.logsumexp(h, -1) + M(torch.log_softmax(z, -1) * y)
            + 0.5 * M(h) + S(torch.softmax(h, -1) * y)), torch.softmax(z, -1)


def m_conv(P, x, y):
    c = conv(P, "c", x, stride=2, padding=1, act=torch.tanh)
    p = F.max_pool2d(c, 3, stride=2)
    c2 = conv(P, "c2", x, bias=False)
    q = F.avg_pool2d(c2, 3, stride=2)
    c3 = conv(P, "c3", x, stride=3, padding=2, act=torch.relu)
    z = dense(P, "z1", flat(p)) + dense(P, "z2", flat(q), sig) + dense(P, "z3", flat(c3), bias=False)
    return sxent(z, y), torch.softmax(z, -1)


def m_adamclip(P, x, y):
    h = dense(P, "h", x, F.softplus)
    o = dense(P, "o", h, lambda t: F.leaky_relu(t, 0.2))
    return sse(o, y) + 0.1 * mse(h, 1), o


def m_sgdplain(P, x, y):
    o = dense(P, "o", dense(P, "h", x, torch.relu), torch.tanh)
    return mse(o, y), o


def m_ties(P, x, y):
    a, b, c, t = P["a"], P["b"], P["c"], P["t"]
    mx = lambda p, q: torch.where(p >= q, p, q)        # LANGUAGE.md §7: ties go to the first
    mn = lambda p, q: torch.where(p <= q, p, q)
    x4 = (x.reshape(-1, 4, 4) @ y.unsqueeze(-1)).squeeze(-1)
    q = F.max_pool2d((t + x).reshape(-1, 1, 4, 4), 2, stride=1)   # first maximum on CPU
    return (S(y * (mx(a, b) + 2 * mn(b, a) + 3 * mx(x4, a) + torch.relu(a) + torch.abs(b)
                   + torch.relu(x4 + b)))
            + S(y * (c ** 3 + c ** -1 + c ** 2)) + S(q * flat(q).reshape(-1, 1, 3, 3))), q


def m_stable(P, x, y):
    z = P["w"] * x
    return (sxent(z, y) + 0.01 * torch.logsumexp(z, -1) - S(y * torch.log_softmax(z, -1))
            + 0.01 * S(F.softplus(z)) + S(y * sig(z)) + S(y * torch.tanh(z))
            + S(torch.softmax(z, -1) * y)), torch.softmax(z, -1)


def U(lo, hi):
    return lambda r, b, shape: r.uniform(lo, hi, (b,) + shape)


# name: (file, forward, input shape, x generator, target generator or None[, steps = 3])
EX = "examples/"
OR = "tests/oracle/models/"
MODELS = {
    "seed": (EX + "seed.nn", m_seed, (2,), U(-1, 1), lambda r, b: r.uniform(0, 1, (b, 2))),
    "three_layer": (EX + "three_layer.nn", m_three_layer, (4,), U(-1, 1), lambda r, b: r.uniform(0, 1, (b, 3))),
    "xor": (EX + "xor.nn", m_xor, (2,), U(0, 1), lambda r, b: r.integers(0, 2, (b, 1)).astype(float)),
    "curve": (EX + "curve.nn", m_curve, (1,), U(-3, 3), lambda r, b: r.normal(0, 1, (b, 1))),
    "explicit": (EX + "explicit.nn", m_explicit, (4,), U(-1, 1), lambda r, b: r.normal(0, 1, (b, 4))),
    "linear4": (EX + "linear4.nn", m_linear4, (4,), U(-1, 1), lambda r, b: r.normal(0, 1, (b, 4))),
    "neuron": (EX + "neuron.nn", m_neuron, (1,), U(-2, 2), lambda r, b: r.uniform(0, 1, (b, 1))),
    "handwritten": (EX + "handwritten.nn", m_handwritten, (256,), U(0, 1), lambda r, b: onehot(r, b, 10)),
    "mnist": (EX + "mnist.nn", m_mnist, (784,), U(0, 1), lambda r, b: onehot(r, b, 10)),
    "fashion": (EX + "fashion.nn", m_fashion, (784,), U(0, 1), lambda r, b: onehot(r, b, 10)),
    "fashion_cnn": (EX + "fashion_cnn.nn", m_fashion_cnn, (1, 28, 28), U(0, 1), lambda r, b: onehot(r, b, 10)),
    "autoencoder": (EX + "autoencoder.nn", m_autoencoder, (784,), U(0.05, 0.95), None),
    "elementwise": (OR + "elementwise.nn", m_elementwise, (6,), U(0.5, 2), lambda r, b: r.uniform(-1, 1, (b, 6))),
    "shapes": (OR + "shapes.nn", m_shapes, (3, 4), U(-1, 1), lambda r, b: r.normal(0, 1, (b, 4))),
    "reductions": (OR + "reductions.nn", m_reductions, (5,), U(-1, 1), lambda r, b: probs(r, b, 5)),
    "conv": (OR + "conv.nn", m_conv, (2, 9, 9), U(-1, 1), lambda r, b: onehot(r, b, 3)),
    "adamclip": (OR + "adamclip.nn", m_adamclip, (3,), U(-1, 1), lambda r, b: r.normal(0, 1, (b, 2))),
    "ties": (OR + "ties.nn", m_ties, (16,), lambda r, b, shape: np.zeros((b,) + shape),
             lambda r, b: r.uniform(0.5, 1.5, (b, 4)), 1),   # one step: later ties are rounding
    "stable": (OR + "stable.nn", m_stable, (4,), U(-90, 90), lambda r, b: probs(r, b, 4)),
    "sgdplain": (OR + "sgdplain.nn", m_sgdplain, (4,), U(-1, 1), lambda r, b: r.uniform(-1, 1, (b, 2))),
}


# ---------------------------------------------------------------- the train statement
def parse_train(path):
    src = re.sub(r"#[^\n]*", "", open(path).read())
    m = re.search(r"\btrain\s+(\w+)\s*\((.*?)\)\s*;", src, re.S)
    opt, args = m.group(1), {}
    for kv in m.group(2).split(","):
        k, v = (s.strip() for s in kv.split("="))
        args[k] = {"true": 1.0, "false": 0.0}.get(v, v if v in ("mean", "sum") else None)
        if args[k] is None:
            args[k] = float(v)
    return opt, args


def torch_optimizer(opt, a, params):
    if opt == "sgd":
        return torch.optim.SGD(params, lr=a["lr"], momentum=a.get("momentum", 0.0),
                               nesterov=bool(a.get("nesterov", 0.0)),
                               weight_decay=a.get("weight_decay", 0.0))
    return torch.optim.AdamW(params, lr=a["lr"], betas=(a.get("beta1", 0.9), a.get("beta2", 0.999)),
                             eps=a.get("eps", 1e-8), weight_decay=a.get("weight_decay", 0.0))


def rel(a, b, s=0.0):
    """max |a - b| relative to max |b| (or to s if larger)"""
    a = np.asarray(a, np.float64); b = np.asarray(b, np.float64)
    d = np.max(np.abs(a - b)) if a.size else 0.0
    s = max(s, np.max(np.abs(b)) if b.size else 0.0)
    return d / s if s > 0 else d


# ---------------------------------------------------------------- one model
def check(name, nnc, src, work):
    path, fwd, xshape, xgen, ygen = MODELS[name][:5]
    nsteps = MODELS[name][5] if len(MODELS[name]) > 5 else 3
    so = os.path.join(work, name + ".so")
    subprocess.run([nnc, os.path.join(src, path), "-o", so], check=True)
    lib = ctypes.CDLL(so)
    lib.nnc_model_entry.restype = ctypes.POINTER(ModelInfo)
    info = lib.nnc_model_entry().contents
    assert info.abi_version == 1
    n = info.param_count
    m = info.create(42)
    assert m
    pv = np.ctypeslib.as_array(info.params(m), shape=(n,))
    tensors = []
    for i in range(info.n_tensors):
        t = info.tensors[i]
        tensors.append((t.name.decode(), tuple(t.shape[:t.rank]) if t.rank else (), t.offset))

    def so_tensors(vec):
        out = {}
        for nm, sh, off in tensors:
            cnt = int(np.prod(sh)) if sh else 1
            out[nm] = np.array(vec[off:off + cnt], np.float64).reshape(sh)
        return out

    P = {k: torch.tensor(v, requires_grad=True) for k, v in so_tensors(pv).items()}
    order = [nm for nm, _, _ in tensors]
    opt, args = parse_train(os.path.join(src, path))
    red = args.get("reduce", "mean")
    clip = args.get("clip")
    r = np.random.default_rng(zlib.crc32(name.encode()) + SEED)
    assert info.input_size == int(np.prod(xshape)), (info.input_size, xshape)

    def batch():
        x = xgen(r, BATCH, xshape)
        y = ygen(r, BATCH) if ygen else None
        xf = np.ascontiguousarray(x.reshape(BATCH, -1), np.float32)
        yf = np.ascontiguousarray(y.reshape(BATCH, -1), np.float32) if y is not None else None
        # the oracle sees exactly the float32 values the .so sees
        xt = torch.tensor(xf.astype(np.float64)).reshape((BATCH,) + xshape)
        yt = torch.tensor(yf.astype(np.float64)) if yf is not None else None
        return xf, yf, xt, yt

    def objective(xt, yt, want_output=False):
        per, out = fwd(P, xt, yt)
        assert per.shape == (BATCH,), per.shape
        obj = per.sum() if red == "sum" else per.mean()
        return (obj, out) if want_output else obj

    worst = {"loss": 0.0, "output": 0.0, "grad": 0.0, "step": 0.0}
    fails = []

    def note(kind, what, e):
        worst[kind] = max(worst[kind], e)
        if not e <= TOL:
            fails.append("%s %s: rel error %.3g" % (kind, what, e))

    # (a) loss and (b) grad
    xf, yf, xt, yt = batch()
    L = info.loss(m, fptr(xf), fptr(yf), BATCH)
    obj, out = objective(xt, yt, True)
    note("loss", "loss()", rel(L, obj.item()))
    po = np.zeros(BATCH * info.output_size, np.float32)
    info.predict(m, fptr(xf), fptr(po), BATCH)
    note("output", "predict()", rel(po, out.detach().numpy().reshape(-1)))
    g = np.zeros(n, np.float32)
    Lg = info.grad(m, fptr(xf), fptr(yf), BATCH, fptr(g))
    note("loss", "grad() return", rel(Lg, obj.item()))
    lscale = abs(obj.item())
    tg = torch.autograd.grad(obj, [P[k] for k in order], allow_unused=True)
    gs = so_tensors(g)
    for k, t in zip(order, tg):
        note("grad", k, rel(gs[k], t.numpy() if t is not None else np.zeros_like(gs[k])))

    # (c) three train steps
    o = torch_optimizer(opt, args, [P[k] for k in order])
    # Adam divides g by sqrt(v) + eps: where an exact gradient entry is ~eps (1e-8), the float32
    # rounding of g (harmless, checked in (b)) changes that entry's step by up to lr. So Adam's
    # float64 steps of the big models are fed the .so's own float32 gradient.
    so_grad = opt == "adam" and n > 1000      # small Adam models: fully independent
    clipped = 0
    # a parameter's error is relative to its max |entry| so far on the trajectory: a bias that
    # starts at 0 and comes back near 0 (two steps that cancel) is not a relative-error test
    scale = {k: float(P[k].detach().abs().max()) for k in order}
    for step in range(1, nsteps + 1):
        xf, yf, xt, yt = batch()
        if so_grad:     # the gradient train_step is about to use (ABI: train_step == grad + apply)
            gg = np.zeros(n, np.float32)
            info.grad(m, fptr(xf), fptr(yf), BATCH, fptr(gg))
            gg = so_tensors(gg)
        prev = {k: P[k].detach().numpy().copy() for k in order}
        if step == 3:   # set_lr: the new rate applies from the next update on (also to AdamW's decay)
            info.set_lr(m, args["lr"] * 0.5)
            for grp in o.param_groups:
                grp["lr"] = float(np.float32(args["lr"] * 0.5))
        if step == 2:   # grad() + apply() must do what train_step() does
            g2 = np.zeros(n, np.float32)
            L = info.grad(m, fptr(xf), fptr(yf), BATCH, fptr(g2))
            info.apply(m, fptr(g2))
        else:
            L = info.train_step(m, fptr(xf), fptr(yf), BATCH)
        o.zero_grad()
        obj = objective(xt, yt)
        obj.backward()
        for k in order:
            if P[k].grad is None:
                P[k].grad = torch.zeros_like(P[k])
            if so_grad:
                P[k].grad = torch.tensor(gg[k])
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_([P[k] for k in order], clip)
            clipped += int(norm.item() > clip)
        o.step()
        # relative to the largest objective so far: a fit that is nearly perfect makes the loss
        # a cancellation ((o - y)^2 with o ~ y), not a relative-error test
        lscale = max(lscale, abs(obj.item()))
        note("loss", "train_step %d return" % step, rel(L, obj.item(), lscale))
        ps = so_tensors(pv)
        for k in order:
            if step == 1 and opt == "adam" and so_grad:
                # fed the same gradient, Adam's first update is lr * g / (|g| + eps) (times
                # 1 - lr * wd): exact up to a float32 rounding of p (+ 2e-6 of the update), bias corrections included
                d = np.abs(ps[k] - P[k].detach().numpy())
                allowed = np.spacing(np.abs(ps[k]).astype(np.float32)) + 2e-6 * np.abs(P[k].detach().numpy() - prev[k])
                note("step", "step 1 %s (Adam first update: error / allowed x 1e-4)" % k,
                     TOL * float(np.max(d / allowed)))
            scale[k] = max(scale[k], float(P[k].detach().abs().max()))
            note("step", "step %d %s" % (step, k), rel(ps[k], P[k].detach().numpy(), scale[k]))
    info.destroy(m)
    extra = " [steps fed the .so gradient]" if so_grad else ""
    extra += " (clip active in %d/%d steps)" % (clipped, nsteps) if clip is not None else ""
    print("%-12s %-5s %-4s params %-7d max rel err: loss %.2e out %.2e grad %.2e step %.2e%s  %s"
          % (name, opt, red, n, worst["loss"], worst["output"], worst["grad"], worst["step"], extra,
             "ok" if not fails else "MISMATCH"))
    for f in fails[:12]:
        print("    " + f)
    return not fails


def main():
    nnc, src, work = sys.argv[1:4]
    names = sys.argv[4:] or list(MODELS)
    bad = [nm for nm in names if not check(nm, nnc, src, work)]
    if bad:
        print("MISMATCH in: " + " ".join(bad))
        return 1
    print("all %d models match the float64 torch oracle" % len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
