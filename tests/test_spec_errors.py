"""Bad input: one line naming the file, the JSON path and what was expected."""

from __future__ import annotations

import pytest

import shared_spec
from shared_spec import SpecError


def _load_error(path, variant="googlenet", **overrides) -> str:
    with pytest.raises(SpecError) as info:
        shared_spec.load(variant, spec_file=path, **overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_malformed_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"format_version": 1,,}')
    message = _load_error(path)
    assert str(path) in message and "line 1 column" in message and "malformed JSON" in message


def test_missing_file(tmp_path):
    message = _load_error(tmp_path / "nope.json")
    assert "nope.json" in message and "cannot read" in message


def test_unknown_key_is_an_error(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][0].update(dilation=2))
    message = _load_error(path)
    assert "$.variants.googlenet.layers[0]" in message and "dilation" in message


def test_unknown_op_is_an_error(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][0].update(op="conv3d"))
    message = _load_error(path)
    assert "$.variants.googlenet.layers[0].op" in message and "unknown op 'conv3d'" in message


def test_schema_type_violation(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][1].update(kernel=0))
    assert "$.variants.googlenet.layers[1].kernel" in _load_error(path)


def test_missing_required_key(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"].pop("init"))
    message = _load_error(path)
    assert "$.variants.googlenet" in message and "'init' is a required property" in message


def test_channel_count_mismatch_names_the_layer(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][6].update({"in": 999}))
    message = _load_error(path)
    assert "$.variants.googlenet.layers[6]" in message
    assert "declares 999 input channels, but the previous layer gives 256" in message


def test_dense_feature_mismatch(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][-1].update({"in": 1000}))
    message = _load_error(path)
    assert "$.variants.googlenet.layers[21]" in message and "declares 1000 input features" in message


def test_table_row_of_wrong_length(write_spec):
    path = write_spec(lambda d: d["tables"]["table1"]["rows"]["inception3a"].pop())
    assert "$.tables.table1.rows.inception3a: has 5 values for 6 columns" in _load_error(path)


def test_branch_spatial_sizes_must_agree(write_spec):
    def mutate(doc):
        doc["blocks"]["inception_3x3"]["layer"]["branches"]["branch2"][1]["padding"] = 0
    message = _load_error(write_spec(mutate))
    assert "$.blocks.inception_3x3.layer (in $.variants.googlenet.layers[5])" in message
    assert "branches end in different spatial sizes" in message


def test_spatial_size_reaching_zero(write_spec):
    def mutate(doc):
        doc["variants"]["googlenet"]["input"]["size"] = [16, 16]
        doc["variants"]["googlenet"]["layers"][1]["stride"] = 3
    message = _load_error(write_spec(mutate))
    assert "too small" in message and "minimum is" in message and "$.variants.googlenet.layers[" in message


def test_pool_padding_more_than_half_kernel(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][1].update(padding=2))
    assert "pads more than half its kernel" in _load_error(path)


def test_duplicate_names(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"].insert(2, {"name": "conv1", "op": "dropout", "rate": 0.1}))
    assert "duplicate layer name 'conv1'" in _load_error(path)


def test_unknown_block_lists_known(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layer_defaults"]["inception"].update(block="v9"))
    message = _load_error(path)
    assert "unknown block 'v9'" in message and "inception_3x3" in message


def test_unknown_reference(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][-1].update(out="$classes"))
    assert "unknown reference '$classes'" in _load_error(path)


def test_dense_without_flatten(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"].pop(19))
    assert "add a flatten layer" in _load_error(path)


def test_unknown_variant_lists_known():
    with pytest.raises(SpecError, match="unknown variant 'resnet'; known variants: googlenet, googlenet-paper"):
        shared_spec.load("resnet")


@pytest.mark.parametrize("overrides,fragment", [
    ({"num_classes": 0}, "num_classes=0: expected an integer >= 1"),
    ({"num_classes": 2.5}, "num_classes=2.5"),
    ({"in_channels": -1}, "in_channels=-1"),
    ({"input_size": (0, 10)}, "input_size=(0, 10)"),
    ({"input_size": (8, 8)}, "minimum is 15x15"),
    ({"aux_logits": "yes"}, "aux_logits='yes'"),
    ({"dropout": 1.0}, "expected a rate in [0, 1)"),
    ({"dropout": {"fc": 0.1}}, "no dropout layer named 'fc'"),
    ({"width": 2}, "unknown override 'width'"),
])
def test_bad_overrides(overrides, fragment):
    with pytest.raises(SpecError) as info:
        shared_spec.load("googlenet", **overrides)
    assert fragment in str(info.value)


def test_aux_on_a_variant_without_aux():
    with pytest.raises(SpecError, match="d2l: override aux_logits=True: this variant has no aux heads"):
        shared_spec.load("d2l", aux_logits=True)
