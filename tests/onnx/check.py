#!/usr/bin/env python3
"""check.py — checks a model of `fewmul export --onnx` (tests/cli_onnx.sh):
onnx.checker accepts it; its operators are the dialect's (plain: the standard
domain only; qonnx: every weight tensor of codes read through BipolarQuant or
IntQuant of qonnx.custom_op.general, no sign as a compare and a select); and,
with IMAGES, the graph run by a small numpy interpreter of its operators
(QONNX's quantizers as their specification defines them) predicts the classes
of INFER_JSON (fewmul infer --show) on the first N images.

With --ties, instead: for each image listed (where onnxruntime and fewmul infer
disagree), the graph run in float64 with, beside every value, the sum of the
magnitudes of the terms that made it; prints the images whose prediction rests
on a rounding tie (a sign's input, or the gap between the two largest scores,
within TIE times that magnitude: float32 sums in another order can land on
either side), and fails if any listed image does not.

Usage: check.py MODEL.onnx plain|qonnx [IMAGES.raw INFER_JSON N]
       check.py MODEL.onnx --ties IMAGES.raw I,J,..."""
import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper

QONNX = "qonnx.custom_op.general"
TIE = 1e-6


def run(model, x, dtype=np.float32, ties=None):
    """The graph's output on x. With ties (a list), float64 magnitudes ride
    along and ties gets the smallest relative margin of a sign per example."""
    g = model.graph
    env = {t.name: numpy_helper.to_array(t).astype(dtype) for t in g.initializer}
    env[g.input[0].name] = x.astype(dtype)
    mag = {name: np.abs(v) for name, v in env.items()}
    # values whose float sums depend on the order of the additions (a sum
    # of +-1 products is an exact integer in any order, as are its scaled
    # and offset values, rounded alike by both)
    inexact = {g.input[0].name}
    margin = np.full(x.shape[0], np.inf)
    for n in g.node:
        a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
        i = [env[name] for name in n.input]
        op = n.op_type
        if op == "Mul":
            y = i[0] * i[1]
        elif op == "Sub":
            y = i[0] - i[1]
        elif op == "Add":
            y = i[0] + i[1]
        elif op == "MatMul":
            y = i[0] @ i[1]
        elif op == "Transpose":
            y = np.transpose(i[0], a["perm"])
        elif op == "Flatten":
            y = i[0].reshape(i[0].shape[0], -1)
        elif op == "Relu":
            y = np.maximum(i[0], 0)
        elif op == "GreaterOrEqual":
            y = i[0] >= i[1]
        elif op == "Where":
            y = np.where(i[0], i[1], i[2])
        elif op == "BipolarQuant":
            y = np.where(i[0] >= 0, 1.0, -1.0).astype(np.float32) * i[1]
        elif op == "IntQuant":
            scale, zeropt, bits = i[1], i[2], int(i[3])
            lo = -(2 ** (bits - 1)) + (1 if a.get("narrow", 0) else 0)
            hi = 2 ** (bits - 1) - 1
            y = (np.round(np.clip(i[0] / scale + zeropt, lo, hi)) - zeropt) * scale
        elif op == "GlobalAveragePool":
            y = i[0].mean(axis=(2, 3), keepdims=True)
        elif op == "MaxPool":
            y = pool(i[0], a)
        elif op == "Conv":
            y = conv(i[0], i[1], a)
        else:
            sys.exit("no interpreter for %s" % op)
        env[n.output[0]] = np.asarray(y, dtype)
        if ties is not None:
            if op in ("MatMul", "Conv"):
                if n.input[0] in inexact or not np.all(i[1] == np.round(i[1])):
                    inexact.add(n.output[0])
            elif op == "GlobalAveragePool" or (op not in ("GreaterOrEqual", "Where", "BipolarQuant", "IntQuant")
                                               and n.input[0] in inexact):
                inexact.add(n.output[0])
            if op in ("GreaterOrEqual", "BipolarQuant") and n.input[0] in inexact:
                rel = np.abs(i[0]) / np.maximum(mag[n.input[0]], 1e-30)
                margin = np.minimum(margin, rel.reshape(rel.shape[0], -1).min(axis=1))
            mag[n.output[0]] = magnitude(op, a, [mag.get(name) for name in n.input], i, env[n.output[0]])
    out = env[g.output[0].name]
    if ties is not None:
        top = np.sort(out, axis=1)
        best = np.argmax(out, axis=1)
        gap = (top[:, -1] - top[:, -2]) / np.maximum(mag[g.output[0].name][np.arange(len(best)), best], 1e-30)
        ties.extend(np.minimum(margin, gap))
    return out


def magnitude(op, a, m, i, y):
    """The sum of the magnitudes of the terms of an operator's output, from
    its inputs' (m) and values (i): what bounds its float rounding."""
    if op in ("MatMul", "Conv"):
        return conv_or_matmul(op, a, m[0], np.abs(i[1]))
    if op == "Mul":
        return m[0] * np.abs(i[1])
    if op in ("Add", "Sub"):
        return m[0] + m[1]
    if op == "Transpose":
        return np.transpose(m[0], a["perm"])
    if op == "Flatten":
        return m[0].reshape(m[0].shape[0], -1)
    if op == "Relu":
        return m[0]
    if op == "MaxPool":
        return pool(m[0], a)
    if op == "GlobalAveragePool":
        return m[0].mean(axis=(2, 3), keepdims=True)
    return np.abs(y)  # a sign's or quantizer's output: exact values


def conv_or_matmul(op, a, x, w):
    if op == "MatMul":
        return x @ w
    return conv(x, w, a)


def pool(x, a):
    k, s = a["kernel_shape"], a["strides"]
    N, C, H, W = x.shape
    oh, ow = (H - k[0]) // s[0] + 1, (W - k[1]) // s[1] + 1
    y = np.full((N, C, oh, ow), -np.inf, x.dtype)
    for dy in range(k[0]):
        for dx in range(k[1]):
            y = np.maximum(y, x[:, :, dy:dy + s[0] * oh:s[0], dx:dx + s[1] * ow:s[1]])
    return y


def conv(x, w, a):
    (kh, kw), s, p = a["kernel_shape"], a["strides"], a["pads"]
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    N, C, H, W = xp.shape
    oh, ow = (H - kh) // s[0] + 1, (W - kw) // s[1] + 1
    y = np.zeros((N, w.shape[0], oh, ow), x.dtype)
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky:ky + s[0] * oh:s[0], kx:kx + s[1] * ow:s[1]]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
    return y


def images_of(model, path, index):
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    size = int(np.prod(dims))
    data = np.frombuffer(open(path, "rb").read(), np.uint8)
    return np.stack([data[k * size:(k + 1) * size] for k in index]).astype(np.float64).reshape([len(index)] + dims)


def explain_ties(model, images, listed):
    index = [int(v) for v in listed.split(",")]
    ties = []
    run(model, images_of(model, images, index), np.float64, ties)
    unexplained = [(k, t) for k, t in zip(index, ties) if t > TIE]
    for k, t in zip(index, ties):
        print("image %d: smallest relative margin %.2g%s" % (k, t, "" if t <= TIE else " (no tie)"))
    if unexplained:
        sys.exit("%d of %d differences are not at a rounding tie" % (len(unexplained), len(index)))


def main():
    path, dialect = sys.argv[1], sys.argv[2]
    model = onnx.load(path)
    if dialect == "--ties":
        return explain_ties(model, sys.argv[3], sys.argv[4])
    onnx.checker.check_model(model)
    ops = [(n.domain, n.op_type) for n in model.graph.node]
    custom = [op for d, op in ops if d]
    if dialect == "plain" and custom:
        sys.exit("plain graph with custom operators %s" % sorted(set(custom)))
    if dialect == "qonnx":
        if any(d != QONNX for d, _ in ops if d):
            sys.exit("operators of another domain")
        # every weight tensor of codes (+-1, or -1, 0, +1) goes through its quantizer
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for n in model.graph.node:
            if n.op_type in ("MatMul", "Conv") and n.input[1] in inits and \
                    np.isin(inits[n.input[1]], (-1.0, 0.0, 1.0)).all():
                sys.exit("%s reads the codes %s without a quantizer" % (n.name, n.input[1]))
        if any(op in ("GreaterOrEqual", "Where") for _, op in ops):
            sys.exit("a sign as a compare and a select, not BipolarQuant")
    msg = "%d nodes (%s)" % (len(ops), ", ".join(sorted(set(op for _, op in ops))))
    if len(sys.argv) > 3:
        images, infer, n = sys.argv[3], sys.argv[4], int(sys.argv[5])
        want = json.loads(open(infer).read().splitlines()[-1])["shown_classes"][:n]
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
        x = np.frombuffer(open(images, "rb").read(), np.uint8)[:n * int(np.prod(dims))]
        x = x.astype(np.float32).reshape([n] + dims)
        got = run(model, x).argmax(axis=1)
        differ = int((got != np.array(want)).sum())
        if differ:
            sys.exit("%d of %d predictions differ from fewmul infer's" % (differ, n))
        msg += "; %d images predicted as fewmul infer does" % n
    print(msg)


main()
