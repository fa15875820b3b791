"""``googlenet-suite check --keras``: d2l's TensorFlow code as it is, and two small Keras models (a right one whose
channels-last Flatten feeds a dense layer, and one with 'same' padding at stride 2)."""

from __future__ import annotations

from pathlib import Path

import json

import pytest

pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from googlenet_suite.cli import main  # noqa: E402

pytestmark = pytest.mark.tf

FIXTURES = Path(__file__).resolve().parent / "fixtures"


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


def test_not_a_keras_model(capsys):
    code, _, err = check(capsys, "d2l", "--keras", "json:JSONDecoder")
    assert code == 2 and "expected a keras.Model, got json.decoder.JSONDecoder" in err.strip().splitlines()[-1]
