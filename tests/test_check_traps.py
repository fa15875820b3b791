"""``check``'s diagnosis: one small PyTorch model per known trap (tests/fixtures/trap_models_torch.py, variants in
tests/fixtures/traps.json), each named correctly at the layer where it diverges; a wrong model no trap explains is
said to be so, with the figures; the numpy re-run of every layer (shared_spec.numeric) is checked against the
builder first, so a diagnosis never rests on a wrong reference."""

from __future__ import annotations

from pathlib import Path

import json
import xml.etree.ElementTree as ET

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


def check(capsys, variant, factory, tmp_path=None):
    """Exit code, the JSON report (stdout, or --output with the JUnit file beside it when ``tmp_path``), stderr."""
    argv = ["check", variant, "--spec", SPEC, "--torch", f"{MODELS}:{factory}", "--format", "json"]
    if tmp_path is not None:
        argv += ["--output", str(tmp_path / "check.json"), "--junit", str(tmp_path / "check.xml")]
    code = main(argv)
    out, err = capsys.readouterr()
    if tmp_path is not None:
        out = (tmp_path / "check.json").read_text() if (tmp_path / "check.json").exists() else ""
    return code, (json.loads(out) if out else None), err


def junit_failures(path: Path) -> dict[str, str]:
    """test case name -> failure message, from the JUnit file."""
    root = ET.parse(path).getroot()
    return {case.get("name"): case.find("failure").get("message") for case in root.iter("testcase")
            if case.find("failure") is not None}


@pytest.mark.parametrize("variant,factory,layer,trap", [
    ("conv_s2", "same_padding", "conv1", "same-padding-stride-2"),
    ("conv_s2", "missing_relu", "conv2", "missing-relu"),
    ("conv_s2", "nhwc_flatten", "fc", "nhwc-flatten"),
    ("bn", "bn_eps", "conv1", "bn-eps"),
    ("pools", "zero_pool_padding", "maxpool1", "zero-pool-padding"),
    ("avgpool", "avgpool_count_pad", "pool", "avgpool-count-pad"),
    ("avgpool", "avgpool_adaptive", "pool", "adaptive-pool"),
    ("lrn", "lrn_alpha_total", "norm1", "lrn-alpha-total"),
    ("lrn", "lrn_radius", "norm1", "lrn-radius-size"),
    ("lrn", "lrn_alpha_and_radius", "norm1", "lrn-alpha-and-radius"),
    ("aux_pool", "fixed_aux_pool", "pool", "fixed-aux-pool"),
    ("floor_pool", "pool_kernel_4", "maxpool1", "kernel-one-more"),
])
def test_each_trap_is_diagnosed(capsys, tmp_path, variant, factory, layer, trap):
    code, result, err = check(capsys, variant, factory, tmp_path)
    assert code == 1, err
    first = result["first_divergence"]
    assert first["layer"] == layer
    assert first["diagnosis"]["trap"] == trap, first["traps"]
    assert first["diagnosis"]["max_abs_diff"] <= 1e-5
    assert first["numpy_vs_reference"] <= 1e-5  # the trap-free re-run reproduces the suite's own layer
    others = [t for t in first["traps"] if t["trap"] != trap]
    # the name is not a coin toss (null: no tensor of yours has that trap's shape)
    assert all(t["max_abs_diff"] is None or t["max_abs_diff"] > 1e-4 for t in others), others
    assert "reproduced by" in result["verdict"]
    failures = junit_failures(tmp_path / "check.xml")
    assert "reproduced by" in failures[layer] and "logits" in failures


def test_the_right_model_agrees(capsys, tmp_path):
    code, result, err = check(capsys, "conv_s2", "conv_s2_ok", tmp_path)
    assert code == 0 and result["agree"], err
    root = ET.parse(tmp_path / "check.xml").getroot()
    assert root.get("failures") == "0" and int(root.get("tests")) == len(result["layers"]) + 1


def test_no_trap_reproduces_says_so_with_figures(capsys):
    code, result, _ = check(capsys, "conv_s2", "off_by_a_percent")
    assert code == 1 and result["first_divergence"]["diagnosis"] is None
    assert "no known trap reproduces it (closest: " in result["verdict"]


# an architecture mistake: a layer output of another shape; exit 1, the report, the trap that gives that shape
@pytest.mark.parametrize("variant,factory,layer,expected,yours,trap,cause", [
    ("pools", "floor_rounding", "maxpool2", (4, 4, 4), (4, 3, 3), "floor-rounding",
     "floor rounding where the spec has ceil"),
    ("floor_pool", "ceil_rounding", "maxpool1", (4, 7, 7), (4, 8, 8), "ceil-rounding",
     "ceil rounding where the spec has floor"),
    ("pools", "pool_without_padding", "maxpool1", (4, 8, 8), (4, 7, 7), "missing-padding",
     "no padding where the spec pads (1, 1, 1, 1)"),
    ("pools", "pool_kernel_2", "maxpool1", (4, 8, 8), (4, 9, 9), "kernel-one-less",
     "a 2x2 kernel where the spec has 3x3"),
    ("conv_s2", "conv1_padded_2", "conv1", (4, 8, 8), (4, 7, 7), "padding-one-less",
     "padding (2, 2, 2, 2) where the spec pads (3, 3, 3, 3)"),
    ("conv_s2", "conv2_padded_3", "conv2", (4, 8, 8), (4, 10, 10), "padding-one-more",
     "padding (3, 3, 3, 3) where the spec pads (2, 2, 2, 2)"),
    ("conv_s2", "conv2_unpadded", "conv2", (4, 8, 8), (4, 4, 4), "missing-padding",
     "no padding where the spec pads (2, 2, 2, 2)"),
])
def test_a_shape_difference_is_a_finding_named_with_its_trap(capsys, tmp_path, variant, factory, layer, expected,
                                                             yours, trap, cause):
    code, result, err = check(capsys, variant, factory, tmp_path)
    assert code == 1 and "Traceback" not in err, err
    arch = result["architecture"]
    assert (arch["where"], arch["layer"], tuple(arch["expected"]), tuple(arch["yours"])) == \
        ("output", layer, expected, yours)
    assert arch["trap"] == trap and arch["cause"] == cause and arch["tensor"]
    assert result["verdict"].startswith(f"{variant} vs ") and "DIVERGES: another architecture: " \
        f"shape differs at layer {layer}: the {variant} variant gives {expected}, your model {yours} at " \
        f"{arch['tensor']}; reproduced by: {cause}" in result["verdict"]
    assert [row["name"] for row in result["layers"]][-1] == layer  # the table, up to that layer
    failures = junit_failures(tmp_path / "check.xml")
    assert cause in failures[layer] and cause in failures["architecture (output)"]


def test_a_3x3_where_the_variant_has_a_5x5_is_named_at_mapping(capsys, tmp_path):
    code, result, err = check(capsys, "conv_s2", "kernel3", tmp_path)
    assert code == 1, err
    line = result["verdict"]
    assert "'conv2.conv.weight' (4, 4, 5, 5) meets 'conv2.weight' (4, 4, 3, 3)" in line
    assert "a 3x3 where the variant has a 5x5" in line
    arch = result["architecture"]
    assert (arch["where"], arch["layer"], arch["tensor"], arch["trap"]) == ("weights", "conv2", "conv2.weight",
                                                                            "kernel-size")
    # the layers' shapes, read with its own weights: conv2's output is another shape
    rows = {row["name"]: row["status"] for row in result["layers"]}  # a 3x3 padded 1 keeps the shape
    assert rows == {"conv1": "shape as the spec", "conv2": "shape as the spec", "flatten": "not recorded",
                    "fc": "shape as the spec"}
    assert "a 3x3 where the variant has a 5x5" in junit_failures(tmp_path / "check.xml")["architecture (weights)"]


@pytest.mark.parametrize("variant", ["conv_s2", "bn", "pools", "floor_pool", "avgpool", "lrn", "aux_pool"])
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
