"""The oracle's rules: pool rounding, MACs, minimum input size, overrides."""

from __future__ import annotations

import pytest

import shared_spec
from shared_spec import ceil_extra_padding, pool_output_size


@pytest.mark.parametrize("size,kernel,stride,pad,rounding,expected", [
    (112, 3, 2, 0, "floor", 55),
    (112, 3, 2, 0, "ceil", 56),   # torchvision maxpool1
    (14, 2, 2, 0, "ceil", 7),
    (48, 3, 2, 1, "floor", 24),   # d2l
    (5, 3, 2, 1, "ceil", 3),
    (6, 3, 2, 1, "ceil", 4),      # the last window starts inside the input: kept
    (3, 3, 2, 1, "ceil", 2),      # a third window would start in the padding: dropped (PyTorch rule)
    (2, 3, 2, 0, "ceil", 1),      # window larger than the input, still one output
])
def test_pool_output_size(size, kernel, stride, pad, rounding, expected):
    assert pool_output_size(size, kernel, stride, pad, pad, rounding) == expected


def test_ceil_extra_padding_makes_floor_give_ceil():
    for size in range(3, 40):
        for kernel, stride, pad in ((3, 2, 0), (2, 2, 0), (3, 2, 1), (3, 1, 1)):
            extra = ceil_extra_padding(size, kernel, stride, pad, pad, "ceil")
            assert pool_output_size(size, kernel, stride, pad, pad + extra, "floor") == \
                pool_output_size(size, kernel, stride, pad, pad, "ceil")


def test_min_input_size_torchvision_is_15():
    """torchvision documents min_size (15, 15) for GoogLeNet; the oracle agrees."""
    spec = shared_spec.load("googlenet")
    assert shared_spec.analyze(spec).min_input_size == (15, 15)
    shared_spec.load("googlenet", input_size=(15, 15))
    with pytest.raises(shared_spec.SpecError, match="minimum is 15x15"):
        shared_spec.load("googlenet", input_size=(14, 14))


@pytest.mark.parametrize("variant,minimum", [
    ("d2l", 1), ("cifar", 1), ("gluon-tutorial", 93), ("bn-notebook", 93), ("googlenet-paper", 223),
])
def test_min_input_size_per_variant(variant, minimum):
    report = shared_spec.analyze(shared_spec.load(variant))
    assert report.min_input_size == (minimum, minimum)
    shared_spec.load(variant, input_size=(minimum, minimum))
    if minimum > 1:
        with pytest.raises(shared_spec.SpecError, match=f"minimum is {minimum}x{minimum}"):
            shared_spec.load(variant, input_size=(minimum - 1, minimum - 1))


def test_macs_of_first_conv():
    report = shared_spec.analyze(shared_spec.load("googlenet"))
    assert report.layer("conv1").macs == 64 * 112 * 112 * 3 * 7 * 7
    assert report.layer("fc").macs == 1024 * 1000
    assert report.macs == sum(i.macs for i in report.layers if not i.container)


def test_overrides_change_shapes_and_counts():
    spec = shared_spec.load("d2l", num_classes=7, in_channels=3, input_size=(64, 80))
    report = shared_spec.analyze(spec)
    assert report.input_shape == (3, 64, 80)
    assert report.output_shape == (7,)
    assert report.layer("maxpool1").out_shape == (64, 16, 20)


def test_dense_input_follows_input_size():
    """gluon-tutorial's head flattens a fixed-size average pool: a bigger input widens fc."""
    spec = shared_spec.load("gluon-tutorial", input_size=(128, 128))
    assert spec.layer("fc").in_features == 1024 * 2 * 2


def test_aux_override_adds_heads_and_outputs():
    spec = shared_spec.load("googlenet", aux_logits=True)
    report = shared_spec.analyze(spec)
    assert [name for name, _ in report.aux_outputs] == ["aux1", "aux2"]
    assert report.layer("aux1.pool").out_shape == (512, 4, 4)
    assert report.layer("aux2.fc1").in_shape == (2048,)
    assert all(shape == (1000,) for _, shape in report.aux_outputs)
    assert not shared_spec.load("googlenet").aux_heads


def test_dropout_override_all_and_by_name():
    spec = shared_spec.load("googlenet", aux_logits=True, dropout=0.0)
    assert {layer.rate for layer in spec.walk() if isinstance(layer, shared_spec.Dropout)} == {0.0}
    spec = shared_spec.load("googlenet", aux_logits=True, dropout={"aux1.dropout": 0.5})
    assert spec.layer("aux1.dropout").rate == 0.5 and spec.layer("dropout").rate == 0.2


def test_spec_is_frozen():
    spec = shared_spec.load("googlenet")
    with pytest.raises(AttributeError):
        spec.num_classes = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        spec.layers[0].out_channels = 3  # type: ignore[misc]
