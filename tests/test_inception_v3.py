"""Inception v3 (shared_spec/inception_v3.json): the oracle's figures at 299x299, the four builders at 75x75.

The oracle tests need no framework. The framework tests build one model per (framework, variant), once, at
75x75 (the minimum) and share it: the parameter count, every layer against every other framework, the trap
tests and the training step use the same models, so the file stays within the suite's time budget (the
GoogLeNet loops of test_contract.py build each model four times over, which Inception v3's 94 conv units
would make the slowest file of the suite).
"""

from __future__ import annotations

import numpy as np
import pytest

import shared_spec
from googlenet_suite import frameworks as fw_registry
from shared_spec import numeric

from conftest import load_builder  # tests/conftest.py

INCEPTION = shared_spec.list_variants(shared_spec.BUILTIN_SPECS[1])
CROSS = ("inception-v3", "inception-v3-keras", "inception-v3-fid")  # inception-v3-gluon needs 299x299
SIZE = 75
TOL = 1e-4
KEYS = [pytest.param(key, marks=getattr(pytest.mark, key)) for key in fw_registry.FRAMEWORKS]
_module = load_builder  # the registered framework's builder package, or a skip saying what to install


def _available(n=2):
    keys = []
    for key in fw_registry.FRAMEWORKS:
        try:
            _module(key)
            keys.append(key)
        except pytest.skip.Exception:
            pass
    if len(keys) < n:
        pytest.skip(f"needs {n} frameworks, has {keys}")
    return keys


def small(variant: str, **overrides) -> shared_spec.Spec:
    return shared_spec.load(variant, input_size=SIZE, **overrides)


def neutral_weights(spec: shared_spec.Spec, seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal kernels and non-trivial BatchNorm, so activations stay O(1) through 94 conv units (the
    spec's own init, torchvision's std 0.1, grows them to 1e9 at the logits without calibration)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in spec.weight_shapes().items():
        if key.endswith(".conv.weight"):
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif key.endswith(".weight"):
            value = rng.normal(0.0, np.sqrt(1.0 / shape[1]), shape)
        elif key.endswith((".bn.gamma", ".bn.running_var")):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # beta, running_mean, biases
            value = rng.normal(0.0, 0.1, shape)
        out[key] = value.astype(np.float32)
    return out


def inputs(spec, n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *spec.input_shape)).astype(np.float32)


def max_diff(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.max(np.abs(a - b)))


_MODELS: dict = {}
_OUTPUTS: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _forget_the_models():
    """``model`` and ``outputs`` keep what they built for this file's tests only (a worker runs other files
    after this one, and four Inception v3 builds per framework are gigabytes)."""
    yield
    _MODELS.clear()
    _OUTPUTS.clear()


def model(key, variant):
    """One model per (framework, variant) at 75x75, holding ``neutral_weights`` (tests that change them
    import them again)."""
    if (key, variant) not in _MODELS:
        mod = _module(key)
        spec = small(variant)
        built = mod.build(spec, device="cpu", seed=0)
        mod.import_weights(built, neutral_weights(spec))
        _MODELS[(key, variant)] = built
    return _MODELS[(key, variant)]


def outputs(key, variant):
    """Every layer's eval output for ``inputs`` with ``neutral_weights``."""
    if (key, variant) not in _OUTPUTS:
        built = model(key, variant)
        _OUTPUTS[(key, variant)] = _module(key).layer_outputs(built, inputs(built.spec))
    return _OUTPUTS[(key, variant)]


# --------------------------------------------------------------------------- the oracle, no framework


@pytest.mark.parametrize("variant", INCEPTION)
def test_oracle_figures_at_299(variant):
    """Parameters, BN statistics, MACs, minimum input and stage shapes: each the figure the spec records."""
    spec = shared_spec.load(variant)
    report = shared_spec.analyze(spec)
    expected = spec.expected
    assert spec.input_size == (299, 299)
    assert (report.params, report.buffers, report.macs) == (expected["params"], expected["buffers"], expected["macs"])
    assert report.min_input_size == (expected["min_input_size"],) * 2
    assert report.stage_shapes(spec) == {k: tuple(v) for k, v in expected["stage_shapes"].items()}
    assert report.stage_shapes(spec)["mixed_7c"] == (2048, 8, 8)


def test_published_counts():
    """torchvision's 23,834,568 / 27,161,264, Keras's 23,817,352 + 34,432, pytorch-fid's 23,850,960."""
    def counts(variant, **overrides):
        report = shared_spec.analyze(shared_spec.load(variant, **overrides))
        return report.params, report.buffers

    assert counts("inception-v3") == (23_834_568, 34_432)
    assert counts("inception-v3", aux_logits=True)[0] == 27_161_264
    assert counts("inception-v3-keras") == (23_817_352, 34_432)
    assert sum(counts("inception-v3-keras")) == 23_851_784  # keras.Model.count_params()
    assert counts("inception-v3-fid")[0] == 23_850_960
    assert shared_spec.analyze(shared_spec.load("inception-v3")).macs == 5_713_216_096  # torchvision: 5.713 GFLOPS


def test_aux_head_needs_299():
    """InceptionAux pools Mixed_6e 5/3 and convolves 5x5: it needs Mixed_6e at 17x17, i.e. the full 299x299."""
    spec = shared_spec.load("inception-v3", aux_logits=True)
    report = shared_spec.analyze(spec)
    assert report.min_input_size == (299, 299)
    assert report.layer("aux.conv1").out_shape == (768, 1, 1) and report.aux_outputs == (("aux", (1000,)),)
    with pytest.raises(shared_spec.SpecError, match="minimum is 299x299"):
        shared_spec.load("inception-v3", aux_logits=True, input_size=298)
    assert shared_spec.analyze(small("inception-v3")).min_input_size == (75, 75)


def test_names_factorised_kernels_and_the_split():
    spec = shared_spec.load("inception-v3")
    conv = spec.layer("mixed_6e.branch7x7dbl.conv5")
    assert (conv.kernel, conv.padding, conv.out_channels) == ((1, 7), (0, 0, 3, 3), 192)
    assert spec.layer("mixed_6e.branch7x7dbl.conv4").kernel == (7, 1)
    split = spec.layer("mixed_7b.branch3x3.conv2")
    assert isinstance(split, shared_spec.Concat) and [b.name for b in split.branches] == [
        "mixed_7b.branch3x3.conv2.a", "mixed_7b.branch3x3.conv2.b"]
    assert spec.layer("mixed_7b.branch3x3.conv2.a.conv").kernel == (1, 3)
    assert spec.layer("mixed_7b.branch3x3dbl.conv3.b.conv").padding == (1, 1, 0, 0)
    report = shared_spec.analyze(spec)
    assert report.layer("mixed_7b.branch3x3.conv2").out_shape == (768, 8, 8)
    assert report.layer("mixed_7b").out_shape == (2048, 8, 8)


def _branch_pools(variant):
    return {layer.name: layer for layer in shared_spec.load(variant).walk()
            if isinstance(layer, shared_spec.Pool) and layer.stride == (1, 1)}


def test_pools_and_batchnorm_per_variant():
    """torchvision counts the padding in its branch pools; Keras and pytorch-fid do not; pytorch-fid's
    Mixed_7c pools by max; Keras's BatchNorm has no gamma."""
    torchvision, keras, fid = (_branch_pools(v) for v in ("inception-v3", "inception-v3-keras", "inception-v3-fid"))
    assert len(torchvision) == 9 and all(p.op == "avgpool" and p.count_include_pad for p in torchvision.values())
    assert all(p.op == "avgpool" and not p.count_include_pad for p in keras.values())
    assert fid.pop("mixed_7c.branch_pool.pool").op == "maxpool"
    assert len(fid) == 8 and all(p.op == "avgpool" and not p.count_include_pad for p in fid.values())
    shapes = shared_spec.load("inception-v3-keras").weight_shapes()
    assert not any(key.endswith(".bn.gamma") for key in shapes)
    assert len(shared_spec.load("inception-v3").weight_shapes()) - len(shapes) == 94  # one gamma per conv unit


def test_gluon_fixed_pool_differs_from_global_above_330():
    """MXNet's model zoo ends in AvgPool2D(8): the global mean of the 8x8 map up to 330x330, the top-left
    8x8 window of a 9x9 map from 331x331, and no output at all below 299x299."""
    for size, side in ((299, 8), (330, 8), (331, 9)):
        gluon = shared_spec.load("inception-v3-gluon", input_size=size)
        assert shared_spec.analyze(gluon).layer("mixed_7c").out_shape == (2048, side, side)
        assert shared_spec.analyze(gluon).layer("avgpool").out_shape == (2048, 1, 1)
    pool = shared_spec.load("inception-v3-gluon").layer("avgpool")
    rng = np.random.default_rng(0)
    eight, nine = rng.standard_normal((1, 4, 8, 8)), rng.standard_normal((1, 4, 9, 9))
    assert max_diff(numeric.pool(pool, eight), eight.mean(axis=(2, 3), keepdims=True)) < 1e-12
    assert max_diff(numeric.pool(pool, nine), nine.mean(axis=(2, 3), keepdims=True)) > 1e-2
    with pytest.raises(shared_spec.SpecError, match="minimum is 299x299"):
        shared_spec.load("inception-v3-gluon", input_size=298)


def test_loader_refuses_count_include_pad_on_a_maxpool(tmp_path):
    import json

    doc = json.loads(shared_spec.BUILTIN_SPECS[1].read_text())
    pool = doc["blocks"]["inception_b"]["layer"]["branches"]["branch_pool"][0]
    pool["count_include_pad"] = True
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(shared_spec.SpecError, match=r"branch_pool\[0\].*count_include_pad: maxpool 'mixed_6a"):
        shared_spec.load("inception-v3", spec_file=path)
    doc["variants"]["inception-v3"]["layer_defaults"]["conv"]["norm"]["scale"] = "no"
    del pool["count_include_pad"]
    path.write_text(json.dumps(doc))
    with pytest.raises(shared_spec.SpecError, match=r"norm\.scale: 'no' is not of type 'boolean'"):
        shared_spec.load("inception-v3", spec_file=path)


# --------------------------------------------------------------------------- the builders at 75x75


@pytest.mark.parametrize("variant", CROSS)
@pytest.mark.parametrize("key", KEYS)
def test_each_framework_counts_what_the_oracle_counts(key, variant):
    report = shared_spec.analyze(small(variant))
    assert _module(key).count_params(model(key, variant)) == (report.params, report.buffers)
    assert report.params == shared_spec.load(variant).expected["params"]  # counts do not depend on the input


@pytest.mark.cross
@pytest.mark.parametrize("variant", CROSS)
def test_every_layer_agrees_across_frameworks(variant):
    """The same weights in every framework: every layer's eval output within 1e-4 of PyTorch's (or the first
    framework's; relative where a map exceeds 1, as He-initialised maps do), named at the first that diverges."""
    keys = _available()
    spec = small(variant)
    names = [layer.name for layer in spec.walk()]
    reference = outputs(keys[0], variant)
    assert float(np.abs(reference["fc"]).max()) > 0.1, "logits this small would make 1e-4 vacuous"
    for key in keys[1:]:
        ours = outputs(key, variant)
        assert list(ours) == names, f"{key} reports other layers"
        for name in names:
            diff = max_diff(ours[name], reference[name])
            limit = TOL * max(1.0, float(np.abs(reference[name]).max()))
            assert diff <= limit, f"{variant}: {key} first diverges from {keys[0]} at {name} ({diff:.2e})"


# --------------------------------------------------------------------------- the libraries' own networks


@pytest.mark.tf
def test_keras_applications_inception_v3_is_the_keras_variant():
    """keras.applications.InceptionV3(weights=None, classifier_activation=None) at 75x75: the same weights in
    the same order and shapes as the Keras builder's inception-v3-keras, and given them, the same logits."""
    import keras

    ours = model("tf", "inception-v3-keras")
    theirs = keras.applications.InceptionV3(weights=None, classifier_activation=None, input_shape=(SIZE, SIZE, 3))
    assert theirs.count_params() == 23_851_784
    assert [tuple(v.shape) for v in theirs.weights] == [tuple(v.shape) for v in ours.weights]
    for variable, value in zip(theirs.weights, ours.weights):
        variable.assign(value.numpy())
    x = inputs(ours.spec)
    logits = np.asarray(theirs(x.transpose(0, 2, 3, 1), training=False))
    assert max_diff(_module("tf").forward(ours, x), logits) <= 1e-5


@pytest.mark.mxnet
def test_mxnet_model_zoo_inception_v3_is_the_gluon_variant():
    """mxnet.gluon.model_zoo.vision.inception_v3() at 299x299 (the least its AvgPool2D(8) takes): its parameters
    in the Gluon builder's order and shapes, and given the same values, the same logits."""
    mx = pytest.importorskip("mxnet")
    impl_mxnet = _module("mxnet")
    from mxnet.gluon.model_zoo import vision

    spec = shared_spec.load("inception-v3-gluon")
    ours = impl_mxnet.build(spec, device="cpu", seed=0)
    impl_mxnet.import_weights(ours, neutral_weights(spec))
    x = inputs(spec, n=1)
    zoo = vision.inception_v3()
    zoo.initialize(ctx=mx.cpu())
    zoo(mx.nd.array(x))  # Gluon's deferred shapes
    theirs, mine = list(zoo.collect_params().values()), list(impl_mxnet.builder.named_parameters(ours).values())
    assert [p.shape for p in theirs] == [p.shape for p in mine]
    for param, value in zip(theirs, mine):
        param.set_data(value.data())
    assert max_diff(impl_mxnet.forward(ours, x), zoo(mx.nd.array(x)).asnumpy()) <= 1e-5


# --------------------------------------------------------------------------- traps


@pytest.mark.torch
def test_pool_that_counts_the_padding_where_the_spec_does_not():
    """Keras's and pytorch-fid's branch pools divide by the cells on the input; torch's avg_pool2d(3, 1, 1),
    as torchvision writes it, counts the padding and changes every border cell of the map."""
    import torch
    import torch.nn.functional as F

    acts = outputs("torch", "inception-v3-fid")
    pool = small("inception-v3-fid").layer("mixed_5b.branch_pool.pool")
    x = acts["maxpool2"]
    assert max_diff(acts["mixed_5b.branch_pool.pool"], numeric.pool(pool, x)) <= 1e-5
    naive = F.avg_pool2d(torch.from_numpy(x), 3, 1, 1).numpy()
    assert max_diff(naive, numeric.pool(pool, x)) > 1e-2
    assert max_diff(naive[..., 1:-1, 1:-1], numeric.pool(pool, x)[..., 1:-1, 1:-1]) < 1e-5  # the border only


@pytest.mark.tf
def test_pool_that_does_not_count_the_padding_where_the_spec_does():
    """torchvision's branch pools count the padding; Keras's AveragePooling2D(3, 1, 'same'), as
    keras.applications writes it, does not: a naive port changes every border cell."""
    import keras

    acts = outputs("tf", "inception-v3")
    pool = small("inception-v3").layer("mixed_6b.branch_pool.pool")
    x = acts["mixed_6a"]
    assert max_diff(acts["mixed_6b.branch_pool.pool"], numeric.pool(pool, x)) <= 1e-5
    same = keras.layers.AveragePooling2D(3, strides=1, padding="same")
    naive = np.asarray(same(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    assert max_diff(naive, numeric.pool(pool, x)) > 1e-2
    assert max_diff(naive, numeric.pool(pool, x, count_include_pad=False)) < 1e-5


@pytest.mark.tf
def test_batchnorm_with_a_scale_read_without_one():
    """torchvision's BasicConv2d scales by gamma; Keras's conv2d_bn (BatchNormalization(scale=False)) has
    none: given torchvision's weights it can only drop gamma. The Keras builder keeps it where the spec does."""
    import keras

    spec = small("inception-v3")
    layer = spec.layer("conv2d_1a_3x3")
    weights = neutral_weights(spec)
    x = inputs(spec)
    acts = outputs("tf", "inception-v3")
    assert max_diff(acts["conv2d_1a_3x3"], numeric.conv(layer, x, weights)) <= 1e-4
    conv = keras.layers.Conv2D(32, 3, strides=2, use_bias=False)
    bn = keras.layers.BatchNormalization(scale=False, epsilon=1e-3)
    y = bn(conv(x.transpose(0, 2, 3, 1)), training=False)
    conv.set_weights([weights["conv2d_1a_3x3.conv.weight"].transpose(2, 3, 1, 0)])
    bn.set_weights([weights[f"conv2d_1a_3x3.bn.{k}"] for k in ("beta", "running_mean", "running_var")])
    naive = np.maximum(np.asarray(bn(conv(x.transpose(0, 2, 3, 1)), training=False)), 0).transpose(0, 3, 1, 2)
    assert y.shape == (2, 37, 37, 32) and max_diff(naive, acts["conv2d_1a_3x3"]) > 1e-2


@pytest.mark.cross
def test_batchnorm_without_a_scale_read_with_one():
    """Keras's BatchNormalization(scale=False) has no gamma to train. Ported as torch's BatchNorm2d (with
    gamma), one SGD step moves gamma and the port leaves Keras's numbers; the torch builder's shift-only
    BatchNorm takes the step Keras takes. (Compared in training mode, on batch statistics: the running
    variance is Bessel-corrected in torch only, a different trap, test_cross_training's.)"""
    torch = pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    impl_torch = _module("torch")
    from impl_torch.builder import ConvUnit

    layer = small("inception-v3-keras").layer("conv2d_2a_3x3")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 32, 9, 9)).astype(np.float32)
    kernel = (rng.standard_normal((32, 32, 3, 3)) * 0.1).astype(np.float32)
    target = rng.standard_normal((2, 32, 7, 7)).astype(np.float32)

    def torch_step(unit):
        unit.conv.weight.data.copy_(torch.from_numpy(kernel))
        unit.train()
        loss = (unit(torch.from_numpy(x)) * torch.from_numpy(target)).sum()
        loss.backward()
        with torch.no_grad():
            for param in unit.parameters():
                param.add_(param.grad, alpha=-0.1)
            return unit(torch.from_numpy(x)).numpy()  # batch statistics again: the step's gamma/beta show

    ours = ConvUnit(layer)
    assert [name for name, _ in ours.named_parameters()] == ["conv.weight", "bn.bias"]
    naive = ConvUnit(layer)
    naive.bn = torch.nn.BatchNorm2d(32, eps=1e-3, momentum=layer.norm.momentum)

    conv = keras.layers.Conv2D(32, 3, use_bias=False)
    bn = keras.layers.BatchNormalization(scale=False, epsilon=1e-3, momentum=0.99)
    nhwc = x.transpose(0, 2, 3, 1)
    bn(conv(nhwc))
    conv.set_weights([kernel.transpose(2, 3, 1, 0)])
    variables = [*conv.trainable_variables, *bn.trainable_variables]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.nn.relu(bn(conv(nhwc), training=True)) * target.transpose(0, 2, 3, 1))
    for variable, grad in zip(variables, tape.gradient(loss, variables)):
        variable.assign_sub(0.1 * grad)
    reference = np.maximum(np.asarray(bn(conv(nhwc), training=True)), 0).transpose(0, 3, 1, 2)
    assert max_diff(torch_step(ours), reference) <= 1e-4
    assert max_diff(torch_step(naive), reference) > 1e-2
    assert impl_torch.count_params(naive)[0] - impl_torch.count_params(ours)[0] == 32  # one gamma per channel


# --------------------------------------------------------------------------- one training step


@pytest.mark.cross
@pytest.mark.matrix  # 7 s: the default run keeps GoogLeNet's training steps (test_cross_training.py)
def test_training_step_is_at_the_fp32_noise_floor():
    """One SGD step of inception-v3-keras (BatchNorm without gamma) from the same weights in torch, Keras and
    Gluon. Batch statistics over 1x1 maps (16 images at 75x75 give 16 values per channel in Mixed_7a-7c) put
    even PyTorch's own fp32 step away from its fp64 step (about 1e-2 in some weight), so, as for GoogLeNet's
    ill-conditioned steps in test_cross_training, each framework's loss, input gradient and weights must be
    as close to PyTorch's fp64 step as PyTorch's fp32 step is, within 4x. MXNet's running variance is the
    biased one (test_cross_training pins that): left out for MXNet."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    keys = [key for key in _available() if key != "onnx"]
    if "torch" not in keys:
        pytest.skip("the fp64 reference is PyTorch's")
    variant = "inception-v3-keras"
    spec = small(variant)
    weights = neutral_weights(spec, seed=1)
    x, y = inputs(spec, n=16, seed=1), np.arange(16) % 5
    steps = {}
    for key in keys:
        mod, built = _module(key), model(key, variant)
        mod.import_weights(built, weights)
        steps[key] = mod.train_step(built, x, y, lr=0.01)
        mod.import_weights(built, neutral_weights(spec))  # the shared model as the other tests expect it
    exact = _module("torch").build(spec, device="cpu", seed=0)
    _module("torch").import_weights(exact, weights)
    exact.double().train()
    xt = torch.from_numpy(x).double().requires_grad_(True)
    loss = F.cross_entropy(exact(xt), torch.from_numpy(y))
    loss.backward()
    with torch.no_grad():
        for param in exact.parameters():
            param.add_(param.grad, alpha=-0.01)
    exact_loss, exact_grad = float(loss.detach()), xt.grad.numpy()
    exact_weights = _module("torch").export_weights(exact.float())

    def weight_diff(key):
        return max(max_diff(steps[key]["weights"][k], v) for k, v in exact_weights.items()
                   if not (key == "mxnet" and k.endswith(".running_var")))

    moved = [k for k, v in exact_weights.items() if max_diff(v, weights[k]) > 1e-3]
    assert len(moved) > len(weights) // 2 and not any(k.endswith(".gamma") for k in exact_weights)
    floor_loss = max(TOL, abs(steps["torch"]["loss"] - exact_loss))
    floor_grad = max_diff(steps["torch"]["input_grad"], exact_grad)
    floor_weights = weight_diff("torch")
    for key, step in steps.items():
        assert abs(step["loss"] - exact_loss) <= 4 * floor_loss, f"{key}: loss {step['loss']} vs {exact_loss}"
        assert max_diff(step["input_grad"], exact_grad) <= 4 * floor_grad, f"{key}: input gradient"
        assert weight_diff(key) <= 4 * floor_weights, f"{key}: weights after the step"


# --------------------------------------------------------------------------- the reference weights' conditioning


@pytest.mark.torch
@pytest.mark.matrix
def test_reference_weights_keep_fp32_rounding_far_below_the_tolerance():
    """compare's weights (harness.reference_weights: BatchNorm beta 1, statistics calibrated) leave PyTorch's own
    fp32 within a fifth of the tolerance of its fp64 at every layer, so a difference between frameworks beyond
    1e-4 is theirs, not rounding. With beta 0 each conv unit multiplied rounding's variance by pi/(pi - 1):
    3.9e-5 of a layer's scale at 75x75 and 1.6e-4 at 299x299 (docs/inception-v3.md)."""
    import torch

    from googlenet_suite import harness

    impl_torch = _module("torch")
    spec = small("inception-v3")
    built = impl_torch.build(spec, device="cpu", seed=0)
    impl_torch.import_weights(built, harness.reference_weights(spec, "torch", seed=0))
    x = inputs(spec)
    fp32 = impl_torch.layer_outputs(built, x)
    fp64 = {}
    names = list(fp32)
    hooks = [built.get_submodule(name).register_forward_hook(
        lambda module, args, out, name=name: fp64.__setitem__(name, out.detach().numpy())) for name in names]
    try:
        with torch.no_grad():
            built.double().eval()(torch.from_numpy(x).double())
    finally:
        for hook in hooks:
            hook.remove()
    worst = max((harness.layer_relative_diff(max_diff(fp32[name], fp64[name]), float(np.abs(fp64[name]).max())),
                 name) for name in names)
    print(f"inception-v3 at {SIZE}x{SIZE}: PyTorch fp32 vs fp64, worst layer {worst[1]}: {worst[0]:.2e} of its scale")
    assert float(np.abs(fp64["fc"]).max()) > 1.0, "logits this small would make the comparison vacuous"
    assert worst[0] <= TOL / 5, f"fp32 rounding reaches {worst[0]:.2e} of {worst[1]}'s scale"


# --------------------------------------------------------------------------- train and evaluate


TRAIN_ARGS = ["--data", "synthetic", "--epochs", "1", "--batch", "8", "--limit", "8", "--device", "cpu", "--quiet"]


@pytest.mark.cross
@pytest.mark.matrix
def test_train_and_evaluate_at_75_in_every_framework(tmp_path, capsys):
    """``train --framework all`` at the minimum input (one step of 8 synthetic images, from the same start: one
    training loss), then ``evaluate --framework all`` on PyTorch's checkpoint: one accuracy, and one loss, each
    within 1e-4 of its scale above 1 (after one step the running statistics are far from the data's)."""
    import json

    from googlenet_suite import cli

    keys = [key for key in _available(3) if fw_registry.FRAMEWORKS[key].can("train")]
    variant = "inception-v3-keras"
    assert cli.main(["train", variant, "--framework", "all", "--resize", str(SIZE), *TRAIN_ARGS,
                     "--out", str(tmp_path)]) == 0
    first = {}
    for key in keys:
        (row,) = json.loads((tmp_path / f"{key}-{variant}-synthetic" / "log.json").read_text())["epochs"]
        assert row["steps"] == 1 and np.isfinite(row["loss"]) and np.isfinite(row["test_loss"]), (key, row)
        first[key] = row["loss"]  # the one step's forward: the same start, the same batch
    assert max(first.values()) - min(first.values()) <= TOL * max(1.0, *first.values()), first
    capsys.readouterr()
    ckpt = tmp_path / f"torch-{variant}-synthetic" / "last.safetensors"
    assert cli.main(["evaluate", "--framework", "all", "--weights", str(ckpt), "--data", "synthetic", "--limit", "8",
                     "--device", "cpu", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["variant"], result["resize"], result["examples"]) == (variant, SIZE, 8)  # the checkpoint's recipe
    losses = {key: r["loss"] for key, r in result["frameworks"].items()}
    assert set(keys) <= set(losses) and len({r["accuracy"] for r in result["frameworks"].values()}) == 1
    assert max(losses.values()) - min(losses.values()) <= TOL * max(1.0, *losses.values()), losses


def test_train_with_the_aux_head_below_299_is_refused(tmp_path, capsys):
    """The oracle puts the aux head's minimum at 299x299: ``train --aux --resize 75`` is one line, exit 2, and
    writes nothing (no framework is needed to refuse it)."""
    from googlenet_suite import cli

    out = tmp_path / "run"
    assert cli.main(["train", "inception-v3", "--framework", "torch", "--aux", "--resize", str(SIZE), *TRAIN_ARGS,
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "the minimum is 299x299" in err and "aux" in err
    assert not out.exists()


@pytest.mark.torch
@pytest.mark.matrix
def test_train_with_the_aux_head_at_299(tmp_path):
    """torchvision's recipe with its aux head (loss weight 0.4) trains at 299x299 and checkpoints the head."""
    import json

    from googlenet_suite import cli
    from shared_spec import weights as W

    _module("torch")
    argv = ["train", "inception-v3", "--framework", "torch", "--aux", "--resize", "299", *TRAIN_ARGS]
    argv[argv.index("--batch") + 1] = argv[argv.index("--limit") + 1] = "2"
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "log.json").read_text())["epochs"]
    assert row["steps"] == 1 and np.isfinite(row["loss"]) and row["loss"] > 0
    assert any(name.startswith("aux.") for name in W.load_weights(tmp_path / "last.safetensors")[0])
