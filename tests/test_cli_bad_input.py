"""Every class of bad input, through the CLI as a user meets it: exit 2, one line on stderr that names the
file, option, JSON path or tensor key, no traceback, and no output file (nothing half-written, nothing
outside the output directory). The loaders' own cases, one by one, are in test_spec_limits.py,
test_spec_errors.py and test_properties.py; this file holds one or more per class at the CLI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from googlenet_suite.cli import main


def bad(capsys, tmp_path, argv, *expected):
    """Run the CLI in this process; exit 2, one line naming ``expected``, and no file left in ``tmp_path/out``."""
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    code = main([str(a) for a in argv])
    stdout, stderr = capsys.readouterr()
    assert code == 2, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr and len(lines[0]) < 400
    for text in expected:
        assert text in lines[0], lines[0]
    assert list(out_dir.iterdir()) == [], "a refused command wrote a file"
    return lines[0]


def spec_file(tmp_path, builtin_doc, mutate=None, *, text=None, name="spec.json"):
    path = tmp_path / name
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path
    doc = json.loads(json.dumps(builtin_doc))
    if mutate:
        mutate(doc)
    path.write_text(json.dumps(doc))
    return path


# --------------------------------------------------------------------------- specs


def _self_block(doc):
    doc["blocks"]["loop"] = {"params": [], "layer": {"op": "concat", "branches": {
        "a": [{"name": "again", "op": "block", "block": "loop"}]}}}
    doc["variants"]["googlenet"]["layers"][5] = {"name": "inception3a", "op": "block", "block": "loop"}


def _float_channels(doc):
    doc["variants"]["googlenet"]["layers"][0]["out"] = 1e12


def _nan_rate(doc):
    doc["variants"]["googlenet"]["layers"][-2]["rate"] = float("nan")


SPECS = {
    "block uses itself": (dict(mutate=_self_block), ["uses itself"]),
    "nested 10000 deep": (dict(text="[" * 10_000 + "]" * 10_000), ["nest"]),
    "not UTF-8": (dict(text=b"\xff\xfe{\x00}\x00"), ["UTF-8"]),
    "float channel count": (dict(mutate=_float_channels), ["$.variants.googlenet.layers[0]"]),
    "NaN dropout rate": (dict(mutate=_nan_rate), ["NaN"]),
}


@pytest.mark.parametrize("case", list(SPECS))
def test_bad_spec_file(capsys, tmp_path, builtin_doc, case):
    kwargs, expected = SPECS[case]
    path = spec_file(tmp_path, builtin_doc, **kwargs)
    bad(capsys, tmp_path, ["inspect", "googlenet", "--spec", path], str(path), *expected)


def test_huge_spec_fails_fast(capsys, tmp_path):
    path = tmp_path / "big.json"
    path.write_text('{"x": "' + "a" * (50 * 2**20) + '"}')
    bad(capsys, tmp_path, ["inspect", "--spec", path], str(path))


def test_huge_override_is_refused_before_allocating(capsys, tmp_path):
    message = bad(capsys, tmp_path, ["inspect", "googlenet", "--num-classes", 10**12], "GiB", "over the limit")
    assert "fc" in message


def test_zero_input_size_names_the_option(capsys, tmp_path):
    bad(capsys, tmp_path, ["inspect", "googlenet", "--input-size", 0, 0], "input_size")


# --------------------------------------------------------------------------- options and outputs


def test_negative_seed_names_the_option(capsys, tmp_path):
    bad(capsys, tmp_path, ["compare", "d2l", "--seed", -1], "--seed")


def _torch():
    pytest.importorskip("torch", reason="PyTorch is not installed")


def _x(tmp_path, shape=(1, 1, 96, 96), dtype=np.float32):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(shape, dtype))
    return path


@pytest.mark.torch
def test_output_that_is_a_directory(capsys, tmp_path):
    _torch()
    x = _x(tmp_path)
    bad(capsys, tmp_path, ["run", "d2l", "--framework", "torch", "--input", x, "--output", tmp_path / "out"],
        "--output", "is a directory")


@pytest.mark.torch
def test_save_weights_into_a_missing_directory_writes_no_logits(capsys, tmp_path):
    _torch()
    x = _x(tmp_path)
    bad(capsys, tmp_path, ["run", "d2l", "--framework", "torch", "--input", x, "--output", tmp_path / "out" / "l.npy",
                           "--save-weights", tmp_path / "missing" / "w.safetensors"], "--save-weights", "missing")


@pytest.mark.torch
def test_written_files_follow_the_umask(capsys, tmp_path):
    _torch()
    x = _x(tmp_path)
    out = tmp_path / "logits.npy"
    old = os.umask(0o022)
    try:
        assert main(["run", "d2l", "--framework", "torch", "--input", str(x), "--output", str(out),
                     "--save-weights", str(tmp_path / "w.safetensors")]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    assert out.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- arrays


def _npz_named_npy(tmp_path):
    path = tmp_path / "x.npy"
    with open(path, "wb") as f:
        np.savez(f, x=np.zeros((1, 1, 96, 96), np.float32))
    return path


def _lying_header(tmp_path):
    path = tmp_path / "x.npy"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 1, 96, 96), }"
    header += " " * (63 - len(header)) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\x00" * 64)
    return path


ARRAYS = {
    "npz named npy": (_npz_named_npy, []),
    "header claims more than the file": (_lying_header, []),
    "complex": (lambda t: _x(t, dtype=np.complex64), ["complex"]),
    "zero-size": (lambda t: _x(t, shape=(1, 1, 0, 0)), []),
}


@pytest.mark.torch
@pytest.mark.parametrize("case", list(ARRAYS))
def test_bad_input_array(capsys, tmp_path, case):
    _torch()
    make, expected = ARRAYS[case]
    path = make(tmp_path)
    bad(capsys, tmp_path, ["run", "d2l", "--framework", "torch", "--input", path, "--output",
                           tmp_path / "out" / "logits.npy"], str(path), *expected)


# --------------------------------------------------------------------------- weights and checkpoints


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["BF16", "F16", "I64"])
def test_weights_of_another_dtype_are_refused_by_name(capsys, tmp_path, dtype):
    _torch()
    import torch
    from safetensors.torch import save_file

    import impl_torch
    import shared_spec

    spec = shared_spec.load("d2l")
    weights = impl_torch.export_weights(impl_torch.build(spec, device="cpu", seed=0))
    torch_dtype = {"BF16": torch.bfloat16, "F16": torch.float16, "I64": torch.int64}[dtype]
    tensors = {k: torch.from_numpy(v) for k, v in weights.items()}
    tensors["fc.bias"] = tensors["fc.bias"].to(torch_dtype)
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path), metadata=shared_spec.weights.metadata(spec))
    bad(capsys, tmp_path, ["run", "d2l", "--framework", "torch", "--weights", path, "--input", _x(tmp_path),
                           "--output", tmp_path / "out" / "l.npy"], str(path), "fc.bias")


def test_weights_metadata_that_is_not_json(capsys, tmp_path):
    from safetensors.numpy import save_file

    import shared_spec

    spec = shared_spec.load("d2l")
    shapes = spec.weight_shapes()
    path = tmp_path / "w.safetensors"
    save_file({k: np.zeros(s, np.float32) for k, s in shapes.items()}, str(path),
              metadata={**shared_spec.weights.metadata(spec), "overrides": "[1, 2"})
    with pytest.raises(shared_spec.SpecError) as info:
        shared_spec.weights.load_weights(path, spec)
    assert str(path) in str(info.value) and "overrides" in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- paths


def test_train_never_writes_outside_its_directory(capsys, tmp_path, builtin_doc, monkeypatch):
    """A variant named like a path cannot steer train's default output directory out of runs/."""
    def rename(doc):
        doc["variants"]["x/../../../escaped"] = doc["variants"]["d2l"]
    path = spec_file(tmp_path, builtin_doc, rename)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code = main(["train", "--framework", "torch", "--variant", "x/../../../escaped", "--spec", str(path),
                 "--data", "synthetic", "--epochs", "1", "--limit", "8", "--quiet"])
    stderr = capsys.readouterr().err
    assert code == 2 and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert not (tmp_path / "escaped").exists() and list(work.iterdir()) == []


def test_cli_never_prints_a_traceback_for_a_missing_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "googlenet_suite", "inspect", "--spec", str(tmp_path / "no.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def _checkpoint(tmp_path, sidecar: dict):
    import impl_torch
    import shared_spec

    path = tmp_path / "epoch_1.safetensors"
    impl_torch.save_weights(impl_torch.build(shared_spec.load("d2l", input_size=(32, 32)), device="cpu", seed=0), path)
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


@pytest.mark.torch
@pytest.mark.parametrize("recipe, field", [("fast", "'recipe'"), ({"resize": "96"}, "$.recipe.resize"),
                                           ({"epochs": "3"}, "$.recipe.epochs")])
def test_checkpoint_json_fields_are_validated(capsys, tmp_path, recipe, field):
    _torch()
    from googlenet_suite.train import CHECKPOINT_FORMAT

    path = _checkpoint(tmp_path, {"format": CHECKPOINT_FORMAT, "framework": "torch", "epoch": 1, "steps": 1,
                                  "recipe": recipe, "history": []})
    sidecar = str(path.with_suffix(".json"))
    if isinstance(recipe, dict) and "resize" in recipe:
        argv = ["evaluate", "--framework", "torch", "--weights", path, "--data", "synthetic", "--limit", 8]
    else:
        argv = ["train", "--resume", path, "--epochs", 2, "--quiet"]
    bad(capsys, tmp_path, argv, sidecar, field)


# --------------------------------------------------------------------------- predict, frameworks (issue 23)


def _tiny_spec(tmp_path, builtin_doc):
    """A 3-channel variant of four layers (8x8 input): the files the commands read stay a few hundred bytes."""
    def tiny(doc):
        variant = doc["variants"]["d2l"]
        variant.update(input={"channels": 3, "size": [8, 8]}, stages={"head": "fc"}, expected={},
                       layers=[{"name": "conv1", "op": "conv", "out": 4, "kernel": 3, "padding": 1},
                               {"name": "avgpool", "op": "global_avgpool"}, {"name": "flatten", "op": "flatten"},
                               {"name": "fc", "op": "dense", "in": 4, "out": "$num_classes"}])
        variant.pop("preprocess")  # d2l's is for one channel
        doc["variants"] = {"tiny": variant}
        doc["default_variant"] = "tiny"
    return spec_file(tmp_path, builtin_doc, tiny, name="tiny.json")


def _tiny_weights(tmp_path, spec_path, **overrides):
    import shared_spec
    from shared_spec import weights

    spec = shared_spec.load("tiny", spec_file=spec_path, **overrides)
    path = tmp_path / "tiny.safetensors"
    weights.save_weights(path, {k: np.ones(s, np.float32) for k, s in spec.weight_shapes().items()}, spec)
    return path


def test_predict_bounds_the_resized_image_before_allocating(capsys, tmp_path, builtin_doc):
    """1x100000 pixels is far below the pixel limit, but its resized copy (shorter side to 9 here, 256 at 224)
    would not be: refused before Pillow resizes anything."""
    Image = pytest.importorskip("PIL.Image")
    spec_path = _tiny_spec(tmp_path, builtin_doc)
    weights = _tiny_weights(tmp_path, spec_path)
    image = tmp_path / "thin.png"
    Image.new("RGB", (100_000, 1)).save(image)
    import shared_spec
    from googlenet_suite import predict

    w, h = predict.pipeline(shared_spec.load("googlenet")).resized_size(100_000, 1)
    assert (w, h) == (25_600_000, 256) and w * h > predict.MAX_PIXELS
    bad(capsys, tmp_path, ["predict", image, "--weights", weights, "--spec", spec_path, "--input-size", 224, 224,
                           "--framework", "onnx", "--output", tmp_path / "out" / "p.txt"],
        str(image), "100000x1", "25600000x256", "over the limit")


def test_predict_names_the_weight_file_and_its_one_channel_variant(capsys, tmp_path, builtin_doc):
    Image = pytest.importorskip("PIL.Image")
    spec_path = _tiny_spec(tmp_path, builtin_doc)
    weights = _tiny_weights(tmp_path, spec_path, in_channels=1)
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    bad(capsys, tmp_path, ["predict", image, "--weights", weights, "--spec", spec_path,
                           "--output", tmp_path / "out" / "p.txt"],
        f"--weights {weights}", "variant 'tiny' (named by the file)", "1 input channel", "RGB")


def _keras_backend(monkeypatch, name):
    """``KERAS_BACKEND=name`` as a fresh process sees it (a Keras builder imported here keeps its own)."""
    monkeypatch.setenv("KERAS_BACKEND", name)
    monkeypatch.delitem(sys.modules, "impl_tf", raising=False)


@pytest.mark.tf
def test_a_keras_backend_that_is_not_installed_is_a_missing_framework(monkeypatch):
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed")
    if importlib.util.find_spec("jax") is not None:
        pytest.skip("jax is installed here: KERAS_BACKEND=jax would run")
    from googlenet_suite import frameworks as fw_registry

    _keras_backend(monkeypatch, "jax")
    with pytest.raises(fw_registry.FrameworkMissing) as info:
        fw_registry.load("tf")
    assert "KERAS_BACKEND='jax' needs jax, which is not installed" in str(info.value)
    assert "pip install 'jax[cpu]'" in str(info.value) and fw_registry.install_hint("tf") in str(info.value)


@pytest.mark.tf
@pytest.mark.cross
@pytest.mark.slow
def test_compare_reports_a_missing_keras_backend_as_not_installed(tmp_path):
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed")
    pytest.importorskip("torch", reason="PyTorch is not installed")
    if importlib.util.find_spec("jax") is not None:
        pytest.skip("jax is installed here: KERAS_BACKEND=jax would run")
    report = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "googlenet_suite", "compare", "d2l", "--frameworks", "torch,tf",
                           "--format", "json", "--output", str(report)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_BACKEND": "jax"})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    result = json.loads(report.read_text())["variants"][0]
    assert result["frameworks"]["tf"]["status"] == "missing" and "jax" in result["frameworks"]["tf"]["hint"]
    assert result["agree"] is True


@pytest.mark.parametrize("backend", ["torch", "jax", "nonsense"])
def test_bench_refuses_another_keras_backend_before_any_import(capsys, tmp_path, monkeypatch, backend):
    _keras_backend(monkeypatch, backend)
    bad(capsys, tmp_path, ["bench", "d2l", "--frameworks", "tf", "--output", tmp_path / "out" / "b.txt"],
        "bench:", f"KERAS_BACKEND")
    assert "impl_tf" not in sys.modules
