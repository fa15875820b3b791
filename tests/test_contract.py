"""The builder contract (docs/builders.md), checked once for every registered framework and every variant.

A framework gets these tests by being registered in ``googlenet_suite.frameworks``: shapes and counts
against the oracle, layer names, eval and training semantics, seeds, devices, the weights round trip
(in memory and through a file), and every bad argument, which must be refused the same way everywhere
(``shared_spec.contract.ContractError``, one line ending in ``Received: ...``). What only one framework
has (its layouts, its traps) is in that framework's own test file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import shared_spec
from googlenet_suite import frameworks as fw_registry
from shared_spec.contract import ContractError
from shared_spec.weights import WeightsError

VARIANTS = shared_spec.list_variants(shared_spec.BUILTIN_SPEC)  # GoogLeNet (Inception v3: test_inception_v3)
KEYS = [pytest.param(key, marks=getattr(pytest.mark, key)) for key in fw_registry.FRAMEWORKS]
BATCH = 2


def builder(key: str):
    fw = fw_registry.FRAMEWORKS[key]
    pytest.importorskip(fw.requires, reason=f"{fw.label} is not installed ({fw_registry.install_hint(key)})")
    return fw_registry.load(key)


def small_spec(variant: str, **overrides) -> shared_spec.Spec:
    """The variant at a small input it accepts (odd sizes exercise ceil rounding), aux heads on where it has them."""
    base = shared_spec.load(variant)
    overrides.setdefault("input_size", max(shared_spec.analyze(base).min_input_size[0], 41))
    if base.has_aux:
        overrides.setdefault("aux_logits", True)
    return shared_spec.load(variant, **overrides)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


class Built:
    def __init__(self, key: str, variant: str, input_batch):
        self.key, self.mod = key, builder(key)
        self.fw = fw_registry.FRAMEWORKS[key]
        self.spec = small_spec(variant)
        self.model = self.mod.build(self.spec, device="cpu", seed=0)
        self.x = input_batch(self.spec, BATCH)
        self.weights = self.mod.export_weights(self.model)
        self._other = None

    def other(self) -> tuple[object, dict[str, np.ndarray]]:
        """A seed-1 model of the same spec and its weights as built: tests load other weights into it (and
        leave them there), so its weights now are not those; built once, not once per test."""
        if self._other is None:
            model = self.mod.build(self.spec, device="cpu", seed=1)
            self._other = (model, self.mod.export_weights(model))
        return self._other


@pytest.fixture(params=KEYS)
def key(request) -> str:
    return request.param


@pytest.fixture(params=VARIANTS)
def built(request, key, input_batch, cache) -> Built:
    if (key, request.param) not in cache:
        cache[(key, request.param)] = Built(key, request.param, input_batch)
    return cache[(key, request.param)]


@pytest.fixture
def d2l(key, input_batch, cache) -> Built:
    """d2l at its small size in framework ``key``, built once per module (shared with ``built``)."""
    if (key, "d2l") not in cache:
        cache[(key, "d2l")] = Built(key, "d2l", input_batch)
    return cache[(key, "d2l")]


def test_registry_row_points_at_a_package_with_the_contract(key):
    mod = builder(key)
    for name in ("build", "forward", "layer_outputs", "export_weights", "import_weights", "save_weights",
                 "load_weights", "count_params", "device_of", "framework_version"):
        assert callable(getattr(mod, name, None)), f"{fw_registry.FRAMEWORKS[key].module} has no {name}"
    assert callable(getattr(mod, "train_step", None)) == fw_registry.FRAMEWORKS[key].can("train")
    assert isinstance(mod.framework_version(), str) and mod.framework_version()


# --------------------------------------------------------------------------- shapes, counts, names


def test_counts_match_the_oracle(built):
    report = shared_spec.analyze(built.spec)
    assert built.mod.count_params(built.model) == (report.params, report.buffers)
    expected = built.spec.expected.get("params_with_aux" if built.spec.aux_logits else "params")
    if expected is not None:
        assert report.params == expected


PUBLISHED = [(v, kind) for v in VARIANTS for kind in ("params", "params_with_aux", "params_at_10_classes")
             if kind in shared_spec.load(v).expected]


@pytest.mark.parametrize("variant, kind", PUBLISHED, ids=[f"{v}-{k}" for v, k in PUBLISHED])
def test_published_param_counts_at_the_variants_own_input(key, variant, kind):
    """torchvision's 6,624,904 (13,004,888 with aux heads), the seeds' CIFAR counts: as each framework counts."""
    mod = builder(key)
    overrides = {"params": {}, "params_with_aux": {"aux_logits": True}, "params_at_10_classes": {"num_classes": 10}}
    spec = shared_spec.load(variant, **overrides[kind])
    assert mod.count_params(mod.build(spec, device="cpu", seed=0))[0] == spec.expected[kind]


def test_every_layer_is_reported_with_the_oracles_shape(built):
    outputs = built.mod.layer_outputs(built.model, built.x)
    report = shared_spec.analyze(built.spec)
    assert list(outputs) == [layer.name for layer in built.spec.walk()]
    for info in report.layers:
        assert outputs[info.name].shape == (BATCH, *info.out_shape), info.name
        assert outputs[info.name].dtype == np.float32, info.name


def test_eval_forward_is_the_last_layers_output(built):
    logits = built.mod.forward(built.model, built.x)
    assert isinstance(logits, np.ndarray) and logits.shape == (BATCH, built.spec.num_classes)
    outputs = built.mod.layer_outputs(built.model, built.x)
    np.testing.assert_allclose(logits, outputs[built.spec.layers[-1].name], rtol=1e-5, atol=1e-6)
    assert np.isfinite(logits).all()


def test_weights_are_the_spec_keys_and_shapes(built):
    assert list(built.weights) == list(built.spec.weight_shapes())
    for name, shape in built.spec.weight_shapes().items():
        assert built.weights[name].shape == shape and built.weights[name].dtype == np.float32, name


def test_init_follows_the_spec(built):
    """BN starts at gamma 1, beta 0, mean 0, var 1; biases at init.bias; weights with init's spread."""
    for name, value in built.weights.items():
        if name.endswith((".bn.gamma", ".bn.running_var")):
            assert np.all(value == 1.0), name
        elif name.endswith((".bn.beta", ".bn.running_mean")):
            assert np.all(value == 0.0), name
        elif name.endswith(".bias"):
            assert np.all(value == np.float32(built.spec.init.bias)), name
        else:
            assert value.std() > 0, name
            if built.spec.init.weight == "trunc_normal":
                assert value.min() >= built.spec.init.a and value.max() <= built.spec.init.b, name


# --------------------------------------------------------------------------- seeds and weights


def test_same_seed_same_weights_other_seed_different(built):
    again = built.mod.export_weights(built.mod.build(built.spec, device="cpu", seed=0))
    _, other = built.other()
    assert all(np.array_equal(again[k], built.weights[k]) for k in built.weights)
    drawn = [k for k in built.weights if not k.endswith((".bias", ".gamma", ".beta", ".running_mean", ".running_var"))]
    assert all(not np.array_equal(other[k], built.weights[k]) for k in drawn)
    # each weight gets its own draw: no two kernels of one model are equal (aux heads, branches)
    kernels = [built.weights[k].tobytes() for k in drawn]
    assert len(set(kernels)) == len(kernels)


def test_import_export_round_trip_is_exact(built):
    rng = np.random.default_rng(3)
    weights = {k: rng.standard_normal(v.shape).astype(np.float32) * 0.05 for k, v in built.weights.items()}
    weights = {k: (np.abs(v) + 0.5 if k.endswith(".running_var") else v) for k, v in weights.items()}
    model, _ = built.other()
    before = built.mod.forward(model, built.x)
    built.mod.import_weights(model, weights)
    out = built.mod.export_weights(model)
    assert list(out) == list(weights)
    assert all(np.array_equal(out[k], weights[k]) for k in weights)
    assert not np.allclose(built.mod.forward(model, built.x), before), "the imported weights are used"


def test_save_load_file_round_trip(built, tmp_path):
    path = tmp_path / f"{built.key}-{built.spec.variant}.safetensors"
    built.mod.save_weights(built.model, path)
    _, meta = shared_spec.weights.load_weights(path, built.spec)
    assert meta["variant"] == built.spec.variant
    model, _ = built.other()
    built.mod.load_weights(model, path)
    out = built.mod.export_weights(model)
    assert all(np.array_equal(out[k], built.weights[k]) for k in built.weights)
    np.testing.assert_array_equal(built.mod.forward(model, built.x), built.mod.forward(built.model, built.x))


@pytest.mark.parametrize("case", ["missing", "extra", "shape"])
def test_bad_weights_name_the_key_and_change_nothing(key, case):
    mod = builder(key)
    spec = small_spec("googlenet")
    model = mod.build(spec, device="cpu", seed=0)
    before = mod.export_weights(model)
    weights = {k: v + 1 for k, v in before.items()}
    name = "inception4a.branch2.conv2.bn.running_var"
    if case == "missing":
        del weights[name]
    elif case == "extra":
        name = "inception4a.branch2.conv2.bn.num_batches_tracked"
        weights[name] = np.zeros((), np.float32)
    else:
        name = "aux1.fc1.weight"
        weights[name] = np.zeros((1024, 7), np.float32)
    with pytest.raises(WeightsError, match=name.replace(".", r"\.")) as info:
        mod.import_weights(model, weights)
    assert "\n" not in str(info.value)
    after = mod.export_weights(model)
    assert all(np.array_equal(before[k], after[k]) for k in before), "checked before anything is set"


# --------------------------------------------------------------------------- eval and training


def test_training_mode(built):
    """Training mode: (main, aux...) with aux heads on, batch statistics and dropout; eval: main only.
    An implementation without training says so instead of returning eval outputs."""
    if not built.fw.can("train"):
        with pytest.raises(NotImplementedError, match="inference"):
            built.mod.forward(built.model, built.x, training=True)
        return
    model = built.mod.build(built.spec, device="cpu", seed=0)
    out = built.mod.forward(model, built.x, training=True)
    heads = len(built.spec.aux_heads)
    if heads:
        assert isinstance(out, tuple) and len(out) == 1 + heads
        assert [o.shape for o in out] == [(BATCH, built.spec.num_classes)] * (1 + heads)
        main = out[0]
    else:
        assert isinstance(out, np.ndarray)
        main = out
    has_bn = any(isinstance(layer, shared_spec.Conv) and layer.norm for layer in built.spec.walk())
    has_dropout = any(isinstance(layer, shared_spec.Dropout) and layer.rate > 0 for layer in built.spec.walk())
    if has_bn or has_dropout:
        assert not np.allclose(main, built.mod.forward(model, built.x, training=False), atol=1e-7)


def test_train_step_is_plain_sgd_on_the_contract_loss(key, input_batch):
    mod = builder(key)
    if not fw_registry.FRAMEWORKS[key].can("train"):
        pytest.skip(f"{key} is inference only (registry capabilities)")
    spec = small_spec("googlenet", dropout=0.0)  # deterministic training forward; aux heads on
    x, y = input_batch(spec, BATCH), np.array([1, 3])
    start = mod.export_weights(mod.build(spec, device="cpu", seed=0))
    probe = mod.build(spec, device="cpu", seed=0)
    main, *aux = mod.forward(probe, x, training=True)
    expected = cross_entropy(main, y) + sum(h.loss_weight * cross_entropy(a, y) for h, a in zip(spec.aux_heads, aux))

    step = mod.train_step(mod.build(spec, device="cpu", seed=0), x, y, lr=0.01)
    assert math.isfinite(step["loss"]) and step["loss"] == pytest.approx(expected, rel=1e-4)
    assert step["input_grad"].shape == x.shape and np.abs(step["input_grad"]).max() > 0
    assert list(step["weights"]) == list(start)
    moved = [k for k in start if k.endswith(".weight") and not np.array_equal(step["weights"][k], start[k])]
    assert len(moved) == sum(k.endswith(".weight") for k in start), "every weight takes a step"

    frozen = mod.train_step(mod.build(spec, device="cpu", seed=0), x, y, lr=0.0)
    assert frozen["loss"] == pytest.approx(step["loss"], rel=1e-5)
    for k in start:
        if not shared_spec.is_buffer(k):
            assert np.array_equal(frozen["weights"][k], start[k]), f"lr=0 changed {k}"


# --------------------------------------------------------------------------- devices and arguments


def test_device(d2l):
    assert d2l.model.spec is d2l.spec
    assert d2l.mod.device_of(d2l.model) == "cpu"
    auto = d2l.mod.build(d2l.spec, device="auto", seed=0)
    assert d2l.mod.device_of(auto) in ("cpu", "gpu")
    if d2l.mod.device_of(auto) == "cpu":
        with pytest.raises(ContractError, match=r"sees no GPU\. Received: device='gpu'"):
            d2l.mod.build(d2l.spec, device="gpu")


BUILD_ERRORS = [
    ({"device": "tpu"}, "device='tpu'"),
    ({"device": None}, "device=None"),
    ({"device": "cuda"}, "device='cuda'"),
    ({"seed": "0"}, "seed='0'"),
    ({"seed": -1}, "seed=-1"),
    ({"seed": 1.5}, "seed=1.5"),
    ({"seed": True}, "seed=True"),
]


@pytest.mark.parametrize("kwargs, received", BUILD_ERRORS, ids=[r for _, r in BUILD_ERRORS])
def test_bad_build_arguments(key, kwargs, received):
    mod = builder(key)
    with pytest.raises(ContractError, match=f"Received: {received}$") as info:
        mod.build(shared_spec.load("d2l"), **kwargs)
    assert "\n" not in str(info.value)


def test_build_refuses_what_is_not_a_spec(key):
    with pytest.raises(ContractError, match="Received: spec='d2l'$"):
        builder(key).build("d2l")


def _bad_calls(spec, good_x, trains: bool):
    c, h, w = spec.input_shape
    yield "x.shape", lambda m, mod: mod.forward(m, np.zeros((BATCH, c, h + 1, w), np.float32))
    yield "x.shape", lambda m, mod: mod.forward(m, np.zeros((BATCH, c + 2, h, w), np.float32))
    yield "x.shape", lambda m, mod: mod.forward(m, np.zeros((c, h, w), np.float32))
    yield "x.dtype", lambda m, mod: mod.forward(m, good_x.astype(np.complex64))
    yield "training", lambda m, mod: mod.forward(m, good_x, training="yes")
    yield "x.shape", lambda m, mod: mod.layer_outputs(m, np.zeros((BATCH, c, h, w + 3), np.float32))
    yield "model", lambda m, mod: mod.forward(object(), good_x)
    yield "model", lambda m, mod: mod.export_weights(object())
    if trains:
        y = np.array([0, 1])
        yield "lr", lambda m, mod: mod.train_step(m, good_x, y, lr=float("inf"))
        yield "lr", lambda m, mod: mod.train_step(m, good_x, y, lr=float("nan"))
        yield "lr", lambda m, mod: mod.train_step(m, good_x, y, lr=-0.1)
        yield "lr", lambda m, mod: mod.train_step(m, good_x, y, lr=True)
        yield "y.shape", lambda m, mod: mod.train_step(m, good_x, np.array([0, 1, 2]))
        yield "y.shape", lambda m, mod: mod.train_step(m, good_x, np.array([0.0, 1.0]))
        yield "y.shape", lambda m, mod: mod.train_step(m, good_x, np.array([0, spec.num_classes]))
        yield "y.shape", lambda m, mod: mod.train_step(m, good_x, np.array([-1, 0]))


def test_bad_call_arguments_are_refused_alike(d2l):
    before = d2l.mod.export_weights(d2l.model)
    count = 0
    for received, call in _bad_calls(d2l.spec, d2l.x, d2l.fw.can("train")):
        with pytest.raises(ContractError, match=f"Received: {received}=") as info:
            call(d2l.model, d2l.mod)
        assert "\n" not in str(info.value)
        count += 1
    assert count >= 8
    after = d2l.mod.export_weights(d2l.model)
    assert all(np.array_equal(before[k], after[k]) for k in before), "a refused call changed the model"


@pytest.mark.parametrize("what", ["op", "activation"])
def test_unknown_op_or_activation_is_refused_by_every_builder(key, what, write_spec):
    """The schema refuses these in a file; a record made in code reaches the builder, which must refuse it too."""
    import dataclasses

    mod = builder(key)
    spec = shared_spec.load("d2l")
    first = spec.layers[0]
    changed = dataclasses.replace(first, op="conv3d") if what == "op" else dataclasses.replace(first, activation="gelu")
    bad = dataclasses.replace(spec, layers=(changed, *spec.layers[1:]))
    expected = "Received: op='conv3d'" if what == "op" else "Received: activation='gelu'"
    with pytest.raises(ContractError, match=expected) as info:
        mod.build(bad, device="cpu", seed=0)
    assert "\n" not in str(info.value)
