#!/usr/bin/env python3
"""make_graph.py — small ONNX models written byte by byte (a minimal protobuf
encoder of onnx.proto's fields, so that no onnx package is needed) for the
tests of `fewmul import --onnx` (tests/cli_onnx_import.sh) and the fuzz
target's seeds (tests/fuzz/fuzz_onnx_import.c): a binary MLP of standard
operators as another tool would write it (no fewmul metadata), and graphs
that each break one thing the importer checks.
Usage: make_graph.py CASE OUT      (CASE: see CASES below)
"""
import random
import struct
import sys


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def s(num, text):
    return field(num, 2, text.encode() if isinstance(text, str) else text)


def i(num, n):
    return field(num, 0, n)


def tensor(name, dims, values):
    raw = struct.pack("<%df" % len(values), *values)
    return b"".join(i(1, d) for d in dims) + i(2, 1) + s(8, name) + s(9, raw)


def attr_int(name, n):
    return s(1, name) + i(3, n) + i(20, 2)


def attr_ints(name, ns):
    return s(1, name) + b"".join(i(8, n) for n in ns) + i(20, 7)


def node(op, inputs, outputs, name=None, attrs=(), domain=None):
    b = b"".join(s(1, x) for x in inputs) + b"".join(s(2, x) for x in outputs)
    b += s(3, name or op + "_" + outputs[0]) + s(4, op)
    b += b"".join(s(5, a) for a in attrs)
    if domain:
        b += s(7, domain)
    return b


def value_info(name, dims):
    shape = b""
    for d in dims:
        shape += s(1, s(2, d) if isinstance(d, str) else i(1, d))
    return s(1, name) + s(2, s(1, i(1, 1) + s(2, shape)))


def model(nodes, inits, inputs, outputs, graph=True):
    g = b"".join(s(1, n) for n in nodes) + s(2, "g")
    g += b"".join(s(5, t) for t in inits)
    g += b"".join(s(11, v) for v in inputs) + b"".join(s(12, v) for v in outputs)
    m = i(1, 7) + s(2, "make_graph.py") + s(8, s(1, "") + i(2, 13))
    return m + (s(7, g) if graph else b"")


# the last layer's scale and offset: exact in float32, and few ties of scores
S2 = [1.0 + k / 64 for k in range(10)]
O2 = [(k % 3) / 128 for k in range(10)]


def mlp_weights(n_in=16, hidden=8, classes=10, seed=1, weights="binary"):
    """The weights mlp() writes, in its order: w1, s1, o1, w2."""
    rnd = random.Random(seed)

    def w(n):
        if weights == "binary":
            return [rnd.choice((-1.0, 1.0)) for _ in range(n)]
        if weights == "ternary":
            return [rnd.choice((-1.0, 0.0, 1.0)) for _ in range(n)]
        return [rnd.uniform(-1, 1) for _ in range(n)]

    w1 = w(n_in * hidden)
    s1 = [rnd.uniform(0.5, 1.5) for _ in range(hidden)]
    o1 = [rnd.uniform(-1, 1) for _ in range(hidden)]
    w2 = w(hidden * classes)
    return w1, s1, o1, w2



def top_two(h, w2, hidden, classes):
    """The class of the hidden signs h through the output layer (w2, S2, O2; ties
    to the lower class) and its margin over the second score."""
    sc = [sum(h[i] * w2[i * classes + k] for i in range(hidden)) * S2[k] + O2[k] for k in range(classes)]
    best = max(range(classes), key=lambda k: (sc[k], -k))
    second = max(sc[k] for k in range(classes) if k != best)
    return best, sc[best] - second

def predict(images, n_in=16, hidden=8, classes=10):
    """The binary MLP's classes and top-two margins in float64, pixels as they
    are (no scaling, no mean): the sign is +1 at z >= 0."""
    w1, s1, o1, w2 = mlp_weights()
    out = []
    for x in images:
        h = []
        for j in range(hidden):
            z = sum(x[i] * w1[i * hidden + j] for i in range(n_in)) * s1[j] + o1[j]
            h.append(1.0 if z >= 0 else -1.0)
        out.append(top_two(h, w2, hidden, classes))
    return out


def mlp(n_in=16, hidden=8, classes=10, seed=1, weights="binary", act="sign", dims=None, w1_dims=None,
        extra_nodes=(), second_reader=False, op_override=None):
    """[batch, n_in] -> MatMul(+-1) -> Mul -> Add -> sign -> MatMul -> Mul -> Add -> scores."""
    w1, s1, o1, w2 = mlp_weights(n_in, hidden, classes, seed, weights)
    if w1_dims:
        w1 = w1[:w1_dims[0] * w1_dims[1]]
    inits = [tensor("w1", w1_dims or [n_in, hidden], w1), tensor("s1", [hidden], s1),
             tensor("o1", [hidden], o1), tensor("w2", [hidden, classes], w2),
             tensor("s2", [classes], S2[:classes]), tensor("o2", [classes], O2[:classes]),
             tensor("zero", [], [0.0]), tensor("one", [], [1.0]), tensor("minus_one", [], [-1.0])]
    nodes = [node("MatMul", ["x", "w1"], ["a1"], name="fc1"), node("Mul", ["a1", "s1"], ["m1"]),
             node("Add", ["m1", "o1"], ["z1"])]
    if act == "sign":
        nodes += [node("GreaterOrEqual", ["z1", "zero"], ["ge1"]),
                  node("Where", ["ge1", "one", "minus_one"], ["h1"])]
    else:
        nodes += [node(act, ["z1"], ["h1"], name="act1")]
    nodes += [node("MatMul", ["h1", "w2"], ["a2"], name="fc2"), node("Mul", ["a2", "s2"], ["m2"]),
              node("Add", ["m2", "o2"], ["scores"])]
    nodes += list(extra_nodes)
    if second_reader:
        nodes.append(node("Relu", ["z1"], ["dangling"], name="second_reader"))
    return model(nodes, inits, [value_info("x", dims or ["batch", n_in])],
                 [value_info("scores", ["batch", classes])])


def gemm_mlp(n_in=16, hidden=8, classes=10):
    """The same weights as PyTorch writes them: Gemm (transB = 1, a bias),
    BatchNormalization, ONNX's Sign, then Gemm without bias, Mul, Add."""
    w1, s1, o1, w2 = mlp_weights(n_in, hidden, classes)
    w1t = [w1[i * hidden + j] for j in range(hidden) for i in range(n_in)]
    w2t = [w2[i * classes + k] for k in range(classes) for i in range(hidden)]
    inits = [tensor("w1", [hidden, n_in], w1t), tensor("b1", [hidden], o1),
             tensor("gamma", [hidden], s1), tensor("beta", [hidden], BN_BETA[:hidden]),
             tensor("mean", [hidden], BN_MEAN[:hidden]), tensor("var", [hidden], BN_VAR[:hidden]),
             tensor("w2", [classes, hidden], w2t), tensor("s2", [classes], S2[:classes]),
             tensor("o2", [classes], O2[:classes])]
    bn_attr = s(1, "epsilon") + b"\x15" + struct.pack("<f", 1e-5) + i(20, 1)
    nodes = [node("Gemm", ["x", "w1", "b1"], ["a1"], name="fc1", attrs=[attr_int("transB", 1)]),
             node("BatchNormalization", ["a1", "gamma", "beta", "mean", "var"], ["z1"], name="bn1",
                  attrs=[bn_attr]),
             node("Sign", ["z1"], ["h1"], name="sign1"),
             node("Gemm", ["h1", "w2"], ["a2"], name="fc2", attrs=[attr_int("transB", 1)]),
             node("Mul", ["a2", "s2"], ["m2"]), node("Add", ["m2", "o2"], ["scores"])]
    return model(nodes, inits, [value_info("x", ["batch", n_in])], [value_info("scores", ["batch", classes])])


BN_BETA = [(k % 5 - 2) / 8 for k in range(8)]
BN_MEAN = [(k % 3) - 1.0 for k in range(8)]
BN_VAR = [1.0 + k / 4 for k in range(8)]


def predict_gemm(images, n_in=16, hidden=8, classes=10):
    """gemm_mlp's classes in float64, fewmul's sign (+1 at 0)."""
    w1, s1, o1, w2 = mlp_weights()
    out = []
    for x in images:
        h = []
        for j in range(hidden):
            a = sum(x[i] * w1[i * hidden + j] for i in range(n_in)) + o1[j]
            z = (a - BN_MEAN[j]) / (BN_VAR[j] + 1e-5) ** 0.5 * s1[j] + BN_BETA[j]
            h.append(1.0 if z >= 0 else -1.0)
        out.append(top_two(h, w2, hidden, classes))
    return out


CASES = {
    "gemm-mlp": lambda: gemm_mlp(),
    "binary-mlp": lambda: mlp(),
    "ternary-mlp": lambda: mlp(weights="ternary", act="Relu"),
    "real-mlp": lambda: mlp(weights="real", act="Relu"),
    "unknown-op": lambda: mlp(act="Tanh"),
    "no-graph": lambda: model([], [], [], [], graph=False),
    "wrong-shape": lambda: mlp(w1_dims=[15, 8]),
    "dynamic-shape": lambda: mlp(dims=["batch", "features"]),
    "two-readers": lambda: mlp(second_reader=True),
}

if __name__ == "__main__":
    if sys.argv[1] in ("predict", "predict-gemm"):  # IDX_IMAGES: "CLASS MARGIN" per image
        data = open(sys.argv[2], "rb").read()
        n, dim = struct.unpack(">I", data[4:8])[0], 16
        rows = [list(data[16 + k * dim:16 + (k + 1) * dim]) for k in range(n)]
        for best, margin in (predict if sys.argv[1] == "predict" else predict_gemm)(rows):
            print(best, margin)
        sys.exit(0)
    case, out = sys.argv[1], sys.argv[2]
    data = CASES[case]()
    open(out, "wb").write(data)
