"""Every variant reproduces the figures its source publishes (provenance in the spec)."""

from __future__ import annotations

import pytest

import shared_spec

VARIANTS = shared_spec.list_variants()  # every built-in variant, Inception v3's included
GOOGLENET = shared_spec.list_variants(shared_spec.BUILTIN_SPEC)  # googlenet.json: Table 1's family


def test_all_required_variants_present():
    assert set(VARIANTS) >= {"googlenet", "googlenet-paper", "d2l", "gluon-tutorial", "bn-notebook", "cifar"}
    assert shared_spec.default_variant() == "googlenet"


@pytest.mark.parametrize("variant", VARIANTS)
def test_stage_shapes_match_source(variant):
    spec = shared_spec.load(variant)
    got = shared_spec.analyze(spec).stage_shapes(spec)
    expected = {stage: tuple(shape) for stage, shape in spec.expected["stage_shapes"].items()}
    assert got == expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_provenance_names_a_source(variant):
    spec = shared_spec.load(variant)
    assert spec.provenance["source"] and spec.provenance["reproduces"]


@pytest.mark.parametrize("variant", [v for v in VARIANTS if "params" in shared_spec.load(v).expected])
def test_parameter_count_matches_source(variant):
    spec = shared_spec.load(variant)
    assert shared_spec.analyze(spec).params == spec.expected["params"]


def test_torchvision_counts():
    assert shared_spec.analyze(shared_spec.load("googlenet")).params == 6_624_904
    assert shared_spec.analyze(shared_spec.load("googlenet", aux_logits=True)).params == 13_004_888


def test_cifar_counts_at_100_and_10_classes():
    assert shared_spec.analyze(shared_spec.load("cifar")).params == 6_258_500
    assert shared_spec.analyze(shared_spec.load("cifar", num_classes=10)).params == 6_166_250


def test_paper_counts_recorded_in_provenance():
    spec = shared_spec.load("googlenet-paper")
    assert shared_spec.analyze(spec).params == spec.expected["params"]
    with_aux = shared_spec.analyze(shared_spec.load("googlenet-paper", aux_logits=True))
    assert with_aux.params == spec.expected["params_with_aux"]


def test_paper_table1_output_sizes():
    spec = shared_spec.load("googlenet-paper")
    report = shared_spec.analyze(spec)
    sizes = {name: report.layer(name).out_shape for name in
             ("conv1", "maxpool1", "maxpool2", "maxpool3", "maxpool4", "avgpool")}
    assert sizes == {"conv1": (64, 112, 112), "maxpool1": (64, 56, 56), "maxpool2": (192, 28, 28),
                     "maxpool3": (480, 14, 14), "maxpool4": (832, 7, 7), "avgpool": (1024, 1, 1)}


def test_table1_channels_in_every_variant():
    """Concat outputs are the sums of Table 1's #1x1, #3x3, #5x5 and pool proj columns."""
    for variant in GOOGLENET:
        spec = shared_spec.load(variant)
        report = shared_spec.analyze(spec)
        assert report.layer("inception3a").out_shape[0] == 64 + 128 + 32 + 32
        assert report.layer("inception5b").out_shape[0] == 384 + 384 + 128 + 128


def test_bn_notebook_uses_table1_not_the_182_typo():
    spec = shared_spec.load("bn-notebook")
    assert spec.layer("inception5b.branch2.conv1").out_channels == 192
    assert "182" in spec.provenance["notes"]


def test_five_by_five_branch_per_variant():
    kernels = {v: shared_spec.load(v).layer("inception3a.branch3.conv2").kernel for v in GOOGLENET}
    assert kernels["googlenet"] == (3, 3)  # torchvision's known bug, kept for weight compatibility
    assert kernels["googlenet-paper"] == kernels["d2l"] == kernels["gluon-tutorial"] == (5, 5)
    cifar = shared_spec.load("cifar")
    assert cifar.layer("inception3a.branch3.conv3").kernel == (3, 3)


def test_buffers_are_counted_apart_from_parameters():
    report = shared_spec.analyze(shared_spec.load("googlenet"))
    bn_channels = sum(layer.out_channels for layer in shared_spec.load("googlenet").walk()
                      if isinstance(layer, shared_spec.Conv) and layer.norm is not None)
    assert report.buffers == 2 * bn_channels == 14_560
    assert shared_spec.analyze(shared_spec.load("d2l")).buffers == 0


def test_weight_shapes_add_up_to_the_counts():
    for variant in VARIANTS:
        spec = shared_spec.load(variant, aux_logits=shared_spec.load(variant).has_aux)
        report = shared_spec.analyze(spec)
        shapes = spec.weight_shapes()
        trainable = sum(_size(s) for k, s in shapes.items() if not shared_spec.is_buffer(k))
        buffers = sum(_size(s) for k, s in shapes.items() if shared_spec.is_buffer(k))
        assert (trainable, buffers) == (report.params, report.buffers)


def test_layer_names_are_hierarchical_and_unique():
    spec = shared_spec.load("googlenet", aux_logits=True)
    names = [layer.name for layer in spec.walk()]
    assert len(names) == len(set(names))
    assert "inception4a.branch2.conv1" in names and "aux1.fc2" in names
    assert "inception4a.branch2.conv1.conv.weight" in spec.weight_shapes()


def _size(shape):
    out = 1
    for d in shape:
        out *= d
    return out
