"""What only the Gluon builder has: hybridization, MXNet's BN and pooling traps, numpy references.

The contract every framework shares (counts, shapes, seeds, weights, arguments) is in test_contract.py.

Each variant is built once per module (aux heads on where it has them, at a
small input size) and given random BN statistics and biases, so that layer
checks see non-trivial values.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

import impl_mxnet  # noqa: E402
import shared_spec  # noqa: E402
from shared_spec import numeric  # noqa: E402  (the numpy reference, also used by `check`)
from shared_spec import AdaptiveAvgPool, Aux, Concat, Conv, Dense, Flatten, GlobalAvgPool, LRN, Pool  # noqa: E402
from shared_spec.oracle import ShapeError, output_shape  # noqa: E402

pytestmark = pytest.mark.mxnet

VARIANTS = shared_spec.list_variants(shared_spec.BUILTIN_SPEC)  # GoogLeNet (Inception v3: test_inception_v3)
BATCH = 2


def small_size(variant: str) -> int:
    """A small input the variant accepts (odd sizes exercise the ceil rounding)."""
    return max(shared_spec.analyze(shared_spec.load(variant)).min_input_size[0], 41)


def load(variant: str, **overrides) -> shared_spec.Spec:
    overrides.setdefault("input_size", small_size(variant))
    if shared_spec.load(variant).has_aux:
        overrides.setdefault("aux_logits", True)
    return shared_spec.load(variant, **overrides)


def randomized(weights: dict[str, np.ndarray], seed=0) -> dict[str, np.ndarray]:
    """The same weights with random BN statistics and biases (init leaves them trivial)."""
    rng = np.random.RandomState(seed)
    out = dict(weights)
    for key, value in weights.items():
        if key.endswith((".bn.gamma", ".bn.running_var")):
            out[key] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
        elif key.endswith((".bn.beta", ".bn.running_mean", ".bias")):
            out[key] = rng.normal(0, 0.1, value.shape).astype(np.float32)
    return out


class Built:
    def __init__(self, variant: str, input_batch):
        self.spec = load(variant)
        self.model = impl_mxnet.build(self.spec, device="cpu", seed=0)
        impl_mxnet.import_weights(self.model, randomized(impl_mxnet.export_weights(self.model)))
        self.weights = impl_mxnet.export_weights(self.model)
        self.x = input_batch(self.spec, BATCH)
        self.analysis = shared_spec.analyze(self.spec)
        self._outputs = None

    @property
    def outputs(self) -> dict[str, np.ndarray]:
        if self._outputs is None:
            self._outputs = impl_mxnet.layer_outputs(self.model, self.x)
        return self._outputs


@pytest.fixture(params=VARIANTS)
def built(request, cache, input_batch) -> Built:
    if request.param not in cache:
        cache[request.param] = Built(request.param, input_batch)
    return cache[request.param]


def assert_close(actual, expected, rtol=1e-4):
    expected = np.asarray(expected, dtype=np.float64)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(1.0, float(np.abs(expected).max())))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    logits = logits - logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


# --------------------------------------------------------------------------- numpy references


def layer_inputs(layers, previous=None, out=None) -> dict[str, str | None]:
    """Layer name -> the name of the layer whose output it takes (None: the model input)."""
    out = {} if out is None else out
    for layer in layers:
        out[layer.name] = previous
        if isinstance(layer, Concat):
            for branch in layer.branches:
                layer_inputs(branch.layers, previous, out)
        elif isinstance(layer, Aux):
            layer_inputs(layer.layers, previous, out)
            continue  # the main path goes on with the same tensor
        previous = layer.name
    return out


# --------------------------------------------------------------------------- structure


def test_names_are_the_spec_names(built):
    shapes = built.spec.weight_shapes()
    assert list(impl_mxnet.named_parameters(built.model)) == list(shapes)
    assert list(built.model.collect_params()) == list(shapes)  # Gluon's own names, through explicit prefixes
    assert {key: value.shape for key, value in built.weights.items()} == shapes
    assert all(value.dtype == np.float32 for value in built.weights.values())
    blocks = dict(impl_mxnet.named_blocks(built.model))
    assert [layer.name for layer in built.spec.walk() if layer.name not in blocks] == []


# --------------------------------------------------------------------------- layers against numpy


def test_pools_and_lrn_match_numpy(built):
    inputs = layer_inputs(built.spec.layers)
    checked = 0
    for layer in built.spec.walk():
        source = inputs[layer.name]
        x = built.x if source is None else built.outputs[source]
        if isinstance(layer, Pool):
            expected = numeric.pool(layer, x)
        elif isinstance(layer, AdaptiveAvgPool):
            expected = numeric.adaptive_avgpool(x, layer.output_size)
        elif isinstance(layer, GlobalAvgPool):
            expected = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
        elif isinstance(layer, LRN):
            expected = numeric.lrn(layer, x)
        else:
            continue
        assert_close(built.outputs[layer.name], expected, rtol=1e-5)
        checked += 1
    assert checked >= 5


def test_convs_dense_and_containers_match_numpy(built):
    """Stem convs, the first concat's convs, aux heads, flatten, dense and every concat."""
    inputs = layer_inputs(built.spec.layers)
    first_concat = next(layer.name for layer in built.spec.layers if isinstance(layer, Concat))
    checked = set()
    for layer in built.spec.walk():
        source = inputs[layer.name]
        x = built.x if source is None else built.outputs[source]
        out = built.outputs[layer.name]
        if isinstance(layer, Conv) and ("." not in layer.name or layer.name.startswith((first_concat + ".", "aux"))):
            assert_close(out, numeric.conv(layer, x, built.weights))
        elif isinstance(layer, Dense):
            expected = x.astype(np.float64) @ built.weights[f"{layer.name}.weight"].T.astype(np.float64)
            if layer.bias:
                expected = expected + built.weights[f"{layer.name}.bias"]
            assert_close(out, np.maximum(expected, 0) if layer.activation == "relu" else expected)
        elif isinstance(layer, Flatten):
            np.testing.assert_array_equal(out, x.reshape(len(x), -1))  # channels-first order
        elif isinstance(layer, Concat):
            ends = [built.outputs[branch.layers[-1].name] for branch in layer.branches]
            np.testing.assert_array_equal(out, np.concatenate(ends, axis=1))
        elif isinstance(layer, Aux):
            np.testing.assert_array_equal(out, built.outputs[layer.layers[-1].name])
        else:
            continue
        checked.add(layer.op)
    assert {"conv", "dense", "concat"} <= checked


def test_lrn_alpha_convention():
    """MXNet's LRN divides alpha by size like the spec; a large alpha makes any other convention fail."""
    layer = LRN("lrn", "norm", size=5, alpha=2.0, beta=0.75, k=1.5)
    block = impl_mxnet.OPS["lrn"](layer, {})
    x = np.random.RandomState(1).uniform(0, 3, (2, 9, 4, 4)).astype(np.float32)
    out = block(mx.nd.array(x)).asnumpy()
    assert_close(out, numeric.lrn(layer, x), rtol=1e-5)
    not_divided = numeric.lrn(dataclasses.replace(layer, alpha=layer.alpha * layer.size), x)  # alpha * sum a^2
    assert np.abs(out - not_divided).max() > 0.1


def pool_cases():
    for op in ("maxpool", "avgpool"):
        for kernel, stride in ((2, 2), (3, 1), (3, 2), (2, 3), (3, 3)):
            for padding in ((0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 1, 0), (1, 0, 0, 1)):
                if max(padding) > kernel // 2:
                    continue
                for rounding in ("floor", "ceil"):
                    for include in ((False, True) if op == "avgpool" else (False,)):
                        yield Pool(op, "pool", (kernel, kernel), (stride, stride), padding, rounding, include)


def test_pool_sizes_and_values_match_oracle():
    """Every (kernel, stride, padding, rounding) on sizes 3..8: the oracle's size, PyTorch's values."""
    routes = set()
    rng = np.random.RandomState(2)
    for layer in pool_cases():
        for size in range(3, 9):
            shape = (3, size, size + 1)
            try:
                expected_shape = output_shape(layer, shape)
            except ShapeError:
                continue  # too small, or a ceil average pool the oracle rejects
            pad_width, kwargs = impl_mxnet.pool_plan(layer, shape)
            routes.add("explicit" if pad_width else kwargs["pooling_convention"])
            x = rng.randn(2, *shape).astype(np.float32)  # negative values: -inf padding matters
            block = impl_mxnet.OPS[layer.op](layer, {layer.name: shape})
            out = block(mx.nd.array(x)).asnumpy()
            assert out.shape[1:] == expected_shape, (layer, size)
            assert_close(out, numeric.pool(layer, x), rtol=1e-5)
            if pad_width:
                block.hybridize()
                assert_close(block(mx.nd.array(x)).asnumpy(), numeric.pool(layer, x), rtol=1e-5)
    assert routes == {"valid", "full", "explicit"}


def test_ceil_pool_where_mxnet_full_overcounts():
    """kernel 2, stride 2, pad 1, ceil on 3: MXNet's 'full' gives 3 (a last window starting in the padding);
    PyTorch drops that window and gets 2, which is the 'valid' (floor) size with the same windows."""
    layer = Pool("maxpool", "pool", (2, 2), (2, 2), (1, 1, 1, 1), "ceil", False)
    assert shared_spec.pool_output_size(3, 2, 2, 1, 1, "ceil") == 2
    pad_width, kwargs = impl_mxnet.pool_plan(layer, (1, 3, 3))
    assert pad_width is None and kwargs["pooling_convention"] == "valid"
    full = mx.nd.Pooling(mx.nd.ones((1, 1, 3, 3)), kernel=(2, 2), stride=(2, 2), pad=(1, 1),
                         pool_type="max", pooling_convention="full")
    assert full.shape == (1, 1, 3, 3)
    x = np.random.RandomState(4).randn(1, 2, 3, 3).astype(np.float32)
    out = impl_mxnet.OPS["maxpool"](layer, {"pool": (2, 3, 3)})(mx.nd.array(x)).asnumpy()
    assert out.shape == (1, 2, 2, 2)
    assert_close(out, numeric.pool(layer, x), rtol=1e-6)


def test_conv_with_asymmetric_padding():
    """Gluon pads convs symmetrically; (top 0, bottom 1, left 2, right 1) is padded explicitly first."""
    layer = Conv("conv", "unit", 3, 5, (3, 3), (2, 2), (0, 1, 2, 1), True, shared_spec.BatchNorm(1e-3, 0.1), "relu")
    block = impl_mxnet.OPS["conv"](layer, {})
    block.initialize(mx.init.Uniform(0.5))
    weights = {f"unit.{key}": p.data().asnumpy() for key, p in impl_mxnet.named_parameters(block).items()}
    x = np.random.RandomState(5).randn(2, 3, 8, 7).astype(np.float32)
    expected = numeric.conv(layer, x, weights)
    assert expected.shape == (2, 5, 4, 4)
    assert_close(block(mx.nd.array(x)).asnumpy(), expected)
    block.hybridize()
    assert_close(block(mx.nd.array(x)).asnumpy(), expected)


# --------------------------------------------------------------------------- modes


def test_hybridized_matches_imperative(built):
    model = impl_mxnet.build(built.spec, device="cpu", seed=1, hybridize=True)
    impl_mxnet.import_weights(model, built.weights)
    hybrid = impl_mxnet.forward(model, built.x)
    imperative = impl_mxnet.forward(built.model, built.x)
    assert model._active and not built.model._active
    assert np.abs(hybrid - imperative).max() <= 1e-5
    training = impl_mxnet.forward(model, built.x, training=True)
    assert isinstance(training, tuple) == built.spec.aux_logits
    # layer_outputs runs imperatively (hooks) and leaves the model hybridized
    outputs = impl_mxnet.layer_outputs(model, built.x)
    assert model._active
    assert np.abs(outputs[built.spec.layers[-1].name] - imperative).max() <= 1e-5
    np.testing.assert_array_equal(impl_mxnet.forward(model, built.x), hybrid)


def test_train_and_eval_semantics(built):
    spec, model, x = built.spec, built.model, built.x
    before = impl_mxnet.export_weights(model)
    evals = [impl_mxnet.forward(model, x) for _ in range(2)]
    assert isinstance(evals[0], np.ndarray) and evals[0].shape == (BATCH, spec.num_classes)
    np.testing.assert_array_equal(evals[0], evals[1])

    trains = [impl_mxnet.forward(model, x, training=True) for _ in range(2)]
    if spec.aux_logits:
        assert isinstance(trains[0], tuple) and len(trains[0]) == 1 + len(spec.aux_heads)
        assert all(out.shape == (BATCH, spec.num_classes) for out in trains[0])
    else:
        assert isinstance(trains[0], np.ndarray)
    mains = [t[0] if isinstance(t, tuple) else t for t in trains]
    assert mains[0].shape == (BATCH, spec.num_classes)

    has_bn = any(isinstance(layer, Conv) and layer.norm is not None for layer in spec.walk())
    has_dropout = any(layer.op == "dropout" and layer.rate > 0 for layer in spec.walk())
    # BN batch statistics and dropout make training differ from eval; d2l has neither.
    assert (np.abs(mains[0] - evals[0]).max() > 1e-4) == (has_bn or has_dropout)
    # dropout is random in training; BN batch statistics alone are deterministic
    assert (np.abs(mains[0] - mains[1]).max() > 0) == has_dropout
    # MXNet updates BN running statistics in backward only: forward passes change nothing
    after = impl_mxnet.export_weights(model)
    assert all(np.array_equal(before[key], after[key]) for key in before)


def test_bn_running_variance_is_biased():
    """MXNet's running_var takes the biased batch variance (PyTorch: unbiased), in backward."""
    layer = Conv("conv", "unit", 3, 4, (1, 1), (1, 1), (0, 0, 0, 0), False, shared_spec.BatchNorm(1e-3, 0.1), None)
    block = impl_mxnet.OPS["conv"](layer, {})
    block.initialize(mx.init.One())
    x = mx.nd.array(np.random.RandomState(3).randn(2, 3, 3, 3) * 2 + 1)
    z = block.conv(x).asnumpy().astype(np.float64)
    with mx.autograd.record(train_mode=True):
        out = block(x)
    np.testing.assert_array_equal(block.bn.running_var.data().asnumpy(), np.ones(4))  # not yet: forward only
    out.backward()
    mean, var = z.mean(axis=(0, 2, 3)), z.var(axis=(0, 2, 3))
    assert_close(block.bn.running_mean.data().asnumpy(), 0.1 * mean, rtol=1e-5)
    assert_close(block.bn.running_var.data().asnumpy(), 0.9 + 0.1 * var, rtol=1e-5)
    unbiased = 0.9 + 0.1 * var * z[:, 0].size / (z[:, 0].size - 1)
    assert np.abs(block.bn.running_var.data().asnumpy() - unbiased).min() > 1e-3


# --------------------------------------------------------------------------- overrides and init


def test_overrides(built, input_batch):
    variant = built.spec.variant
    size = small_size(variant) + 6
    spec = load(variant, num_classes=7, in_channels=2, input_size=(size, size + 1), dropout=0.5)
    assert spec.aux_logits == spec.has_aux
    model = impl_mxnet.build(spec, seed=0)
    analysis = shared_spec.analyze(spec)
    assert impl_mxnet.count_params(model) == (analysis.params, analysis.buffers)
    x = input_batch(spec, BATCH)
    assert impl_mxnet.forward(model, x).shape == (BATCH, 7)
    training = impl_mxnet.forward(model, x, training=True)
    assert [out.shape for out in (training if spec.aux_logits else (training,))] == \
        [(BATCH, 7)] * (1 + len(spec.aux_heads) * spec.aux_logits)
    outputs = impl_mxnet.layer_outputs(model, x)
    assert {name: out.shape[1:] for name, out in outputs.items()} == \
        {info.name: info.out_shape for info in analysis.layers}
    blocks = dict(impl_mxnet.named_blocks(model))
    assert [blocks[layer.name]._rate for layer in spec.walk() if layer.op == "dropout"] == \
        [0.5] * sum(layer.op == "dropout" for layer in spec.walk())


def test_aux_logits_off_gives_main_only(input_batch):
    spec = shared_spec.load("googlenet", input_size=41)
    model = impl_mxnet.build(spec, seed=0)
    assert not any(isinstance(layer, Aux) for layer in spec.walk())
    assert isinstance(impl_mxnet.forward(model, input_batch(spec, BATCH), training=True), np.ndarray)
    assert not any(name.startswith("aux") for name in impl_mxnet.named_parameters(model))


def test_init_follows_spec(built):
    weights = impl_mxnet.export_weights(impl_mxnet.build(built.spec, seed=0))
    init = built.spec.init
    for key, value in weights.items():
        if key.endswith((".bn.gamma", ".bn.running_var")):
            np.testing.assert_array_equal(value, 1)
        elif key.endswith((".bn.beta", ".bn.running_mean")):
            np.testing.assert_array_equal(value, 0)
        elif key.endswith(".bias"):
            np.testing.assert_array_equal(value, np.float32(init.bias))
    big = max((key for key in weights if key.endswith(".weight")), key=lambda key: weights[key].size)
    w = weights[big].astype(np.float64)
    if init.weight == "trunc_normal":
        assert abs(w.std() - init.std) < 0.02 * init.std and abs(w.mean()) < 0.01 * init.std
    else:
        fan_in = w.shape[1] * int(np.prod(w.shape[2:]))
        fan_out = w.shape[0] * int(np.prod(w.shape[2:]))
        bound = math.sqrt(6 / (fan_in + fan_out))  # Glorot uniform
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
        assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound


# --------------------------------------------------------------------------- weights


# --------------------------------------------------------------------------- training step


def test_train_step(built):
    """Loss = mean CE(main) + 0.3 * mean CE(aux_i); plain SGD; BN running statistics updated."""
    spec = load(built.spec.variant, dropout=0.0)  # deterministic training forward
    model = impl_mxnet.build(spec, seed=5)
    impl_mxnet.import_weights(model, built.weights)
    x, y = built.x, np.arange(BATCH) % spec.num_classes
    outputs = impl_mxnet.forward(model, x, training=True)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    expected_loss = cross_entropy(outputs[0], y) + sum(
        head.loss_weight * cross_entropy(out, y) for head, out in zip(spec.aux_heads, outputs[1:]))

    step = impl_mxnet.train_step(model, x, y, lr=0.01)
    assert math.isfinite(step["loss"]) and step["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert step["input_grad"].shape == x.shape and np.isfinite(step["input_grad"]).all()
    assert np.abs(step["input_grad"]).max() > 0
    weights = step["weights"]
    assert set(weights) == set(built.weights)
    trainable = [key for key in weights if not shared_spec.is_buffer(key)]
    assert all(not np.array_equal(weights[key], built.weights[key]) for key in trainable if key.endswith(".weight"))
    buffers = [key for key in weights if shared_spec.is_buffer(key)]
    assert all(not np.array_equal(weights[key], built.weights[key]) for key in buffers)

    # the same step at twice the rate, hybridized: twice the change (plain SGD, same gradients)
    model2 = impl_mxnet.build(spec, seed=6, hybridize=True)
    impl_mxnet.import_weights(model2, built.weights)
    step2 = impl_mxnet.train_step(model2, x, y, lr=0.02)
    assert step2["loss"] == pytest.approx(step["loss"], rel=1e-5)
    # a conv bias that feeds BatchNorm has an exactly-zero gradient (BN removes the mean): its update is
    # rounding noise, which need not scale with lr; every other parameter's update must
    bn_biases = {f"{layer.name}.conv.bias" for layer in spec.walk()
                 if isinstance(layer, shared_spec.Conv) and layer.bias and layer.norm is not None}
    for key in (k for k in trainable if k not in bn_biases):
        delta, delta2 = weights[key] - built.weights[key], step2["weights"][key] - built.weights[key]
        np.testing.assert_allclose(delta2, 2 * delta, rtol=1e-3, atol=1e-7 + 1e-3 * np.abs(delta).max())
    for key in buffers:
        np.testing.assert_allclose(step2["weights"][key], weights[key], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- arguments and device


def test_hybridize_must_be_true_or_false():
    """Gluon's own build option (the shared arguments are checked in test_contract.py)."""
    with pytest.raises(ValueError, match="Received: hybridize='yes'"):
        impl_mxnet.build(shared_spec.load("d2l"), hybridize="yes")

