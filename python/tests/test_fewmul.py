"""test_fewmul.py: the Python package against the command it mirrors.

Run by tests/python_package.sh (ctest python_package), which installs the
package into a venv and gives FEWMUL_CLI (the fewmul command of the same
build) and FEWMUL_SHARED_DATA (the folder that may hold mnist/). Training
uses MNIST there when present, else Debian's Fashion-MNIST, as the shell
tests do (tests/cli_common.sh); without either the training tests skip."""
import filecmp
import json
import math
import os
import subprocess

import numpy as np
import pytest

import fewmul

CLI = os.environ.get("FEWMUL_CLI", "fewmul")
SHARED = os.environ.get("FEWMUL_SHARED_DATA", "")
MNIST = os.path.join(SHARED, "mnist")
if SHARED and os.path.exists(os.path.join(MNIST, "train-images-idx3-ubyte.gz")):
    SPEC = "mnist:" + MNIST
elif os.path.exists("/usr/share/datasets/fashion-mnist"):
    SPEC = "fashion"
else:
    SPEC = None
needs_data = pytest.mark.skipif(SPEC is None, reason="neither MNIST nor Fashion-MNIST here")

# one epoch of paper-mlp BC+QB on 2000 images (1000 held out for validation):
# the command's flags and train()'s keywords for the same run
RUN_FLAGS = ["--weights", "bc", "--qb", "--epochs", "1", "--train-limit", "2000", "--valid",
             "1000", "--threads", "2", "--seed", "7"]
RUN_OPTIONS = dict(weights="bc", qb=True, epochs=1, train_limit=2000, valid=1000, threads=2,
                   seed=7)


def cli(*args, check=True):
    p = subprocess.run([CLI] + [str(a) for a in args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError("fewmul %s: exit %d: %s" % (" ".join(map(str, args)), p.returncode,
                                                          p.stderr))
    return p


@pytest.fixture(scope="module")
def data():
    if SPEC is None:
        pytest.skip("neither MNIST nor Fashion-MNIST here")
    return fewmul.load_data(SPEC)


@pytest.fixture(scope="module")
def command_run(tmp_path_factory):
    """`fewmul train` once: its state, packed file and JSON result (with the ledger)."""
    if SPEC is None:
        pytest.skip("neither MNIST nor Fashion-MNIST here")
    d = tmp_path_factory.mktemp("cli")
    p = cli("train", "--data", SPEC, *RUN_FLAGS, "--state", d / "cli.fm", "--out", d / "cli.fmp",
            "--ledger", "--json", "--quiet")
    return d, json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def python_run(data):
    x, y, tx, ty = data
    seen = {"progress": 0}

    def progress(p):
        seen["progress"] += 1
        assert 0 < p["images_done"] <= p["images_total"] == 2000
    model = fewmul.train(x, y, tx, ty, progress=progress, ledger=True, **RUN_OPTIONS)
    return model, seen


def test_config_layout_reads_the_library_defaults():
    # every field after a shifted one would read garbage: the layout of
    # fm_config in _ffi.py is the header's
    c = fewmul._Config({}).c
    assert (c.epochs, c.batch, c.valid, c.seed, c.synapse_levels) == (20, 200, 10000, 1234, 26)
    assert (c.synapse_range, c.bn_eps, c.bop_gamma, c.bop_threshold) == (60, 1e-4, 1e-3, 1e-6)
    assert (c.qb_conv_emin, c.qb_conv_emax, c.qb_bn_jacobian, c.eval_every) == (-4, 3, 1, 1)
    assert (c.lr, c.lr_final) == pytest.approx((0.3, 0.01))
    assert fewmul.config_dict(c)["weights"] == "fp32"


@needs_data
def test_train_from_numpy_is_the_commands_run(tmp_path, command_run, python_run):
    d, result = command_run
    model, seen = python_run
    model.save(tmp_path / "py.fm")
    assert filecmp.cmp(tmp_path / "py.fm", d / "cli.fm", shallow=False), \
        "the state files of fewmul train and fewmul.train differ"
    assert model.result["test_error_pct"] == pytest.approx(result["test_error_pct"], abs=0.005)
    assert model.result["valid_error_pct"] == pytest.approx(result["valid_error_pct"], abs=0.005)
    assert model.result["best_epoch"] == result["best_epoch"] == 1
    model.export(tmp_path / "py.fmp")
    assert filecmp.cmp(tmp_path / "py.fmp", d / "cli.fmp", shallow=False)
    assert seen["progress"] == 10  # 2000 images in batches of 200
    assert len(model.epochs) == 1 and model.epochs[0]["best_epoch"] == 1


@needs_data
def test_bop_bf16_decay_is_the_commands_run(tmp_path, data):
    # bop folded into the backward pass, bf16 momenta, a decaying gamma: the
    # options reach the library as the command's flags do
    flags = ["--weights", "bc-det", "--qb", "--opt", "bop", "--latent", "bf16", "--bop-gamma",
             "0.01", "--bop-gamma-final", "0.001", "--bop-threshold", "1e-4", "--epochs", "2",
             "--train-limit", "600", "--valid", "1000", "--threads", "2", "--seed", "3",
             "--arch", "mlp:64"]
    cli("train", "--data", SPEC, *flags, "--state", tmp_path / "cli.fm", "--quiet")
    x, y, tx, ty = data
    model = fewmul.train(x, y, tx, ty, weights="bc-det", qb=True, opt="bop", latent="bf16",
                         bop_gamma=0.01, bop_gamma_final=0.001, bop_threshold=1e-4, epochs=2,
                         train_limit=600, valid=1000, threads=2, seed=3, arch="mlp:64")
    model.save(tmp_path / "py.fm")
    assert filecmp.cmp(tmp_path / "py.fm", tmp_path / "cli.fm", shallow=False)
    assert model.config["latent"] == "bf16"
    assert model.config["bop_gamma_final"] == pytest.approx(0.001)
    with pytest.raises(fewmul.FewmulError):
        fewmul.train(x, y, tx, ty, latent="bf16", epochs=1, train_limit=200)  # fp32 weights


@needs_data
def test_fuse_is_the_commands_run(tmp_path, data):
    # --fuse: the same bits as the unfused run, from Python and the command
    flags = ["--weights", "bc", "--qb", "--latent", "bf16", "--epochs", "2", "--train-limit",
             "600", "--valid", "1000", "--threads", "2", "--seed", "4", "--arch", "mlp:64"]
    cli("train", "--data", SPEC, *flags, "--state", tmp_path / "cli.fm", "--quiet")
    x, y, tx, ty = data
    model = fewmul.train(x, y, tx, ty, weights="bc", qb=True, latent="bf16", fuse=True, epochs=2,
                         train_limit=600, valid=1000, threads=2, seed=4, arch="mlp:64")
    model.save(tmp_path / "py.fm")
    assert filecmp.cmp(tmp_path / "py.fm", tmp_path / "cli.fm", shallow=False)
    assert model.config["fuse"] is True


def same_numbers(a, b, where="$"):
    """JSON of the command (numbers printed with %.10g) against a dict."""
    if isinstance(a, dict):
        assert set(a) == set(b), "%s: keys %s vs %s" % (where, sorted(a), sorted(b))
        for k in a:
            same_numbers(a[k], b[k], where + "." + k)
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same_numbers(x, y, "%s[%d]" % (where, i))
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or (isinstance(b, float) and math.isnan(b)):
            assert a is None and math.isnan(b), where
        else:
            assert b == pytest.approx(a, rel=1e-9, abs=1e-300), where
    else:
        assert a == b, where


@needs_data
def test_run_ledger_is_the_commands(command_run, python_run):
    _, result = command_run
    model, _ = python_run
    same_numbers(result["ledger"], model.ledger)
    same_numbers(result["table"], model.ledger_table)
    assert model.ledger["passes"]["forward"]["examples"] == 2000


def test_energy_is_fewmul_energy_json():
    flags = ["--weights", "bc", "--qb", "--batch", "50", "--arch", "mlp:256,256"]
    command = json.loads(cli("energy", *flags, "--json").stdout.strip().splitlines()[-1])
    d = fewmul.energy(weights="bc", qb=True, batch=50, arch="mlp:256,256")
    for key in ("train_step", "inference", "table", "fp32", "paper_mults_standard",
                "paper_mults_method", "describe", "params", "landauer_j_per_bit"):
        same_numbers(command[key], d[key], key)
    assert d["paper_mults_method"] < d["paper_mults_standard"]


@needs_data
def test_predict_evaluate_save_load(tmp_path, data, command_run, python_run):
    x, y, tx, ty = data
    model, _ = python_run
    classes = model.predict(tx[:3000])
    assert classes.dtype == np.uint8 and classes.shape == (3000,)
    err = model.evaluate(tx[:3000], ty[:3000])
    assert err == pytest.approx(100.0 * np.mean(classes != ty[:3000]))
    model.save(tmp_path / "m.fm")
    again = fewmul.Model.load(tmp_path / "m.fm")
    assert np.array_equal(again.predict(tx[:3000]), classes)
    assert again.describe == model.describe and again.input_shape == (28, 28, 1)
    assert again.weights(0).shape == (784 * 1024,)
    # the packed file: the same classes as `fewmul infer`, from a file or bytes
    d, _ = command_run
    packed = fewmul.PackedModel.load(d / "cli.fmp")
    c, scores = packed.predict(tx, scores=True)
    assert scores.shape == (10000, 10) and np.array_equal(np.argmax(scores, 1), c)
    infer = json.loads(cli("infer", "--model", d / "cli.fmp", "--data", SPEC, "--json").stdout
                       .strip().splitlines()[-1])
    assert 100.0 * np.mean(c != ty) == pytest.approx(infer["error_pct"], abs=0.005)
    from_bytes = fewmul.PackedModel.from_bytes((d / "cli.fmp").read_bytes())
    assert np.array_equal(from_bytes.predict(tx.astype(np.float32)), c)
    for k in fewmul.kernels():
        packed.kernels = k
        assert np.array_equal(packed.predict(tx[:500]), c[:500]), k


@needs_data
def test_onnx_export_is_the_commands(tmp_path, command_run):
    if not fewmul.onnx_available():
        pytest.skip("this build writes no ONNX")
    d, _ = command_run
    info = fewmul.PackedModel.load(d / "cli.fmp").export_onnx(tmp_path / "py.onnx")
    cli("export", "--model", d / "cli.fmp", "--onnx", tmp_path / "cli.onnx")
    assert filecmp.cmp(tmp_path / "py.onnx", tmp_path / "cli.onnx", shallow=False)
    assert info["file_bytes"] == os.path.getsize(tmp_path / "py.onnx") and info["nodes"] > 0
    # and back: the import gives the packed file the export started from
    fewmul.PackedModel.import_onnx(tmp_path / "py.onnx").save(tmp_path / "back.fmp")
    assert filecmp.cmp(tmp_path / "back.fmp", d / "cli.fmp", shallow=False)
    with pytest.raises(fewmul.FewmulError) as bad:
        fewmul.PackedModel.import_onnx(d / "cli.fmp")  # a packed file is not ONNX
    assert bad.value.code_name == "FM_EFORMAT" or bad.value.code != 0


@needs_data
def test_checkpoint_stop_and_resume_is_the_uninterrupted_run(tmp_path, data):
    x, y, tx, ty = data
    opts = dict(arch="mlp:64,64", weights="tc", qb=True, epochs=2, train_limit=1000, valid=500,
                threads=2, batch=100)
    whole = fewmul.train(x, y, tx, ty, **opts)
    stop = {"now": False}
    ck = tmp_path / "run.fmc"
    with pytest.raises(fewmul.FewmulError) as e:
        fewmul.train(x, y, tx, ty, checkpoint=ck, should_stop=lambda: stop["now"],
                     on_epoch=lambda r: stop.update(now=True), **opts)
    assert e.value.code_name == "FM_ECANCELED"
    paused = fewmul.Checkpoint(ck)
    assert paused.position["epoch"] == 2 and paused.config["weights"] == "tc"
    assert paused.config["arch"] == "mlp:64,64" and paused.config["train_limit"] == 1000
    with pytest.raises(fewmul.FewmulError, match="may not be given"):
        fewmul.train(x, y, tx, ty, resume=ck, epochs=3)
    resumed = fewmul.train(x, y, tx, ty, resume=ck, threads=1)
    whole.save(tmp_path / "whole.fm")
    resumed.save(tmp_path / "resumed.fm")
    assert filecmp.cmp(tmp_path / "whole.fm", tmp_path / "resumed.fm", shallow=False)
    assert fewmul.Checkpoint(ck).position["epoch"] == 3  # epochs + 1: finished


def expect_error(code_name, fn, *args, message=None, **kw):
    with pytest.raises(fewmul.FewmulError) as e:
        fn(*args, **kw)
    assert e.value.code_name == code_name, e.value
    assert str(e.value) == e.value.message and "\n" not in e.value.message
    if message is not None:
        assert e.value.message == message
    return e.value.message


def test_errors_carry_fewmuls_message(tmp_path):
    x = np.zeros((20, 4, 4), np.uint8)
    y = np.zeros(20, np.uint8)
    y[10:] = 1
    # the library's own message, word for word what the command prints
    command = cli("energy", "--arch", "bogus", check=False)
    assert command.returncode == 2
    msg = expect_error("FM_EINVAL", fewmul.train, x, y, arch="bogus", valid=5)
    assert command.stderr.startswith("fewmul: error: " + msg)
    msg = expect_error("FM_ENOENT", fewmul.PackedModel.load, tmp_path / "missing.fmp")
    assert cli("info", tmp_path / "missing.fmp", check=False).stderr == \
        "fewmul: error: %s\n" % msg
    expect_error("FM_ENOENT", fewmul.Model.load, tmp_path / "missing.fm")
    expect_error("FM_ENOENT", fewmul.Checkpoint, tmp_path / "missing.fmc")
    expect_error("FM_ENOENT", fewmul.load_data, "mnist:" + str(tmp_path))
    (tmp_path / "junk.fmp").write_bytes(b"not a model at all" * 10)
    expect_error("FM_EFORMAT", fewmul.PackedModel.load, tmp_path / "junk.fmp")
    # wrong-shaped or typed arrays, before anything reaches the library
    expect_error("FM_EINVAL", fewmul.train, x, y[:19], valid=5,
                 message="train: 20 images but labels of shape (19,)")
    expect_error("FM_EINVAL", fewmul.train, x.astype(np.float32), y, valid=5,
                 message="train: pixels must be uint8 (0..255), got float32")
    expect_error("FM_EINVAL", fewmul.train, np.zeros(20, np.uint8), y, valid=5)
    expect_error("FM_EINVAL", fewmul.train, x, y, x, valid=5)
    expect_error("FM_EMISMATCH", fewmul.train, x, y, np.zeros((5, 3, 3), np.uint8),
                 np.zeros(5, np.uint8), valid=5)
    expect_error("FM_EINVAL", fewmul.train, x, y, valid=5, opt="adagrad",
                 message="opt: 'adagrad' is not one of sgd, adam, bop")
    expect_error("FM_EINVAL", fewmul.train, x, y, valid=5, qb="3:-3",
                 message="qb: EMIN 3 is greater than EMAX -3")
    expect_error("FM_EINVAL", fewmul.train, x, y, valid=5, bop_gamma=0.1)
    expect_error("FM_EINVAL", fewmul.train, x, y, valid=5, lerning_rate=0.1,
                 message="unknown option: lerning_rate")
    expect_error("FM_EINVAL", fewmul.train, x, y, valid=5, lr=-1.0,
                 message="lr: -1.0 is out of range (must be > 0)")
    # the library's checks (fm_config_check, fm_train)
    expect_error("FM_EINVAL", fewmul.train, x, y, valid=5, momentum=1.0,
                 message="momentum 1 out of range [0, 1)")
    expect_error("FM_EINVAL", fewmul.train, x, y, valid=20)
    model = fewmul.train(x, y, epochs=1, valid=5, arch="mlp:8", batch=5)
    expect_error("FM_EMISMATCH", model.deploy().predict, np.zeros((2, 15), np.uint8))
    expect_error("FM_EINVAL", model.deploy, export="rounded")
    assert model.predict(x).shape == (20,)


def test_callback_exception_stops_the_run_and_is_raised():
    x = np.random.default_rng(1).integers(0, 256, (400, 8, 8), dtype=np.uint8)
    y = (x.reshape(400, -1).mean(1) > 127).astype(np.uint8)

    def boom(p):
        raise KeyError("from the callback")
    with pytest.raises(KeyError, match="from the callback"):
        fewmul.train(x, y, epochs=3, valid=100, arch="mlp:16", batch=50, progress=boom)
