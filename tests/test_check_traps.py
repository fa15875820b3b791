"""``check``'s diagnosis: one small PyTorch model per known trap (tests/fixtures/trap_models_torch.py, variants in
tests/fixtures/traps.json), each named correctly at the layer where it diverges; a wrong model no trap explains is
said to be so, with the figures; the numpy re-run of every layer (shared_spec.numeric) is checked against the
builder first, so a diagnosis never rests on a wrong reference."""

from __future__ import annotations

from pathlib import Path

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import impl_torch  # noqa: E402
import shared_spec  # noqa: E402
from shared_spec import numeric  # noqa: E402
from googlenet_suite.cli import main  # noqa: E402

pytestmark = pytest.mark.torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"

SPEC = f"{FIXTURES}/traps.json"
MODELS = f"{FIXTURES}/trap_models_torch.py"


def check(capsys, variant, factory):
    code = main(["check", variant, "--spec", SPEC, "--torch", f"{MODELS}:{factory}", "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else None), err


@pytest.mark.parametrize("variant,factory,layer,trap", [
    ("conv_s2", "same_padding", "conv1", "same-padding-stride-2"),
    ("conv_s2", "missing_relu", "conv2", "missing-relu"),
    ("conv_s2", "nhwc_flatten", "fc", "nhwc-flatten"),
    ("bn", "bn_eps", "conv1", "bn-eps"),
    ("pools", "zero_pool_padding", "maxpool1", "zero-pool-padding"),
    ("lrn", "lrn_alpha_total", "norm1", "lrn-alpha-total"),
    ("lrn", "lrn_radius", "norm1", "lrn-radius-size"),
    ("aux_pool", "fixed_aux_pool", "pool", "fixed-aux-pool"),
])
def test_each_trap_is_diagnosed(capsys, variant, factory, layer, trap):
    code, result, err = check(capsys, variant, factory)
    assert code == 1, err
    first = result["first_divergence"]
    assert first["layer"] == layer
    assert first["diagnosis"]["trap"] == trap, first["traps"]
    assert first["diagnosis"]["max_abs_diff"] <= 1e-5
    assert first["numpy_vs_reference"] <= 1e-5  # the trap-free re-run reproduces the suite's own layer
    others = [t for t in first["traps"] if t["trap"] != trap]
    assert all(t["max_abs_diff"] > 1e-4 for t in others), others  # the name is not a coin toss
    assert "reproduced by" in result["verdict"]


def test_the_right_model_agrees(capsys):
    code, result, err = check(capsys, "conv_s2", "conv_s2_ok")
    assert code == 0 and result["agree"], err


def test_no_trap_reproduces_says_so_with_figures(capsys):
    code, result, _ = check(capsys, "conv_s2", "off_by_a_percent")
    assert code == 1 and result["first_divergence"]["diagnosis"] is None
    assert "no known trap reproduces it (closest: " in result["verdict"]


def test_floor_rounding_is_a_shape_difference_named_with_its_trap(capsys):
    code, result, err = check(capsys, "pools", "floor_rounding")
    line = err.strip().splitlines()[-1]
    assert code == 2 and result is None
    assert line.startswith("error: shape differs at layer maxpool2: the pools variant gives (4, 4, 4)") and \
        "(4, 3, 3)" in line and "floor rounding where the spec has ceil" in line


def test_a_3x3_where_the_variant_has_a_5x5_is_named_at_mapping(capsys):
    code, result, err = check(capsys, "conv_s2", "kernel3")
    line = err.strip().splitlines()[-1]
    assert code == 2 and "'conv2.conv.weight' (4, 4, 5, 5) meets 'conv2.weight' (4, 4, 3, 3)" in line
    assert "a 3x3 where the variant has a 5x5" in line


@pytest.mark.parametrize("variant", ["conv_s2", "bn", "pools", "lrn", "aux_pool"])
def test_numpy_layers_match_the_torch_builder(variant):
    spec = shared_spec.load(variant, spec_file=SPEC)
    model = impl_torch.build(spec, device="cpu", seed=0)
    weights = {k: v + 0.1 for k, v in impl_torch.export_weights(model).items()}  # non-trivial BN statistics
    weights = {k: (np.abs(v) + 0.5 if k.endswith("running_var") else v) for k, v in weights.items()}
    impl_torch.import_weights(model, weights)
    x = np.random.default_rng(0).standard_normal((1, *spec.input_shape)).astype(np.float32)
    acts = impl_torch.layer_outputs(model, x)
    value = x
    for layer in spec.layers:
        value = numeric.forward(layer, value, weights)
        np.testing.assert_allclose(value, acts[layer.name], rtol=1e-5, atol=1e-5, err_msg=layer.name)


def test_keras_same_padding_puts_the_odd_cell_after():
    assert numeric.same_padding(96, 7, 2) == (2, 3)
    assert numeric.same_padding(48, 3, 2) == (0, 1)
    assert numeric.same_padding(12, 3, 1) == (1, 1)


def test_table_output_shows_the_traps_and_the_departures(capsys, tmp_path):
    out = tmp_path / "check.txt"
    code = main(["check", "conv_s2", "--spec", SPEC, "--torch", f"{MODELS}:same_padding", "--output", str(out)])
    capsys.readouterr()
    text = out.read_text()
    assert code == 1
    assert "traps re-run at conv1 (input: the input batch)" in text and "same-padding-stride-2" in text
    assert "every departure from the spec" in text and "DIVERGES" in text.splitlines()[-1]
