"""``googlenet-suite check --keras``: d2l's TensorFlow code as it is, and two small Keras models (a right one whose
channels-last Flatten feeds a dense layer, and one with 'same' padding at stride 2)."""

from __future__ import annotations

from pathlib import Path

import json

import pytest

pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from googlenet_suite.check import run as check_run  # noqa: E402
from googlenet_suite.cli import main  # noqa: E402

pytestmark = pytest.mark.tf

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module", autouse=True)
def one_reference_per_variant():
    """The suite's reference (weights calibrated in Keras, activations) made once per variant for this module:
    the check reads it and never changes it, and Keras builds are the slow part of these tests."""
    made, reference = {}, check_run.reference

    def cached(spec, key, *, batch, seed):
        index = (repr(spec), key, batch, seed)
        if index not in made:
            made[index] = reference(spec, key, batch=batch, seed=seed)
        return made[index]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(check_run, "reference", cached)
        yield


def check(capsys, *argv):
    code = main(["check", *map(str, argv), "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else None), err


def test_d2l_tensorflow_code_diverges_at_its_stride_2_same_conv(capsys):
    code, result, err = check(capsys, "d2l", "--input-size", 32, 32, "--keras", f"{FIXTURES}/d2l_tf.py:net")
    assert code == 1, err
    first = result["first_divergence"]
    assert first["layer"] == "conv1" and first["diagnosis"]["trap"] == "same-padding-stride-2"
    assert "pads (2, 3, 2, 3) where the spec pads (3, 3, 3, 3)" in first["diagnosis"]["detail"]
    assert result["logits"]["max_abs_diff"] > 1e-4
    # walked on, layer by layer from its own inputs: the only departures are the stride-2 'same' layers (at 32x32,
    # maxpool4 sees 2x2, where 'same' pads (0, 1) and the spec (1, 1) cover the same two cells: four; at 96, five)
    departures = [(d["layer"], d["status"], d["detail"].split(":")[0]) for d in result["departures"]]
    assert departures == [(name, "trap", "same-padding-stride-2")
                          for name in ("conv1", "maxpool1", "maxpool2", "maxpool3")]
    assert result["walk"]["as_the_spec"] == result["walk"]["layers"] - 4


def test_keras_model_with_explicit_padding_agrees_through_its_nhwc_flatten(capsys):
    code, result, err = check(capsys, "conv_s2", "--spec", f"{FIXTURES}/traps.json", "--keras",
                              f"{FIXTURES}/trap_models_keras.py:conv_s2_ok")
    assert code == 0, (err, result and result["verdict"])
    rows = {row["name"]: row for row in result["layers"]}
    assert rows["flatten"]["view"] == "in channels-first order" and rows["fc"]["status"] == "agree"


def test_keras_same_at_stride_2_is_named(capsys):
    code, result, err = check(capsys, "conv_s2", "--spec", f"{FIXTURES}/traps.json", "--keras",
                              f"{FIXTURES}/trap_models_keras.py:conv_s2_same")
    assert code == 1, err
    assert result["first_divergence"]["diagnosis"]["trap"] == "same-padding-stride-2"


@pytest.mark.parametrize("factory", ["functional", "subclassed", "nested"])
def test_correct_keras_models_agree_with_no_map(capsys, factory):
    """Parallel branches with explicit ZeroPadding2D, as a functional graph (run a level at a time: the graph, not
    the order, tells inception3b's two 128x256x1x1 convs apart) and as a subclassed model."""
    code, result, err = check(capsys, "d2l", "--input-size", 32, 32, "--keras", f"{FIXTURES}/forms_keras.py:{factory}")
    assert code == 0, (err, result and result["verdict"])
    assert result["logits"]["max_abs_diff"] <= 1e-4 and result["mapping"]["notes"] == []
    assert sum(row["status"] == "agree" for row in result["layers"]) >= 80
    if factory == "functional":
        rows = {row["name"]: row["record"] for row in result["layers"]}
        assert rows["inception3b.branch1.conv1"] == "inception3b_1x1"
        assert rows["inception3b.branch2.conv1"] == "inception3b_3x3_reduce"


def test_the_suites_handwritten_keras_googlenet_agrees_with_no_map(capsys):
    """impl_tf.handwritten:googlenet, a functional model with explicit padding whose two 128x256x1x1 convs in
    inception3b only its graph tells apart (at 224x224, as the factory builds it: docs/check.md)."""
    code, result, err = check(capsys, "googlenet", "--input-size", 32, 32, "--keras",
                              f"{FIXTURES}/forms_keras.py:handwritten_googlenet")
    assert code == 0, (err, result and result["verdict"])
    assert result["mapping"]["notes"] == [] and all(row["status"] == "agree" for row in result["layers"])


def test_not_a_keras_model(capsys):
    code, _, err = check(capsys, "d2l", "--keras", "json:JSONDecoder")
    assert code == 2 and "expected a keras.Model, got json.decoder.JSONDecoder" in err.strip().splitlines()[-1]
