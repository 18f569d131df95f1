"""fewmul: Python over the C library libfewmul.so (include/fewmul.h).

A thin layer: numpy arrays in and out, keyword arguments named after the
options of `fewmul train` and `fewmul energy` (dashes as underscores), and
every failure of the library raised as FewmulError carrying fm_last_error()'s
message and code. Training, evaluation, prediction, files, checkpoints and
the energy ledger are all the library's; nothing here computes them.
python/README.md documents the API."""
import os

import numpy as np

from ._ffi import ERRORS, FM_ENERGY_UNBOUNDED, FM_LANDAUER_J_PER_BIT, ffi, lib, library_path

FM_LEDGER_NETWORK, FM_OP_KINDS, FM_PHASES = lib.FM_LEDGER_NETWORK, lib.FM_OP_KINDS, lib.FM_PHASES
FM_QB_UNBOUNDED, PREPROC_CACHE_DEFAULT_MIB = lib.FM_QB_UNBOUNDED, lib.FM_PREPROC_CACHE_DEFAULT_MIB

__all__ = ["FewmulError", "Model", "PackedModel", "Checkpoint", "train", "energy", "load_data",
           "read_idx", "kernels", "onnx_available", "library_path", "version"]
version = "0.1.0"

# ---- errors -----------------------------------------------------------------

ERROR_NAMES = ERRORS
EINVAL, EMISMATCH = (next(v for v, n in ERRORS.items() if n == name)
                     for name in ("FM_EINVAL", "FM_EMISMATCH"))


class FewmulError(Exception):
    """A failure of the library (or an argument refused before calling it):
    .code is the FM_E* code (negative int), .code_name its name ("FM_EINVAL"),
    .message fewmul's one-line message (fm_last_error())."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.code_name = ERROR_NAMES.get(code, str(code))
        self.message = message


def _string(p):
    return ffi.string(p).decode("utf-8", "replace") if p != ffi.NULL else None


def _check(rc):
    """Raises the library's last error when rc is a negative FM_E* code."""
    if rc < 0:
        raise FewmulError(rc, _string(lib.fm_last_error()))
    return rc


def _refuse(message, code=EINVAL):
    raise FewmulError(code, message)


# ---- images -----------------------------------------------------------------


class _Images:
    """An fm_images view of numpy arrays (no copy when they are already
    contiguous uint8); keeps them alive as long as the view."""

    def __init__(self, images, labels=None, what="images"):
        x = np.asarray(images)
        if x.dtype != np.uint8:
            _refuse("%s: pixels must be uint8 (0..255), got %s" % (what, x.dtype))
        if x.ndim == 2:
            shape = (x.shape[1], 1, 1)
        elif x.ndim == 3:
            shape = (x.shape[1], x.shape[2], 1)
        elif x.ndim == 4:
            shape = x.shape[1:]
        else:
            _refuse("%s: expected an N x H x W x C, N x H x W or N x D array, got %d dimension%s"
                    % (what, x.ndim, "" if x.ndim == 1 else "s"))
        if x.shape[0] < 1 or min(shape) < 1:
            _refuse("%s: %s holds no image" % (what, "x".join(map(str, x.shape))))
        if x.shape[0] > 2**31 - 1 or int(np.prod(shape)) > 2**31 - 1:
            _refuse("%s: %s is too large" % (what, "x".join(map(str, x.shape))))
        self.pixels = np.ascontiguousarray(x)
        self.count = x.shape[0]
        self.shape = tuple(int(s) for s in shape)
        if labels is None:
            self.labels = np.zeros(self.count, np.uint8)
        else:
            y = np.asarray(labels)
            if y.dtype != np.uint8:
                _refuse("%s: labels must be uint8, got %s" % (what, y.dtype))
            if y.shape != (self.count,):
                _refuse("%s: %d images but labels of shape %s" % (what, self.count, y.shape))
            self.labels = np.ascontiguousarray(y)
        self.c = ffi.new("fm_images *")
        self.c.count = self.count
        self.c.height, self.c.width, self.c.channels = self.shape
        self.c.pixels = ffi.cast("uint8_t *", ffi.from_buffer(self.pixels))
        self.c.labels = ffi.cast("uint8_t *", ffi.from_buffer(self.labels))

    def classes(self):
        return int(self.labels.max()) + 1


def _take_images(c):
    """Copies an fm_images the library filled into numpy arrays and frees it."""
    try:
        n, h, w, ch = c.count, c.height, c.width, c.channels
        x = np.frombuffer(ffi.buffer(c.pixels, n * h * w * ch), np.uint8).reshape(n, h, w, ch).copy()
        y = np.frombuffer(ffi.buffer(c.labels, n), np.uint8).copy()
        return x, y
    finally:
        lib.fm_images_free(c)


def read_idx(images_path, labels_path):
    """One IDX image file and its label file (raw or .gz), as fm_idx_read
    reads them: (N x H x W x 1 uint8 pixels, N uint8 labels)."""
    c = ffi.new("fm_images *")
    _check(lib.fm_idx_read(os.fsencode(images_path), os.fsencode(labels_path), c))
    return _take_images(c)


def load_data(spec="fashion", valid=None, seed=1234):
    """The train and test sets of a data spec as `fewmul train --data SPEC`
    loads them ("fashion", "mnist:DIR", "idx:DIR", "cifar10:DIR", "svhn:DIR"),
    with the data set's validation split made as the command makes it (SVHN's
    is class-balanced, picked with seed; valid None: the data set's default).
    Returns (train_images, train_labels, test_images, test_labels)."""
    train, test = ffi.new("fm_images *"), ffi.new("fm_images *")
    part = ffi.new("int32_t *")
    _check(lib.fm_data_load_parts(os.fsencode(spec), train, test, part))
    try:
        kind = ffi.new("fm_data_kind *")
        _check(lib.fm_data_kind_of(os.fsencode(spec), kind))
        if valid is None:
            v = ffi.new("int *")
            _check(lib.fm_data_defaults(kind[0], ffi.NULL, v))
            valid = v[0]
        labels = [np.frombuffer(ffi.buffer(s.labels, s.count), np.uint8) for s in (train, test)]
        classes = max(2, max(int(y.max()) + 1 for y in labels if y.size))
        _check(lib.fm_data_split_validation(kind[0], train, part[0], valid, classes, seed))
    except BaseException:
        lib.fm_images_free(train)
        lib.fm_images_free(test)
        raise
    return _take_images(train) + _take_images(test)


# ---- configuration: the options of `fewmul train` ---------------------------

_CHOICES = {
    "opt": {"sgd": lib.FM_OPT_SGD, "adam": lib.FM_OPT_ADAM, "bop": lib.FM_OPT_BOP},
    "loss": {"hinge": lib.FM_LOSS_HINGE, "xent": lib.FM_LOSS_XENT},
    "preproc": {"center": lib.FM_PRE_CENTER, "unit": lib.FM_PRE_UNIT,
                "gcn-zca": lib.FM_PRE_GCN_ZCA, "gcn-lcn": lib.FM_PRE_GCN_LCN},
    "bn_stats": {"paper": lib.FM_BN_PAPER, "running": lib.FM_BN_RUNNING},
    "scale": {"glorot": lib.FM_SCALE_GLOROT, "one": lib.FM_SCALE_ONE},
    "test_weights": {"real": 0, "quantized": 1},
    "acts": {"relu": lib.FM_ACTS_RELU, "binary": lib.FM_ACTS_BINARY},
    "exec": {"default": lib.FM_EXEC_DEFAULT, "mulfree": lib.FM_EXEC_MULFREE},
    "export": {"det": lib.FM_EXPORT_DET, "mean": lib.FM_EXPORT_MEAN},
    "latent": {"fp32": lib.FM_LATENT_FP32, "bf16": lib.FM_LATENT_BF16},
}
_FIELD = {"test_weights": "test_quantized"}


def _choice(option, value):
    table = _CHOICES[option]
    if value not in table:
        _refuse("%s: '%s' is not one of %s" % (option, value, ", ".join(table)))
    return table[value]


def _name_of(option, number):
    return next(k for k, v in _CHOICES[option].items() if v == number)


def _exponent_range(option, value):
    """qb / qb_conv as "EMIN:EMAX" or (emin, emax), as the command checks them."""
    if isinstance(value, str):
        parts = value.split(":")
        try:
            lo, hi = (int(p) for p in parts)
        except ValueError:
            _refuse("%s: '%s' is not EMIN:EMAX with integer exponents" % (option, value))
    else:
        try:
            lo, hi = (int(v) for v in value)
        except (TypeError, ValueError):
            _refuse("%s: %r is not True, 'EMIN:EMAX' or (EMIN, EMAX)" % (option, value))
    if not (-126 <= lo <= 126 and -126 <= hi <= 126):
        _refuse("%s: exponents of '%d:%d' must lie in -126..126" % (option, lo, hi))
    if lo > hi:
        _refuse("%s: EMIN %d is greater than EMAX %d" % (option, lo, hi))
    return lo, hi


# every option train() takes that shapes the run (fm_config), with the
# command's flag it mirrors: --weights, --synapse-range, ...
CONFIG_OPTIONS = ("arch", "weights", "synapse_range", "scale", "qb", "qb_bn_shortcut", "qb_conv",
                  "test_weights", "epochs", "batch", "opt", "lr", "lr_final", "momentum",
                  "bop_gamma", "bop_threshold", "bop_gamma_final", "latent", "fuse", "loss", "preproc",
                  "dropout", "bn_stats", "bn_momentum", "bn_eps", "valid", "train_limit", "seed",
                  "threads", "eval_every", "no_eval", "acts", "exec")


class _Config:
    """An fm_config from keyword options, as `fewmul train` fills it from its
    flags (tools/cli_config.c): defaults from fm_config_default, the learning
    rates resolved (fm_config_learning_rates), checked by fm_config_check."""

    def __init__(self, options):
        unknown = set(options) - set(CONFIG_OPTIONS)
        if unknown:
            _refuse("unknown option%s: %s" % ("s" if len(unknown) > 1 else "",
                                               ", ".join(sorted(unknown))))
        c = ffi.new("fm_config *")
        lib.fm_config_default(c)
        self.keep = []
        o = dict(options)
        if o.get("arch") is not None:
            self.keep.append(ffi.new("char[]", o["arch"].encode()))
            c.arch = self.keep[-1]
        if o.get("weights") is not None:
            _check(lib.fm_parse_weights(o["weights"].encode(), c))
        for option in ("scale", "test_weights", "opt", "loss", "preproc", "bn_stats", "acts",
                       "exec", "latent"):
            if o.get(option) is not None:
                setattr(c, _FIELD.get(option, option), _choice(option, o[option]))
        qb = o.get("qb")
        if qb is not None and qb is not False:
            c.qb = 1
            c.qb_emin = c.qb_emax = FM_QB_UNBOUNDED
            if qb is not True:
                c.qb_emin, c.qb_emax = _exponent_range("qb", qb)
        if o.get("qb_bn_shortcut"):
            c.qb_bn_jacobian = 0
        if o.get("qb_conv") is not None:
            if o["qb_conv"] == "none":
                c.qb_conv_emin = c.qb_conv_emax = FM_QB_UNBOUNDED
            else:
                c.qb_conv_emin, c.qb_conv_emax = _exponent_range("qb_conv", o["qb_conv"])
        for option in ("bop_gamma", "bop_threshold", "bop_gamma_final"):
            if o.get(option) is not None and o.get("opt") != "bop":
                _refuse("%s applies to opt='bop' only (the optimizer is %s)"
                        % (option, o.get("opt") or "sgd"))
        for option in ("lr", "lr_final"):
            # the library reads <= 0 as "the optimizer's default"; the
            # command's --lr and --lr-final refuse it, and so does train()
            if o.get(option) is not None and not float(o[option]) > 0:
                _refuse("%s: %r is out of range (must be > 0)" % (option, o[option]))
        for option in ("synapse_range", "lr", "lr_final", "momentum", "bop_gamma",
                       "bop_threshold", "bop_gamma_final", "dropout", "bn_momentum", "bn_eps"):
            if o.get(option) is not None:
                setattr(c, option, float(o[option]))
        for option in ("epochs", "batch", "valid", "train_limit", "threads", "eval_every"):
            if o.get(option) is not None:
                v = o[option]
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    _refuse("%s: %r is not an integer" % (option, v))
                if not -2**31 <= v < 2**31:
                    _refuse("%s: %d is out of range" % (option, v))
                setattr(c, option, int(v))
        if o.get("seed") is not None:
            if not 0 <= int(o["seed"]) < 2**64:
                _refuse("seed: %r is out of range (0..18446744073709551615)" % o["seed"])
            c.seed = int(o["seed"])
        if o.get("no_eval"):
            c.no_eval = 1
        if o.get("fuse"):
            c.fuse = 1
        lr, lr_final = ffi.new("double *"), ffi.new("double *")
        lib.fm_config_learning_rates(c, lr, lr_final)
        c.lr, c.lr_final = lr[0], lr_final[0]
        _check(lib.fm_config_check(c))
        self.c = c


def config_dict(c):
    """An fm_config as the keyword options that make it."""
    qb = False
    if c.qb:
        qb = True if c.qb_emin == FM_QB_UNBOUNDED else "%d:%d" % (c.qb_emin, c.qb_emax)
    return {
        "arch": _string(c.arch), "weights": _weights_text(c), "synapse_range": c.synapse_range,
        "scale": _name_of("scale", c.scale), "qb": qb, "qb_bn_shortcut": not c.qb_bn_jacobian,
        "qb_conv": "none" if c.qb_conv_emin == FM_QB_UNBOUNDED
        else "%d:%d" % (c.qb_conv_emin, c.qb_conv_emax),
        "test_weights": _name_of("test_weights", c.test_quantized), "epochs": c.epochs,
        "batch": c.batch, "opt": _name_of("opt", c.opt), "lr": c.lr, "lr_final": c.lr_final,
        "momentum": c.momentum, "bop_gamma": c.bop_gamma, "bop_threshold": c.bop_threshold,
        "bop_gamma_final": c.bop_gamma_final if c.bop_gamma_final > 0 else None,
        "latent": _name_of("latent", c.latent), "fuse": bool(c.fuse),
        "loss": _name_of("loss", c.loss), "preproc": _name_of("preproc", c.preproc),
        "dropout": c.dropout, "bn_stats": _name_of("bn_stats", c.bn_stats),
        "bn_momentum": c.bn_momentum, "bn_eps": c.bn_eps, "valid": c.valid,
        "train_limit": c.train_limit, "seed": int(c.seed), "threads": c.threads,
        "eval_every": c.eval_every, "no_eval": bool(c.no_eval), "acts": _name_of("acts", c.acts),
        "exec": _name_of("exec", c.exec)}


def _weights_text(c):
    name = _string(lib.fm_weights_name(c.weights))
    return "%s:%d" % (name, c.synapse_levels) if name == "synapse" else name


# ---- the energy ledger as a dict (the shape of `fewmul energy --json`) ------


class _Table:
    def __init__(self, name):
        p = ffi.new("fm_energy_table **")
        _check(lib.fm_energy_table_open(os.fsencode(name), p))
        self.c = ffi.gc(p[0], lib.fm_energy_table_free)

    def level_name(self, level):
        if level == FM_LEDGER_NETWORK:
            return "network"
        return _string(lib.fm_energy_table_level_name(self.c, level))

    def jpu(self):
        j = lib.fm_energy_table_joules_per_unit(self.c)
        return j if j > 0 and j != float("inf") else 0.0

    def as_dict(self):
        t = self.c
        levels = []
        for lv in range(lib.fm_energy_table_levels(t)):
            cap = lib.fm_energy_table_level_capacity(t, lv)
            levels.append({"name": self.level_name(lv),
                           "capacity_bytes": None if cap == FM_ENERGY_UNBOUNDED else cap,
                           "read_cost_per_byte": lib.fm_energy_table_level_cost(t, lv, 0),
                           "write_cost_per_byte": lib.fm_energy_table_level_cost(t, lv, 1)})
        network = None
        if lib.fm_energy_table_has_network(t):
            network = {"send_cost_per_byte": lib.fm_energy_table_network_cost(t, 0),
                       "receive_cost_per_byte": lib.fm_energy_table_network_cost(t, 1)}
        return {"name": _string(lib.fm_energy_table_name(t)),
                "source": _string(lib.fm_energy_table_source(t)),
                "unit": _string(lib.fm_energy_table_unit(t)), "joules_per_unit": self.jpu(),
                "levels": levels, "network": network,
                "ops": {_string(lib.fm_op_name(op)): lib.fm_energy_table_op_cost(t, op)
                        for op in range(FM_OP_KINDS)}}


def _has_work(l, layer, phase):
    return (any(lib.fm_ledger_ops(l, layer, phase, op) for op in range(FM_OP_KINDS))
            or lib.fm_ledger_bytes(l, layer, phase, -1, 0) or lib.fm_ledger_bytes(l, layer, phase, -1, 1))


def _priced(l, table, layer, phase):
    e = ffi.new("fm_energy *")
    _check(lib.fm_ledger_price(l, table.c, layer, phase, e))
    jpu = table.jpu()
    levels = min(lib.fm_energy_table_levels(table.c), lib.FM_ENERGY_MAX_LEVELS)
    d = {"ops": {_string(lib.fm_op_name(op)): lib.fm_ledger_ops(l, layer, phase, op)
                 for op in range(FM_OP_KINDS)}}
    net = e.network_sent or e.network_received
    for key, arr, netv in (("read_bytes", e.read_bytes, e.network_received),
                           ("written_bytes", e.written_bytes, e.network_sent)):
        d[key] = {table.level_name(lv): arr[lv] for lv in range(levels)}
        if net:
            d[key]["network"] = netv
    if net:
        d["network_cost"] = e.network_cost
    d["compute"] = e.compute
    d["communication"] = e.communication
    if jpu > 0:
        d["compute_j"] = e.compute * jpu
        d["communication_j"] = e.communication * jpu
    d["comm_to_compute"] = e.communication / e.compute if e.compute > 0 else float("nan")
    d["landauer_bits"] = e.landauer_bits
    if jpu > 0:
        d["landauer_j"] = e.landauer_bits * FM_LANDAUER_J_PER_BIT
    return d


def _ledger_dict(l, table, with_passes):
    phases = [_string(lib.fm_phase_name(p)) for p in range(FM_PHASES)]
    layers = []
    for layer in range(lib.fm_ledger_layers(l)):
        layers.append({"name": _string(lib.fm_ledger_layer_name(l, layer)),
                       "shape": _string(lib.fm_ledger_layer_shape(l, layer)),
                       "phases": {phases[p]: _priced(l, table, layer, p)
                                  for p in range(FM_PHASES) if _has_work(l, layer, p)}})
    tensors = []
    for i in range(lib.fm_ledger_tensors(l)):
        lv = lib.fm_ledger_tensor_level(l, table.c, i)
        tensors.append({"name": _string(lib.fm_ledger_tensor_name(l, i)),
                        "bytes": lib.fm_ledger_tensor_bytes(l, i),
                        "level": table.level_name(lv) if lv >= 0 or lv == FM_LEDGER_NETWORK
                        else None})
    d = {"layers": layers, "tensors": tensors,
         "phases": {phases[p]: _priced(l, table, -1, p) for p in range(FM_PHASES)
                    if _has_work(l, -1, p)},
         "total": _priced(l, table, -1, -1)}
    if with_passes:
        d["passes"] = {}
        for p in range(FM_PHASES):
            examples = ffi.new("uint64_t *")
            passes = lib.fm_ledger_passes(l, p, examples)
            d["passes"][phases[p]] = {"passes": passes, "examples": examples[0]}
    return d


def _new_ledger():
    p = ffi.new("fm_ledger **")
    _check(lib.fm_ledger_create(p))
    return ffi.gc(p[0], lib.fm_ledger_free)


def _measure(model, batch):
    step, infer = _new_ledger(), _new_ledger()
    _check(lib.fm_model_measure(model.c, batch, step, infer))
    return step, infer


def energy(input=(28, 28, 1), classes=10, table="horowitz45", **options):
    """What `fewmul energy --json` prints, as a dict with the same keys and
    numbers: the ledger of one training step and one inference pass of a fresh
    network (options as train's: arch, weights, qb, batch, opt, ...), the same
    for its fp32 peer, and the paper's multiplication counts. input is
    (H, W, C) or D."""
    shape = (input, 1, 1) if isinstance(input, int) else tuple(input)
    cfg = _Config(options)
    t = _Table(table)
    model = Model._create(cfg, shape, classes)
    step, infer = _measure(model, cfg.c.batch)
    peer_cfg = _Config(options)
    p = peer_cfg.c
    p.weights, p.qb, p.exec = lib.FM_WEIGHTS_FP32, 0, lib.FM_EXEC_DEFAULT
    p.latent = lib.FM_LATENT_FP32  # fp32 weights are their own state
    p.qb_emin = p.qb_emax = FM_QB_UNBOUNDED
    if p.opt == _CHOICES["opt"]["bop"]:
        p.opt = _CHOICES["opt"]["adam"]
    peer = Model._create(peer_cfg, shape, classes)
    peer_step, peer_infer = _measure(peer, p.batch)
    standard, method = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    _check(lib.fm_model_paper_mults(model.c, cfg.c.batch, standard, method))
    d = {"command": "energy", "arch": _string(cfg.c.arch)}
    conf = config_dict(cfg.c)
    d.update({k: conf[k] for k in ("weights", "qb", "batch", "seed", "opt")})
    d.update({"describe": model.describe, "params": model.param_count, "table": t.as_dict(),
              "train_step": _ledger_dict(step, t, False),
              "inference": _ledger_dict(infer, t, False),
              "fp32": {"describe": peer.describe,
                       "train_step": _ledger_dict(peer_step, t, False),
                       "inference": _ledger_dict(peer_infer, t, False)},
              "paper_mults_standard": standard[0], "paper_mults_method": method[0],
              "landauer_j_per_bit": FM_LANDAUER_J_PER_BIT})
    return d


# ---- models -----------------------------------------------------------------


class Model:
    """A trainable network with its full state (fm_model): what train()
    returns, Model.load reads and Checkpoint.model gives."""

    def __init__(self, c):
        self.c = ffi.gc(c, lib.fm_model_free)
        self.result = None  # train(): the run's fm_result as a dict
        self.ledger = None  # train(ledger=True): the run's ledger as a dict
        self.epochs = []    # train(): one dict per epoch (fm_epoch_report)
        self.config = None  # train(): the options the run used

    @classmethod
    def _create(cls, cfg, shape, classes):
        p = ffi.new("fm_model **")
        _check(lib.fm_model_create_image(cfg.c, shape[0], shape[1], shape[2], classes, p))
        return cls(p[0])

    @classmethod
    def load(cls, path):
        """A training-state file (`fewmul train --state`, Model.save)."""
        p = ffi.new("fm_model **")
        _check(lib.fm_model_load(os.fsencode(path), p))
        return cls(p[0])

    def save(self, path):
        """Writes the full state (fm_model_save: whole or not at all)."""
        _check(lib.fm_model_save(self.c, os.fsencode(path)))

    @property
    def describe(self):
        return _string(lib.fm_model_describe(self.c))

    @property
    def param_count(self):
        return lib.fm_model_param_count(self.c)

    @property
    def classes(self):
        return lib.fm_model_classes(self.c)

    @property
    def input_shape(self):
        h, w, ch = ffi.new("int *"), ffi.new("int *"), ffi.new("int *")
        lib.fm_model_input_shape(self.c, h, w, ch)
        return (h[0], w[0], ch[0])

    def weights(self, index):
        """The latent weights of weighted layer `index` (fan-in x units)."""
        n = _check(lib.fm_model_weights(self.c, index, ffi.NULL, 0))
        out = np.empty(n, np.float32)
        _check(lib.fm_model_weights(self.c, index, ffi.cast("float *", ffi.from_buffer(out)), n))
        return out

    def evaluate(self, images, labels, threads=0):
        """Classification error in percent (fm_model_evaluate)."""
        im = _Images(images, labels)
        err = ffi.new("double *")
        _check(lib.fm_model_evaluate(self.c, im.c, threads, err))
        return err[0]

    def predict(self, images, threads=0):
        """Predicted classes, uint8 (fm_model_predict). Scores come from the
        packed network: Model.deploy().predict(images, scores=True)."""
        im = _Images(images)
        out = np.empty(im.count, np.uint8)
        _check(lib.fm_model_predict(self.c, im.c, 0, im.count, threads,
                                    ffi.cast("uint8_t *", ffi.from_buffer(out))))
        return out

    def deploy(self, export="det", shape=None):
        """The packed network (fm_deploy_from_model): export "det" or "mean"
        as `fewmul train --export`; shape (H, W, C), default the model's."""
        h, w, ch = shape or (0, 0, 0)
        p = ffi.new("fm_deploy **")
        _check(lib.fm_deploy_from_model(self.c, _choice("export", export), h, w, ch, p))
        return PackedModel(p[0])

    def export(self, path, export="det", shape=None):
        """Writes the packed file (.fmp) `fewmul train --out` writes."""
        self.deploy(export, shape).save(path)

    def export_onnx(self, path, dialect="plain", export="det"):
        """Writes the packed network as ONNX (`fewmul export --onnx`)."""
        return self.deploy(export).export_onnx(path, dialect)


class PackedModel:
    """A deployed network (fm_deploy): a packed file loaded for inference, the
    path of `fewmul infer`. Any number of threads may predict with it."""

    def __init__(self, c):
        self.c = ffi.gc(c, lib.fm_deploy_free)

    @classmethod
    def load(cls, path):
        p = ffi.new("fm_deploy **")
        _check(lib.fm_deploy_load(os.fsencode(path), p))
        return cls(p[0])

    @classmethod
    def from_bytes(cls, data):
        p = ffi.new("fm_deploy **")
        _check(lib.fm_deploy_load_memory(ffi.from_buffer(data), len(data), p))
        return cls(p[0])

    @classmethod
    def import_onnx(cls, path):
        """A packed model from an ONNX graph (`fewmul import --onnx`): one that
        export_onnx wrote, or a binary network from another tool
        (docs/deploy.md, "Importing ONNX")."""
        p = ffi.new("fm_deploy **")
        _check(lib.fm_deploy_import_onnx(os.fsencode(path), p))
        return cls(p[0])

    def save(self, path):
        _check(lib.fm_deploy_save(self.c, os.fsencode(path)))

    def export_onnx(self, path, dialect="plain"):
        """ONNX: dialect "plain" (onnxruntime) or "qonnx"; returns the info."""
        if dialect not in ("plain", "qonnx"):
            _refuse("dialect: '%s' is not one of plain, qonnx" % dialect)
        info = ffi.new("fm_export_onnx_info *")
        _check(lib.fm_deploy_export_onnx(self.c, os.fsencode(path),
                                         lib.FM_ONNX_PLAIN if dialect == "plain" else lib.FM_ONNX_QONNX,
                                         info))
        return {"file_bytes": info.file_bytes, "nodes": info.nodes, "weights": info.weights}

    @property
    def describe(self):
        return _string(lib.fm_deploy_describe(self.c))

    @property
    def classes(self):
        return lib.fm_deploy_classes(self.c)

    @property
    def input_shape(self):
        h, w, ch = ffi.new("int *"), ffi.new("int *"), ffi.new("int *")
        lib.fm_deploy_input_shape(self.c, h, w, ch)
        return (h[0], w[0], ch[0])

    @property
    def file_bytes(self):
        return lib.fm_deploy_file_bytes(self.c)

    @property
    def kernels(self):
        return _string(lib.fm_deploy_kernels(self.c))

    @kernels.setter
    def kernels(self, name):
        _check(lib.fm_deploy_set_kernels(self.c, name.encode()))

    def predict(self, images, threads=0, scores=False):
        """Classes (uint8) of N images of the network's input size (uint8
        pixels, or float32 in the same 0..255 unit); with scores=True,
        (classes, N x classes float32 scores). threads 0: all cores."""
        x = np.asarray(images)
        if x.ndim < 2:
            _refuse("images: expected N images (an array of 2 or more dimensions), got %d "
                    "dimension%s" % (x.ndim, "" if x.ndim == 1 else "s"))
        n, per = x.shape[0], int(np.prod(x.shape[1:]))
        h, w, ch = self.input_shape
        if per != h * w * ch:
            _refuse("images: %d values per image, but the network takes %dx%dx%d = %d"
                    % (per, h, w, ch, h * w * ch), EMISMATCH)
        if x.dtype not in (np.uint8, np.float32):
            _refuse("images: pixels must be uint8 or float32, got %s" % x.dtype)
        if n > 2**31 - 1:
            _refuse("images: %d images are too many for one call" % n)
        x = np.ascontiguousarray(x)
        classes = np.empty(n, np.uint8)
        out_scores = np.empty((n, self.classes), np.float32) if scores else None
        sp = ffi.cast("float *", ffi.from_buffer(out_scores)) if scores else ffi.NULL
        cp = ffi.cast("uint8_t *", ffi.from_buffer(classes))
        if x.dtype == np.uint8:
            _check(lib.fm_deploy_predict(self.c, ffi.cast("uint8_t *", ffi.from_buffer(x)), n,
                                         threads, cp, sp))
        else:
            _check(lib.fm_deploy_predict_f32(self.c, ffi.cast("float *", ffi.from_buffer(x)), n,
                                             threads, cp, sp))
        return (classes, out_scores) if scores else classes


def kernels():
    """The kernel variants usable here (fm_kernels_name), best packed one last
    before "fp32"."""
    names, i = [], 0
    while True:
        p = lib.fm_kernels_name(i)
        if p == ffi.NULL:
            return names
        names.append(_string(p))
        i += 1


def onnx_available():
    return bool(lib.fm_onnx_available())


# ---- checkpoints ------------------------------------------------------------


class Checkpoint:
    """A training run paused in a checkpoint file (`--checkpoint`)."""

    def __init__(self, path):
        p = ffi.new("fm_checkpoint **")
        _check(lib.fm_checkpoint_load(os.fsencode(path), p))
        self.c = ffi.gc(p[0], lib.fm_checkpoint_free)
        self.path = path

    @classmethod
    def load(cls, path):
        return cls(path)

    @property
    def config(self):
        """The run's options, as train() takes them."""
        return config_dict(lib.fm_checkpoint_config(self.c))

    @property
    def data(self):
        return _string(lib.fm_checkpoint_data(self.c))

    @property
    def position(self):
        i = ffi.new("fm_checkpoint_info *")
        _check(lib.fm_checkpoint_position(self.c, i))
        return {k: getattr(i, k) for k in ("epoch", "epochs", "images_done", "images_total", "step",
                                           "lr", "best_epoch", "best_valid_error_pct",
                                           "best_test_error_pct", "has_ledger")}

    def model(self):
        """A model with the checkpoint's architecture and current weights."""
        p = ffi.new("fm_model **")
        _check(lib.fm_checkpoint_model(self.c, p))
        return Model(p[0])


# ---- training ---------------------------------------------------------------


def _steps_or_time(value):
    """checkpoint_every: N steps (int) or "N", "Ns", "Nm", "Nh", as the command."""
    text = str(value)
    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], 0)
    digits = text[:-1] if scale else text
    if not digits.isdigit() or not 1 <= int(digits) <= 100000000:
        _refuse("checkpoint_every: '%s' is not N (1..100000000 steps) or Ns, Nm, Nh" % text)
    return (0, float(int(digits) * scale)) if scale else (int(digits), 0.0)


def train(train_images, train_labels, test_images=None, test_labels=None, *, classes=None,
          progress=None, on_epoch=None, should_stop=None, ledger=False, table="horowitz45",
          checkpoint=None, checkpoint_every=None, resume=None, data_spec=None,
          preproc_cache=PREPROC_CACHE_DEFAULT_MIB, **options):
    """Trains a network on numpy arrays as `fewmul train` does on its data
    (fm_train): the last `valid` training images are the validation set, the
    first `train_limit` of the rest are trained on. Options are train's flags
    with underscores: arch, weights, synapse_range, scale, qb (True,
    "EMIN:EMAX"), qb_bn_shortcut, qb_conv, test_weights, epochs, batch, opt,
    lr, lr_final, momentum, bop_gamma, bop_threshold, bop_gamma_final, latent, fuse, loss, preproc,
    dropout,
    bn_stats, valid, train_limit, seed, threads, eval_every, no_eval, acts,
    exec (and bn_momentum, bn_eps of fm_config). progress(dict) is called
    after every batch, on_epoch(dict) after every epoch; should_stop() True
    ends the run (FewmulError FM_ECANCELED, after a checkpoint if one is
    set). ledger=True records the run's work into Model.ledger, priced with
    table. checkpoint (path), checkpoint_every (N steps or "Ns"/"Nm"/"Nh"),
    resume (a path or Checkpoint: its configuration is the run's; only
    threads and fuse may be given with it). Returns the trained Model, its .result the
    run's result and .epochs its epoch reports."""
    if train_labels is None or (test_images is None) != (test_labels is None):
        _refuse("train: labels go with their images (train_labels, and test_labels exactly "
                "when test_images)")
    train_im = _Images(train_images, train_labels, "train")
    test_im = _Images(test_images, test_labels, "test") if test_images is not None else None
    if test_im and int(np.prod(test_im.shape)) != int(np.prod(train_im.shape)):
        _refuse("test: images are %dx%dx%d but training images %dx%dx%d"
                % (test_im.shape + train_im.shape), EMISMATCH)
    if classes is None:
        classes = max(2, train_im.classes(), test_im.classes() if test_im else 0)
    keep = []
    resumed = None
    if resume is not None:
        resumed = resume if isinstance(resume, Checkpoint) else Checkpoint(resume)
        extra = set(options) - {"threads", "fuse"}
        if extra:
            _refuse("resume: the run's configuration is the checkpoint's; %s may not be given "
                    "with it" % ", ".join(sorted(extra)))
        cfg = _Config({})
        cfg.c[0] = lib.fm_checkpoint_config(resumed.c)[0]
        if options.get("threads") is not None:
            cfg.c.threads = options["threads"]
        cfg.c.fuse = 1 if options.get("fuse") else 0  # how the run goes, not what it is
        model = resumed.model()
        if ledger is False and resumed.position["has_ledger"]:
            ledger = True
    else:
        cfg = _Config(options)
        model = Model._create(cfg, train_im.shape, classes)
    cb = ffi.new("fm_callbacks *")
    errors = []

    def guarded(fn, failed=None):
        # an exception in a Python callback cannot cross the C library: it
        # stops the run at the next batch (should_stop) and is raised from
        # train()
        def call(*args):
            if errors:
                return failed
            try:
                return fn(*args)
            except BaseException as e:  # noqa: B902 - re-raised below
                errors.append(e)
                return failed
        return call

    epochs = model.epochs
    if progress is not None:
        def on_progress(p, user):
            progress({k: getattr(p, k) for k in ("epoch", "epochs", "images_done", "images_total",
                                                 "loss", "images_per_s", "elapsed_s")})
        keep.append(ffi.callback("void(const fm_progress *, void *)", guarded(on_progress)))
        cb.on_progress = keep[-1]

    def epoch_report(r, user):
        d = {k: getattr(r, k) for k in ("epoch", "epochs", "lr", "train_loss", "train_error_pct",
                                        "valid_error_pct", "test_error_pct", "best_epoch",
                                        "best_test_error_pct", "train_seconds", "epoch_seconds",
                                        "images_per_s")}
        epochs.append(d)
        if on_epoch is not None:
            on_epoch(d)
    keep.append(ffi.callback("void(const fm_epoch_report *, void *)", guarded(epoch_report)))
    cb.on_epoch = keep[-1]

    def stop(user):
        return 1 if errors or (should_stop is not None and should_stop()) else 0
    keep.append(ffi.callback("int(void *)", guarded(stop, 1), error=1))
    cb.should_stop = keep[-1]
    t = _Table(table) if ledger else None
    run_ledger = _new_ledger() if ledger else None
    if run_ledger is not None:
        cb.ledger = run_ledger
    if checkpoint is None and resumed is not None:
        checkpoint = resumed.path
    if checkpoint is not None:
        keep.append(ffi.new("char[]", os.fsencode(checkpoint)))
        cb.checkpoint = keep[-1]
    if checkpoint_every is not None:
        cb.checkpoint_every, cb.checkpoint_seconds = _steps_or_time(checkpoint_every)
    if data_spec is not None:
        keep.append(ffi.new("char[]", data_spec.encode()))
        cb.data_spec = keep[-1]
    if resumed is not None:
        cb.resume = resumed.c
    cb.preproc_cache_mib = preproc_cache if preproc_cache > 0 else -1
    result = ffi.new("fm_result *")
    rc = lib.fm_train(model.c, train_im.c, test_im.c if test_im else ffi.NULL, cfg.c, cb, result)
    if errors:
        raise errors[0]
    _check(rc)
    model.result = {k: getattr(result, k) for k in (
        "test_error_pct", "valid_error_pct", "best_epoch", "epochs", "train_seconds",
        "total_seconds", "train_images_per_s", "final_train_loss", "ldexp_fallbacks")}
    model.result["kernels"] = _string(result.kernels)
    model.config = config_dict(cfg.c)
    if run_ledger is not None:
        model.ledger = _ledger_dict(run_ledger, t, True)
        model.ledger_table = t.as_dict()
    return model
