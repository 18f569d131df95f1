#!/usr/bin/env python3
"""check.py — checks a model of `fewmul export --onnx` (tests/cli_onnx.sh):
onnx.checker accepts it; its operators are the dialect's (plain: the standard
domain only; qonnx: every weight tensor of codes read through BipolarQuant or
IntQuant of qonnx.custom_op.general, no sign as a compare and a select); and,
with IMAGES, the graph run by a small numpy interpreter of its operators
(QONNX's quantizers as their specification defines them) predicts the classes
of INFER_JSON (fewmul infer --show) on the first N images.

Usage: check.py MODEL.onnx plain|qonnx [IMAGES.raw INFER_JSON N]"""
import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper

QONNX = "qonnx.custom_op.general"


def run(model, x):
    g = model.graph
    env = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in g.initializer}
    env[g.input[0].name] = x
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
            k, s = a["kernel_shape"], a["strides"]
            N, C, H, W = i[0].shape
            oh, ow = (H - k[0]) // s[0] + 1, (W - k[1]) // s[1] + 1
            y = np.full((N, C, oh, ow), -np.inf, np.float32)
            for dy in range(k[0]):
                for dx in range(k[1]):
                    y = np.maximum(y, i[0][:, :, dy:dy + s[0] * oh:s[0], dx:dx + s[1] * ow:s[1]])
        elif op == "Conv":
            w, (kh, kw), s, p = i[1], a["kernel_shape"], a["strides"], a["pads"]
            xp = np.pad(i[0], ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
            N, C, H, W = xp.shape
            oh, ow = (H - kh) // s[0] + 1, (W - kw) // s[1] + 1
            y = np.zeros((N, w.shape[0], oh, ow), np.float32)
            for ky in range(kh):
                for kx in range(kw):
                    patch = xp[:, :, ky:ky + s[0] * oh:s[0], kx:kx + s[1] * ow:s[1]]
                    y += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
        else:
            sys.exit("no interpreter for %s" % op)
        env[n.output[0]] = np.asarray(y, np.float32)
    return env[g.output[0].name]


def main():
    path, dialect = sys.argv[1], sys.argv[2]
    model = onnx.load(path)
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
