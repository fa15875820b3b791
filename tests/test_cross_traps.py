"""The known cross-framework traps, one test each. Each test also shows that the naive
approach really does diverge, so it cannot pass by accident."""

from __future__ import annotations

import numpy as np
import pytest

import shared_spec

from test_cross_equivalence import max_diff, randomise_bn

pytestmark = pytest.mark.cross

TOL = 1e-4


def _acts(mod, spec, weights, x, seed=0):
    model = mod.build(spec, device="cpu", seed=seed)
    mod.import_weights(model, weights)
    return mod.layer_outputs(model, x)


def test_keras_same_padding_at_stride_2_is_avoided(builder, input_batch):
    """d2l's TF code uses padding='same': at stride 2 on an even size it pads (2, 3) instead of (3, 3)."""
    torch_mod, tf_mod = builder("torch"), builder("tf")
    import keras

    spec = shared_spec.load("d2l")
    weights = torch_mod.export_weights(torch_mod.build(spec, device="cpu", seed=0))
    x = input_batch(spec)
    ours = _acts(tf_mod, spec, weights, x)["conv1"]
    reference = _acts(torch_mod, spec, weights, x)["conv1"]
    assert max_diff(ours, reference) <= TOL
    same = keras.layers.Conv2D(64, 7, strides=2, padding="same", activation="relu")
    same.build((None, 96, 96, 1))
    same.set_weights([weights["conv1.conv.weight"].transpose(2, 3, 1, 0), weights["conv1.conv.bias"]])
    naive = np.asarray(same(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    assert naive.shape == reference.shape and max_diff(naive, reference) > 1e-2


@pytest.mark.parametrize("other", ["tf", "mxnet"])
def test_pool_ceil_mode(other, builder, input_batch):
    """torchvision's ceil-mode pools: 112 -> 56, not floor's 55, with the same values."""
    torch_mod, mod = builder("torch"), builder(other)
    spec = shared_spec.load("googlenet")
    weights = randomise_bn(torch_mod.export_weights(torch_mod.build(spec, device="cpu", seed=0)))
    x = input_batch(spec)
    ref, ours = _acts(torch_mod, spec, weights, x), _acts(mod, spec, weights, x)
    for name in ("maxpool1", "maxpool2", "maxpool3", "maxpool4"):
        assert ours[name].shape == ref[name].shape
        assert max_diff(ours[name], ref[name]) <= TOL, name
    assert ref["maxpool1"].shape[-1] == 56 and ref["maxpool4"].shape[-1] == 7


@pytest.mark.parametrize("other", ["tf", "mxnet"])
def test_lrn_parameterisation(other, builder, input_batch):
    """Paper LRN (size 5, alpha 1e-4, beta 0.75, k 1) in PyTorch's convention matches across frameworks."""
    torch_mod, mod = builder("torch"), builder(other)
    spec = shared_spec.load("googlenet-paper")
    weights = torch_mod.export_weights(torch_mod.build(spec, device="cpu", seed=0))
    x = 30 * input_batch(spec)  # large activations make the LRN denominator matter
    ref, ours = _acts(torch_mod, spec, weights, x), _acts(mod, spec, weights, x)
    for name in ("norm1", "norm2"):
        assert max_diff(ours[name], ref[name]) <= TOL * max(1.0, float(np.abs(ref[name]).max())) , name
    # sensitivity: TF's alpha is per element; using the PyTorch alpha unchanged visibly differs
    import torch

    pre = torch.from_numpy(ref["maxpool1"])
    wrong = torch.nn.functional.local_response_norm(pre, size=5, alpha=1e-4 * 5, beta=0.75, k=1.0).numpy()
    assert max_diff(wrong, ref["norm1"]) > 1e-3


@pytest.mark.parametrize("other", ["tf", "mxnet"])
def test_batchnorm_eps_is_the_specs(other, builder, input_batch):
    """bn-notebook uses eps 1e-3 (PyTorch's default is 1e-5, Gluon's 1e-5, Keras's 1e-3)."""
    torch_mod, mod = builder("torch"), builder(other)
    spec = shared_spec.load("bn-notebook")
    weights = torch_mod.export_weights(torch_mod.build(spec, device="cpu", seed=0))
    for key in weights:
        if key.endswith("running_var"):
            weights[key] = np.full_like(weights[key], 1e-3)  # eps now matters as much as the variance
    x = input_batch(spec)
    ref, ours = _acts(torch_mod, spec, weights, x), _acts(mod, spec, weights, x)
    assert max_diff(ours["conv1"], ref["conv1"]) <= TOL * max(1.0, float(np.abs(ref["conv1"]).max()))
    # sensitivity: the same conv unit with a framework-default eps of 1e-5 gives other numbers
    import torch
    import torch.nn.functional as F

    w = {k: torch.from_numpy(v) for k, v in weights.items() if k.startswith("conv1.")}
    pre = F.conv2d(torch.from_numpy(x), w["conv1.conv.weight"], w["conv1.conv.bias"], stride=2, padding=3)
    default_eps = F.relu(F.batch_norm(pre, w["conv1.bn.running_mean"], w["conv1.bn.running_var"],
                                      w["conv1.bn.gamma"], w["conv1.bn.beta"], training=False, eps=1e-5)).numpy()
    assert max_diff(default_eps, ref["conv1"]) > 1e-2


@pytest.mark.parametrize("other", ["tf", "mxnet"])
def test_bn_momentum_convention(other, builder, input_batch):
    """Spec momentum 0.1 (PyTorch: weight of the new batch) is 0.9 in Keras/Gluon terms: after one
    training step the running mean moves by the same amount."""
    torch_mod, mod = builder("torch"), builder(other)
    spec = shared_spec.load("cifar", dropout=0.0, input_size=(16, 16))
    weights = torch_mod.export_weights(torch_mod.build(spec, device="cpu", seed=0))
    x, y = input_batch(spec), np.array([0, 1])
    moved = {}
    for key, m in (("torch", torch_mod), (other, mod)):
        model = m.build(spec, device="cpu", seed=3)
        m.import_weights(model, weights)
        moved[key] = m.train_step(model, x, y, lr=0.0)["weights"]["prelayer.bn.running_mean"]
    assert np.abs(moved["torch"]).max() > 1e-3  # it did move
    assert max_diff(moved["torch"], moved[other]) <= TOL


def test_nhwc_flatten_order_before_dense(builder, input_batch):
    """torchvision's aux head flattens a 128x4x4 map into fc1: Keras flattens NHWC, so the dense
    weight's input axis is permuted on import. Skipping that permutation visibly breaks the head."""
    torch_mod, tf_mod = builder("torch"), builder("tf")
    spec = shared_spec.load("googlenet", aux_logits=True)
    weights = randomise_bn(torch_mod.export_weights(torch_mod.build(spec, device="cpu", seed=0)))
    x = input_batch(spec)
    ref, ours = _acts(torch_mod, spec, weights, x), _acts(tf_mod, spec, weights, x)
    for name in ("aux1.fc1", "aux1", "aux2"):
        assert max_diff(ours[name], ref[name]) <= TOL, name
    naive = dict(weights)
    w = weights["aux1.fc1.weight"]  # (1024, 128*4*4) in NCHW order; pretend it was NHWC already
    naive["aux1.fc1.weight"] = w.reshape(1024, 4, 4, 128).transpose(0, 3, 1, 2).reshape(1024, -1)
    broken = _acts(tf_mod, spec, naive, x)
    assert max_diff(broken["aux1.fc1"], ref["aux1.fc1"]) > 1e-2


@pytest.mark.parametrize("other", ["tf", "mxnet"])
def test_adaptive_pool_overlapping_windows(other, builder, input_batch):
    """AdaptiveAvgPool2d((4, 4)) on 14x14 uses windows [0,4) [3,7) [7,11) [10,14): no plain pool does."""
    torch_mod, mod = builder("torch"), builder(other)
    spec = shared_spec.load("googlenet", aux_logits=True)
    weights = randomise_bn(torch_mod.export_weights(torch_mod.build(spec, device="cpu", seed=0)))
    x = input_batch(spec)
    ref, ours = _acts(torch_mod, spec, weights, x), _acts(mod, spec, weights, x)
    assert ref["aux1.pool"].shape[1:] == (512, 4, 4)
    assert max_diff(ours["aux1.pool"], ref["aux1.pool"]) <= TOL
    # sensitivity: a plain 4/3 average pool (what a converter would emit) gives other numbers
    import torch

    plain = torch.nn.functional.avg_pool2d(torch.from_numpy(ref["inception4a"]), 5, 3).numpy()
    assert plain.shape == ref["aux1.pool"].shape and max_diff(plain, ref["aux1.pool"]) > 1e-3
