"""torchvision's ``transform_input`` as a spec layer (``--transform-input``): the spec records it, and every
builder computes ``x[:, c] * std_c / 0.5 + (mean_c - 0.5) / 0.5`` before conv1, as
``GoogLeNet._transform_input`` does (never folded into conv1's weights).

Lean: one small input (32x32, above googlenet's 15x15 minimum), each model built once per module.
"""

from __future__ import annotations

import numpy as np
import pytest

import shared_spec
from googlenet_suite import frameworks
from googlenet_suite.cli import main

SIZE = (32, 32)
TOL = 1e-4
# torchvision's own expressions, evaluated in Python as there
TORCHVISION = {"scale": (0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5),
               "shift": ((0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5)}


def _spec(**overrides):
    return shared_spec.load("googlenet", transform_input=True, input_size=SIZE, **overrides)


def oracle(x: np.ndarray, layer: shared_spec.TransformInput) -> np.ndarray:
    """The op in numpy (float32, as the frameworks compute it)."""
    scale = np.asarray(layer.scale, np.float32).reshape(1, -1, 1, 1)
    shift = np.asarray(layer.shift, np.float32).reshape(1, -1, 1, 1)
    return x * scale + shift


# --------------------------------------------------------------------------- the spec


def test_the_layer_is_torchvisions_transform_and_adds_no_weights():
    on, off = _spec(), shared_spec.load("googlenet", input_size=SIZE)
    layer = on.layers[0]
    assert isinstance(layer, shared_spec.TransformInput) and layer.name == "transform_input"
    assert layer.scale == pytest.approx(TORCHVISION["scale"], abs=1e-15)
    assert layer.shift == pytest.approx(TORCHVISION["shift"], abs=1e-15)
    assert on.transform_input and on.has_transform_input and not off.transform_input
    assert "transform_input" not in {lay.name for lay in off.walk()}
    assert on.weight_shapes() == off.weight_shapes()
    assert shared_spec.analyze(on).params == shared_spec.analyze(off).params
    assert shared_spec.analyze(on).layer("transform_input").out_shape == (3, *SIZE)


def test_off_it_takes_any_channels_on_it_needs_three():
    assert shared_spec.load("googlenet", in_channels=1).in_channels == 1
    with pytest.raises(shared_spec.SpecError, match=r"googlenet.transform_input.mean: 3 values for 1 input channels"):
        shared_spec.load("googlenet", in_channels=1, transform_input=True)
    with pytest.raises(shared_spec.SpecError, match="d2l: override transform_input=True: this variant declares no"):
        shared_spec.load("d2l", transform_input=True)
    with pytest.raises(shared_spec.SpecError, match="expected true or false"):
        shared_spec.load("googlenet", transform_input="yes")


def test_cli_override(capsys):
    assert main(["inspect", "googlenet", "--transform-input", "--format", "json"]) == 0
    import json
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert layers[0]["name"] == "transform_input" and layers[0]["out_shape"] == [3, 224, 224]


# --------------------------------------------------------------------------- every builder


@pytest.fixture(scope="module")
def weights():
    """One set of neutral weights with O(1) activations and data-like BN statistics, from numpy alone (so each
    single-framework environment runs its own test)."""
    rng = np.random.default_rng(3)
    out = {}
    for key, shape in _spec().weight_shapes().items():
        if key.endswith(".weight"):  # He-like scale, so that activations keep their size through 60 layers
            out[key] = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif key.endswith((".bn.gamma", ".bn.running_var")):
            out[key] = rng.uniform(0.5, 1.5, shape)
        else:
            out[key] = rng.normal(0, 0.1, shape)
    return {key: value.astype(np.float32) for key, value in out.items()}


@pytest.fixture(scope="module")
def x(input_batch):
    return input_batch(_spec(), 1)


@pytest.fixture(scope="module")
def run(builder, weights, x, cache):
    """``run(key)``: that framework's logits and first two layers with ``weights`` on ``x``, computed once."""

    def outputs(key):
        if key not in cache:
            mod = builder(key)
            model = mod.build(_spec(), device="cpu", seed=0)
            mod.import_weights(model, weights)
            layers = mod.layer_outputs(model, x)
            cache[key] = {"logits": mod.forward(model, x), "transform_input": layers["transform_input"],
                          "conv1": layers["conv1"]}
        return cache[key]

    return outputs


@pytest.mark.parametrize("key", [pytest.param(k, marks=getattr(pytest.mark, k)) for k in frameworks.FRAMEWORKS])
def test_each_builder_computes_the_op(key, run, x):
    out = run(key)
    assert np.abs(out["transform_input"] - oracle(x, _spec().layers[0])).max() <= 1e-6
    assert np.isfinite(out["logits"]).all()


@pytest.mark.cross
@pytest.mark.parametrize("key", [k for k in frameworks.FRAMEWORKS if k != "torch"])
def test_every_framework_agrees_with_torch(key, run):
    ref = run("torch")
    out = run(key)
    assert 1e-2 < float(np.abs(ref["logits"]).max()) < 1e2
    for name in ("transform_input", "conv1", "logits"):
        diff = float(np.abs(out[name] - ref[name]).max())
        assert diff <= TOL, f"{key} vs torch at {name}: {diff:.2e}"
