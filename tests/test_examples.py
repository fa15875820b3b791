"""``examples/``: the readable, stand-alone model files students are sent to. Each one imports only its own
framework, builds, has the oracle's parameter count and the right output shape, and is the spec's network:
``googlenet-suite check VARIANT --torch|--keras|--gluon examples/FILE.py:net`` agrees with no ``--map``."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import shared_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SUITE_PACKAGES = {"shared_spec", "googlenet_suite", "impl_torch", "impl_tf", "impl_mxnet", "impl_onnx"}
FRAMEWORK_MODULES = {"torch", "torchvision", "tensorflow", "keras", "mxnet", "gluoncv", "jax", "onnx", "onnxruntime"}

#: file stem -> (variant, framework key, the check option, the framework's own module, the test marker)
CASES = {
    "d2l_torch": ("d2l", "torch", "--torch", "torch", pytest.mark.torch),
    "d2l_keras": ("d2l", "tf", "--keras", "keras", pytest.mark.tf),
    "d2l_gluon": ("d2l", "mxnet", "--gluon", "mxnet", pytest.mark.mxnet),
    "googlenet_torch": ("googlenet", "torch", "--torch", "torch", pytest.mark.torch),
    "googlenet_keras": ("googlenet", "tf", "--keras", "keras", pytest.mark.tf),
    "googlenet_gluon": ("googlenet", "mxnet", "--gluon", "mxnet", pytest.mark.mxnet),
}
# the input size for the runs here: small, and odd after the stem at 40 (ceil-mode pools round up there)
SIZE = 40


def cases():
    return [pytest.param(stem, marks=marker, id=stem) for stem, (*_, marker) in CASES.items()]


def _imports(path: Path) -> set[str]:
    tops = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: a relative import"
            tops.add(node.module.split(".")[0])
    return tops


def test_every_example_is_listed():
    assert {path.stem for path in EXAMPLES.glob("*.py")} == set(CASES)


@pytest.mark.parametrize("stem", sorted(CASES))
def test_imports_only_its_own_framework_and_fits_150_lines(stem):
    path = EXAMPLES / f"{stem}.py"
    tops = _imports(path)
    own = CASES[stem][3]
    assert tops & FRAMEWORK_MODULES == {own}, f"{path.name} imports {sorted(tops & FRAMEWORK_MODULES)}"
    assert not tops & SUITE_PACKAGES, f"{path.name} imports the suite: {sorted(tops & SUITE_PACKAGES)}"
    assert len(path.read_text().splitlines()) <= 150
    assert "def net(" in path.read_text()


def load_example(stem: str):
    key = CASES[stem][1]
    pytest.importorskip({"torch": "torch", "tf": "tensorflow", "mxnet": "mxnet"}[key])
    name = f"_example_{stem}"
    if name not in sys.modules:
        module_spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{stem}.py")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def run_and_count(key: str, model, x: np.ndarray) -> tuple[tuple, int]:
    """The output shape for ``x`` (N x C x H x W) in eval mode, and the trainable parameters."""
    if key == "torch":
        import torch

        with torch.no_grad():
            out = model.eval()(torch.from_numpy(x))
        return tuple(out.shape), sum(p.numel() for p in model.parameters() if p.requires_grad)
    if key == "tf":
        out = model(x.transpose(0, 2, 3, 1), training=False)
        return tuple(out.shape), sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    import mxnet as mx

    out = model(mx.nd.array(x))  # Gluon infers the shapes at the first forward
    params = model.collect_params().values()
    return out.shape, sum(int(np.prod(p.shape)) for p in params if p.grad_req != "null")


@pytest.mark.parametrize("stem", cases())
def test_builds_with_the_oracles_parameter_count_and_output_shape(stem):
    variant, key, *_ = CASES[stem]
    spec = shared_spec.load(variant)
    model = load_example(stem).net()
    x = np.random.default_rng(0).random((2, spec.in_channels, SIZE, SIZE), dtype=np.float32)
    shape, params = run_and_count(key, model, x)
    assert shape == (2, spec.num_classes)
    assert params == shared_spec.analyze(spec).params


def check(capsys, *argv) -> tuple[int, dict | None, str]:
    from googlenet_suite.cli import main

    code = main(["check", *map(str, (*argv, "--input-size", SIZE, SIZE, "--format", "json"))])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else None), err


@pytest.mark.slow
@pytest.mark.parametrize("stem", cases())
def test_check_agrees_without_a_map(capsys, stem):
    variant, key, option, *_ = CASES[stem]
    load_example(stem)  # skips where the framework is missing
    code, result, err = check(capsys, variant, option, f"{EXAMPLES / stem}.py:net")
    assert code == 0, (err, result and result["verdict"])
    assert result["logits"]["max_abs_diff"] <= 1e-4
