"""What only the Keras builder has: layer names, NHWC layouts, 'same' padding, Keras's traps.

The contract every framework shares (counts, shapes, seeds, weights, arguments) is in test_contract.py.

Every variant is built once per module (seed 0, plus one seed-1 model for the seed and
round-trip tests) at a small input size where the variant allows one, batch 2.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import shared_spec  # noqa: E402
from shared_spec import LRN, Pool, numeric  # noqa: E402

impl_tf = pytest.importorskip("impl_tf")

pytestmark = pytest.mark.tf

VARIANTS = shared_spec.list_variants(shared_spec.BUILTIN_SPEC)  # GoogLeNet (Inception v3: test_inception_v3)
BATCH = 2

# Small inputs where the variant allows them (googlenet-paper's 7x7 average pool before a
# 1024-input fc needs at least 223x223); odd, non-square sizes exercise the pool rounding.
TEST_OVERRIDES = {
    "googlenet": {"aux_logits": True, "input_size": (103, 117)},
    "googlenet-paper": {"aux_logits": True},
    "googlenet-gluoncv": {"aux_logits": True},  # its fixed 7x7 pool needs 223x223 or more
    "d2l": {"input_size": (67, 75)},
    "gluon-tutorial": {},
    "bn-notebook": {},
    "cifar": {"input_size": (16, 16)},
}
# num_classes, in_channels and input_size overridden together.
OTHER_OVERRIDES = {
    "googlenet": {"input_size": (40, 56)},
    "googlenet-paper": {"input_size": (223, 223)},
    "googlenet-gluoncv": {"input_size": (223, 223)},
    "d2l": {"input_size": (33, 40)},
    "gluon-tutorial": {"input_size": (93, 100)},
    "bn-notebook": {"input_size": (94, 95)},
    "cifar": {"input_size": (12, 15)},
}
CONV_SUFFIXES = (".pad", ".conv", ".bn", ".relu")


def test_overrides_cover_every_variant():
    assert set(TEST_OVERRIDES) == set(VARIANTS) == set(OTHER_OVERRIDES)


class Built:
    """One variant's spec, oracle, seed-0 and seed-1 models and their weights as built."""

    def __init__(self, variant: str, input_batch):
        self.spec = shared_spec.load(variant, **TEST_OVERRIDES[variant])
        self.analysis = shared_spec.analyze(self.spec)
        self.model = impl_tf.build(self.spec, seed=0)
        self.initial = impl_tf.export_weights(self.model)
        self._other = None
        self.x = input_batch(self.spec, BATCH)

    @property
    def other(self):
        """A seed-1 model of the same spec, and its initial weights (tests may overwrite its weights)."""
        if self._other is None:
            model = impl_tf.build(self.spec, seed=1)
            self._other = (model, impl_tf.export_weights(model))
        return self._other


@pytest.fixture(params=VARIANTS)
def built(request, cache, input_batch) -> Built:
    if request.param not in cache:
        cache[request.param] = Built(request.param, input_batch)
    return cache[request.param]


def channels_last(shape):
    return (*shape[1:], shape[0]) if len(shape) == 3 else tuple(shape)


# --------------------------------------------------------------------------- structure


def test_layer_names_are_spec_names(built):
    spec_names = {layer.name for layer in built.spec.walk()}
    for layer in built.model.layers:
        name = layer.name
        base = next((name[: -len(s)] for s in CONV_SUFFIXES if name.endswith(s)), name)
        assert name == "input" or name in spec_names or base in spec_names, name
        config = layer.get_config()
        if config.get("padding") == "same" and "kernel_size" in config:  # a conv: stride 1, odd kernel only
            assert tuple(config["strides"]) == (1, 1), f"{name} uses padding='same' at stride {config['strides']}"
            assert all(k % 2 == 1 for k in config["kernel_size"]), f"{name}: padding='same', even kernel"
        elif config.get("padding") == "same":  # a max pool: only where 'same' pads what the spec pads
            spec_layer = next(layer for layer in built.spec.walk() if layer.name == name)
            _, height, width = shared_spec.analyze(built.spec).layer(name).in_shape
            (kh, kw), (sh, sw), (top, bottom, left, right) = spec_layer.kernel, spec_layer.stride, spec_layer.padding
            bottom += shared_spec.ceil_extra_padding(height, kh, sh, top, bottom, spec_layer.rounding)
            right += shared_spec.ceil_extra_padding(width, kw, sw, left, right, spec_layer.rounding)
            assert ((top, bottom), (left, right)) == (impl_tf.builder.keras_same_padding(height, kh, sh),
                                                      impl_tf.builder.keras_same_padding(width, kw, sw)), name
    keras_names = {layer.name for layer in built.model.layers}
    for layer in built.spec.walk():
        assert impl_tf.output_layer_name(layer) in keras_names, layer.name


def test_summary_and_keras_call(built):
    lines = []
    built.model.summary(print_fn=lambda line, **_: lines.append(line))
    assert f"{built.analysis.params:,}" in "\n".join(lines)
    assert built.model.spec is built.spec
    nhwc = built.x.transpose(0, 2, 3, 1)
    assert tuple(built.model(nhwc).shape) == (BATCH, built.spec.num_classes)
    symbolic = built.model(keras.Input(channels_last(built.spec.input_shape)), training=True)
    assert isinstance(symbolic, tuple) == bool(built.spec.aux_heads)


# --------------------------------------------------------------------------- modes


def test_train_and_eval_outputs(built):
    classes = built.spec.num_classes
    first = impl_tf.forward(built.model, built.x)
    assert isinstance(first, np.ndarray) and first.shape == (BATCH, classes)
    np.testing.assert_array_equal(impl_tf.forward(built.model, built.x), first)  # eval is deterministic
    train = impl_tf.forward(built.model, built.x, training=True)
    if built.spec.aux_heads:
        assert isinstance(train, tuple) and len(train) == 1 + len(built.spec.aux_heads) == 3
        for out in train:
            assert out.shape == (BATCH, classes) and np.isfinite(out).all()
    else:
        assert isinstance(train, np.ndarray) and train.shape == (BATCH, classes)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if shared_spec.load(v).has_aux])
def test_aux_heads_off_by_default(variant):
    spec = shared_spec.load(variant, input_size=224 if variant in ("googlenet-paper", "googlenet-gluoncv") else 64)
    assert not spec.aux_heads
    model = impl_tf.build(spec, seed=0)
    x = np.zeros((1, *spec.input_shape), np.float32)
    assert isinstance(impl_tf.forward(model, x, training=True), np.ndarray)
    assert not any(layer.name.startswith("aux") for layer in model.layers)


def test_dropout_only_in_training(input_batch):
    # gluon-tutorial has no BN: training mode differs from eval only through dropout.
    spec = shared_spec.load("gluon-tutorial", dropout=0.0)
    off = impl_tf.build(spec, seed=0)
    x = input_batch(spec, BATCH, seed=1)
    np.testing.assert_allclose(impl_tf.forward(off, x, training=True), impl_tf.forward(off, x), rtol=1e-5, atol=1e-6)
    heavy = impl_tf.build(shared_spec.load("gluon-tutorial", dropout=0.9), seed=0)
    assert heavy.get_layer("dropout").rate == pytest.approx(0.9)
    np.testing.assert_array_equal(impl_tf.forward(heavy, x), impl_tf.forward(off, x))  # same seed, eval
    assert not np.allclose(impl_tf.forward(heavy, x, training=True), impl_tf.forward(heavy, x), atol=1e-4)


def test_num_classes_in_channels_input_size_overrides(built):
    spec = shared_spec.load(built.spec.variant, num_classes=7, in_channels=2, **OTHER_OVERRIDES[built.spec.variant])
    model = impl_tf.build(spec, seed=0)
    analysis = shared_spec.analyze(spec)
    assert tuple(model.input.shape[1:]) == channels_last(spec.input_shape)
    assert impl_tf.count_params(model) == (analysis.params, analysis.buffers)
    x = np.ones((BATCH, *spec.input_shape), np.float32)
    assert impl_tf.forward(model, x).shape == (BATCH, 7)
    with pytest.raises(ValueError, match="Received: x.shape"):
        impl_tf.forward(model, built.x)


# --------------------------------------------------------------------------- init and seeds


def test_initialisation_follows_spec_init(built):
    init = built.spec.init
    weights = built.initial
    for key, value in weights.items():
        if key.endswith((".bn.beta", ".bn.running_mean")):
            expected = 0.0
        elif key.endswith((".bn.gamma", ".bn.running_var")):
            expected = 1.0
        elif key.endswith(".bias"):
            expected = init.bias
        else:
            continue
        np.testing.assert_array_equal(value, np.full_like(value, expected), err_msg=key)
    kernels = [w for k, w in weights.items() if k.endswith(".weight")]
    if init.weight == "trunc_normal":
        flat = np.concatenate([w.ravel() for w in kernels])
        assert flat.std() == pytest.approx(init.std, rel=0.01)
        # torchvision truncates at +-2 absolute (200 sigma): about 4.55% of draws lie beyond 2 sigma.
        assert 0.04 < np.mean(np.abs(flat) > 2 * init.std) < 0.051
    else:
        for key, w in ((k, w) for k, w in weights.items() if k.endswith(".weight")):
            fan_in = int(np.prod(w.shape[1:]))
            fan_out = w.shape[0] * int(np.prod(w.shape[2:]))
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            assert 0.9 * limit < np.abs(w).max() <= limit * (1 + 1e-6), key  # float32 rounding of the bound


# --------------------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def cifar(cache, input_batch):
    if "cifar" not in cache:
        cache["cifar"] = Built("cifar", input_batch)
    return cache["cifar"]


@pytest.fixture(scope="module")
def googlenet(cache, input_batch):
    if "googlenet" not in cache:
        cache["googlenet"] = Built("googlenet", input_batch)
    return cache["googlenet"]


def test_dense_after_flatten_uses_channels_first_order(googlenet):
    spec, model = googlenet.spec, googlenet.model
    maps = impl_tf.flattened_maps(spec)
    assert maps["aux1.fc1"] == maps["aux2.fc1"] == (128, 4, 4)
    assert maps["fc"] == (1024, 1, 1)
    outputs = impl_tf.layer_outputs(model, googlenet.x)
    weights = impl_tf.export_weights(model)
    for head in ("aux1", "aux2"):
        conv = outputs[f"{head}.conv"]  # N x 128 x 4 x 4
        np.testing.assert_array_equal(outputs[f"{head}.flatten"], conv.reshape(BATCH, -1))
        fc1 = np.maximum(conv.reshape(BATCH, -1) @ weights[f"{head}.fc1.weight"].T + weights[f"{head}.fc1.bias"], 0)
        np.testing.assert_allclose(outputs[f"{head}.fc1"], fc1, rtol=1e-4, atol=1e-5)
    # A model with other weights, given these, computes the same aux logits.
    other, _ = googlenet.other
    impl_tf.import_weights(other, weights)
    again = impl_tf.layer_outputs(other, googlenet.x)
    for head in ("aux1", "aux2"):
        np.testing.assert_array_equal(again[head], outputs[head])


# --------------------------------------------------------------------------- devices and arguments


# --------------------------------------------------------------------------- training


def test_train_step_loss_grad_and_update(googlenet, input_batch):
    spec = shared_spec.load("googlenet", aux_logits=True, input_size=(64, 64), dropout=0.0)
    model = impl_tf.build(spec, seed=0)
    x = input_batch(spec, BATCH, seed=2)
    y = np.array([3, 999])
    main, aux1, aux2 = impl_tf.forward(model, x, training=True)

    def cross_entropy(logits):
        logits = logits.astype(np.float64)
        logz = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
        return float(np.mean(logz - logits[np.arange(BATCH), y]))

    expected = cross_entropy(main) + 0.3 * cross_entropy(aux1) + 0.3 * cross_entropy(aux2)
    before = impl_tf.export_weights(model)
    result = impl_tf.train_step(model, x, y, lr=0.01)
    assert np.isfinite(result["loss"]) and result["loss"] == pytest.approx(expected, rel=1e-5)
    grad = result["input_grad"]
    assert grad.shape == x.shape and np.isfinite(grad).all() and np.abs(grad).max() > 0
    after = result["weights"]
    assert list(after) == list(spec.weight_shapes())
    for key in after:
        if key.endswith(".weight"):
            assert not np.array_equal(after[key], before[key]), key
    np.testing.assert_array_equal(impl_tf.export_weights(model)["fc.weight"], after["fc.weight"])


def test_train_step_bn_statistics_follow_pytorch(cifar, input_batch):
    """lr=0: weights stay, running statistics move by PyTorch's rule (unbiased batch variance)."""
    spec = shared_spec.load("cifar", input_size=(8, 8), dropout=0.0)
    model = impl_tf.build(spec, seed=0)
    x = input_batch(spec, BATCH, seed=3)
    conv = keras.Model(model.input, model.get_layer("prelayer.conv").output)(x.transpose(0, 2, 3, 1)).numpy()
    before = impl_tf.export_weights(model)
    after = impl_tf.train_step(model, x, np.array([0, 1]), lr=0.0)["weights"]
    for key in before:
        if not shared_spec.is_buffer(key):
            np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    momentum = spec.layer("prelayer").norm.momentum
    values = conv.reshape(-1, conv.shape[-1]).astype(np.float64)  # N*H*W x C
    np.testing.assert_allclose(after["prelayer.bn.running_mean"], momentum * values.mean(0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(after["prelayer.bn.running_var"],
                               (1 - momentum) + momentum * values.var(0, ddof=1), rtol=1e-5)


def test_input_grad_is_the_gradient(input_batch):
    """A directional finite difference of the loss (d2l: no BN, no dropout) matches input_grad."""
    spec = shared_spec.load("d2l", input_size=(24, 24))
    model = impl_tf.build(spec, seed=0)
    x = input_batch(spec, BATCH, seed=4)
    y = np.array([1, 2])
    grad = impl_tf.train_step(model, x, y, lr=0.0)["input_grad"]
    # Along the returned gradient the loss must rise at rate |grad|; a gradient in the wrong
    # layout (or of something else) points elsewhere and the rate comes out smaller.
    direction = grad / np.linalg.norm(grad)
    eps = 3e-2
    plus = impl_tf.train_step(model, x + eps * direction, y, lr=0.0)["loss"]
    minus = impl_tf.train_step(model, x - eps * direction, y, lr=0.0)["loss"]
    assert (plus - minus) / (2 * eps) == pytest.approx(np.linalg.norm(grad), rel=0.03)


# --------------------------------------------------------------------------- custom layers vs numpy


def nhwc(reference, x: np.ndarray) -> np.ndarray:
    """``shared_spec.numeric``'s channels-first reference applied to a channels-last batch."""
    return reference(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.75, 2.0), (7, 2.0, 0.5, 1.0)])
def test_lrn_matches_formula_and_tensorflow(size, alpha, beta, k):
    x = np.random.default_rng(5).standard_normal((2, 5, 6, 16)).astype(np.float32) * 30
    layer = impl_tf.LocalResponseNorm(size, alpha, beta, k)
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out, nhwc(lambda a: numeric.lrn(LRN("lrn", "n", size, alpha, beta, k), a), x), rtol=1e-5, atol=1e-6)
    tf_out = tf.nn.local_response_normalization(x, depth_radius=(size - 1) // 2, bias=k, alpha=alpha / size,
                                                beta=beta).numpy()
    np.testing.assert_allclose(out, tf_out, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out, x, rtol=1e-3)  # the normalisation does something at this scale


@pytest.mark.parametrize("size,output", [((14, 14), (4, 4)), ((6, 7), (4, 4)), ((8, 8), (4, 4)), ((3, 2), (4, 4)),
                                         ((5, 9), (2, 3))])
def test_adaptive_average_pool_matches_numpy(size, output):
    x = np.random.default_rng(6).standard_normal((2, *size, 3)).astype(np.float32)
    out = keras.ops.convert_to_numpy(impl_tf.AdaptiveAveragePooling2D(output)(x))
    np.testing.assert_allclose(out, nhwc(lambda a: numeric.adaptive_avgpool(a, output), x), rtol=1e-5, atol=1e-6)
    if size == (14, 14):  # torchvision's aux head: overlapping windows
        assert impl_tf.AdaptiveAveragePooling2D.windows(14, 4) == [(0, 4), (3, 7), (7, 11), (10, 14)]


def run_op(layer, x: np.ndarray) -> np.ndarray:
    """One spec layer through the builder's op table, as a tiny functional model."""
    inputs = keras.Input(x.shape[1:])
    return keras.Model(inputs, impl_tf.OPS[layer.op](layer, inputs, None))(x).numpy()  # pools need no context


POOLS = [
    Pool("maxpool", "p", (3, 3), (2, 2), (0, 0, 0, 0), "ceil", False),  # googlenet 112 -> 56 style
    Pool("maxpool", "p", (3, 3), (2, 2), (1, 1, 1, 1), "ceil", False),
    Pool("maxpool", "p", (2, 2), (2, 2), (0, 0, 0, 0), "ceil", False),  # googlenet maxpool4 on odd maps
    Pool("maxpool", "p", (3, 3), (1, 1), (1, 1, 1, 1), "ceil", False),  # inception branch 4
    Pool("maxpool", "p", (3, 3), (2, 2), (1, 1, 1, 1), "floor", False),  # d2l
    Pool("avgpool", "p", (3, 3), (2, 2), (1, 1, 1, 1), "floor", True),
    Pool("avgpool", "p", (3, 3), (2, 2), (1, 1, 1, 1), "floor", False),
    Pool("avgpool", "p", (5, 5), (3, 3), (0, 0, 0, 0), "floor", False),  # the paper's aux head
]


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: f"{p.op}{p.kernel[0]}s{p.stride[0]}p{p.padding[0]}{p.rounding}"
                                                      f"{'-incl' if p.count_include_pad else ''}")
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (14, 13)])
def test_pool_matches_pytorch_semantics_on_negative_input(pool, size):
    # All inputs negative: zero padding in a max pool (instead of -inf) would show up as 0.
    x = -1.0 - np.random.default_rng(7).random((2, *size, 3)).astype(np.float32) * 10
    out = run_op(pool, x)
    expected = nhwc(lambda a: numeric.pool(pool, a), x)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert (out < 0).all()


def test_keras_same_padding_puts_the_odd_cell_after():
    same = impl_tf.builder.keras_same_padding
    assert same(224, 7, 2) == (2, 3)  # the d2l trap: PyTorch's conv1 pads (3, 3)
    assert same(112, 3, 2) == (0, 1)  # = torchvision's ceil-mode maxpool1: no padding, one extra row
    assert same(5, 3, 1) == (1, 1) and same(7, 2, 2) == (0, 1) and same(4, 1, 2) == (0, 0)


def test_torchvision_ceil_pools_pad_inside_the_op_at_224():
    model = impl_tf.build(shared_spec.load("googlenet"), seed=0)
    names = {layer.name for layer in model.layers}
    for pool in ("maxpool1", "maxpool2", "maxpool3"):  # 3/2 ceil on 112, 56, 28: one extra row and column
        assert f"{pool}.pad" not in names and model.get_layer(pool).get_config()["padding"] == "same", pool
    assert "maxpool4.pad" not in names and model.get_layer("maxpool4").get_config()["padding"] == "valid"  # 2/2 on 14
    # d2l's pools pad (1, 1) at stride 2 on even maps: 'same' would pad (0, 1), so they pad explicitly (-inf)
    d2l = impl_tf.build(shared_spec.load("d2l"), seed=0)
    assert d2l.get_layer("maxpool1.pad").get_config()["value"] == float("-inf")
    assert d2l.get_layer("maxpool1").get_config()["padding"] == "valid"
