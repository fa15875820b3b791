"""What only the PyTorch builder has: its module tree, torch's traps and numpy references per op.

The contract every framework shares (counts, shapes, seeds, weights, arguments) is in test_contract.py.

Each variant is built once per module (aux heads on where the variant has them, a small input where
it allows one); tests that change a model work on a deep copy.
"""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import impl_torch  # noqa: E402
from impl_torch.handwritten import GoogLeNet  # noqa: E402
import shared_spec  # noqa: E402
from shared_spec import numeric  # noqa: E402  (the numpy reference, also used by `check`)
from shared_spec.spec import Conv, Dropout, LRN, Pool, AdaptiveAvgPool, GlobalAvgPool  # noqa: E402

pytestmark = pytest.mark.torch

VARIANTS = shared_spec.list_variants(shared_spec.BUILTIN_SPEC)  # GoogLeNet (Inception v3: test_inception_v3)
BATCH = 2
SMALL = 45  # input side used where a variant's minimum allows it


def small_spec(variant: str, **overrides) -> shared_spec.Spec:
    """The variant with its aux heads on (if any) at the smallest of (spec size, max(minimum, SMALL))."""
    spec = shared_spec.load(variant)
    low = shared_spec.min_input_size(spec)[0]
    side = min(spec.input_size[0], max(low, SMALL))
    options = {"aux_logits": True} if spec.has_aux else {}
    options["input_size"] = (side, side)
    return shared_spec.load(variant, **{**options, **overrides})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two CPU cores are shared with other test runs: with more runnable threads than cores, torch's
    OpenMP workers spin and a 20 s run took over 100 s. One thread costs ~10% when the cores are free."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



@pytest.fixture(scope="module", params=VARIANTS)
def built(request, input_batch):
    """(spec, model built with seed 0, input batch) per variant, built once. Do not mutate the model."""
    spec = small_spec(request.param)
    return spec, impl_torch.build(spec, device="cpu", seed=0), input_batch(spec, BATCH)


def clearly_differ(a: np.ndarray, b: np.ndarray) -> bool:
    """More than float noise apart, relative to the outputs' scale (googlenet's logits are ~1e-3 at init)."""
    return float(np.abs(a - b).max()) > 1e-3 * float(np.abs(b).max())


def bn_variants() -> list[str]:
    return [v for v in VARIANTS if any(isinstance(l, Conv) and l.norm for l in shared_spec.load(v).walk())]


# --------------------------------------------------------------------------- structure


def test_op_table_covers_every_leaf_and_container_op():
    schema = json.loads(shared_spec.SCHEMA_FILE.read_text())
    ops = set(schema["$defs"]["layer_body"]["properties"]["op"]["enum"])
    # inception and block are templates the loader expands into concat / aux / leaves
    # transform_input is no layer a spec writes: the loader puts it first when a variant switches it on
    assert set(impl_torch.OPS) == ops - {"inception", "block"} | {"transform_input"}


def test_module_paths_are_spec_names(built):
    spec, model, _ = built
    for layer in spec.walk():
        model.get_submodule(layer.name)  # raises AttributeError if the path is not there
        if isinstance(layer, Conv):
            unit = model.get_submodule(layer.name)
            assert isinstance(unit.conv, nn.Conv2d)
            assert (unit.bn is not None) == (layer.norm is not None)
    torch_keys = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    neutral = {re.sub(r"\.bn\.gamma$", ".bn.weight", re.sub(r"\.bn\.beta$", ".bn.bias", k))
               for k in spec.weight_shapes()}
    assert torch_keys == neutral


@pytest.mark.parametrize("variant,side", [("googlenet", 15), ("googlenet", 16), ("googlenet", 33),
                                          ("googlenet", 58), ("d2l", 17), ("d2l", 30), ("cifar", 9)])
def test_shapes_match_oracle_at_edge_sizes(variant, side, input_batch):
    """Odd and even sides where ceil-mode and padded pools round differently."""
    spec = shared_spec.load(variant, input_size=side)
    report = shared_spec.analyze(spec)
    outs = impl_torch.layer_outputs(impl_torch.build(spec, device="cpu", seed=0), input_batch(spec, 1))
    for name, value in outs.items():
        assert value.shape == (1, *report.layer(name).out_shape), name


# --------------------------------------------------------------------------- op semantics


def _reference(layer, x: np.ndarray):
    if isinstance(layer, Pool):
        return numeric.pool(layer, x)
    if isinstance(layer, AdaptiveAvgPool):
        return numeric.adaptive_avgpool(x, layer.output_size)
    if isinstance(layer, GlobalAvgPool):
        return x.mean(axis=(2, 3), keepdims=True)
    if isinstance(layer, LRN):
        return numeric.lrn(layer, x)
    return None


def _check_against_reference(spec, model, x) -> int:
    """Hook every pool and LRN; compare its output with the numpy reference of its own input."""
    checked = []

    def hook(layer):
        def compare(module, args, output):
            expected = _reference(layer, args[0].detach().numpy())
            np.testing.assert_allclose(output.detach().numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=layer.name)
            checked.append(layer.name)
        return compare

    layers = [layer for layer in spec.walk() if isinstance(layer, (Pool, AdaptiveAvgPool, GlobalAvgPool, LRN))]
    handles = [model.get_submodule(layer.name).register_forward_hook(hook(layer)) for layer in layers]
    try:
        impl_torch.layer_outputs(model, x)
    finally:
        for handle in handles:
            handle.remove()
    assert sorted(checked) == sorted(layer.name for layer in layers)
    return len(checked)


def test_pools_and_lrn_match_numpy_reference(built):
    spec, model, x = built
    assert _check_against_reference(spec, model, x) > 0


ASYMMETRIC = {
    "format_version": 1, "family": "test", "default_variant": "asym",
    "variants": {"asym": {
        "description": "per-side padding in convs and pools, which torch cannot pass to nn.Conv2d/MaxPool2d",
        "provenance": {"source": "tests/test_torch_traps.py", "reproduces": "nothing"},
        # 15 x 12: ceil rounding adds a row and a column at maxpool1
        "input": {"channels": 2, "size": [15, 12]}, "num_classes": 3, "aux_logits": False,
        "init": {"weight": {"type": "xavier_uniform"}, "bias": 0.1},
        "layer_defaults": {"conv": {"bias": True, "norm": None, "activation": None}},
        "layers": [
            {"name": "conv1", "op": "conv", "out": 4, "kernel": 3, "stride": 2, "padding": [0, 1, 1, 2]},
            {"name": "maxpool1", "op": "maxpool", "kernel": 3, "stride": 2, "padding": [0, 1, 1, 0],
             "rounding": "ceil"},
            {"name": "avgpool1", "op": "avgpool", "kernel": 2, "stride": 1, "padding": [1, 0, 0, 1],
             "rounding": "floor"},
            {"name": "avgpool2", "op": "avgpool", "kernel": 3, "stride": 1, "padding": [1, 0, 0, 1],
             "rounding": "floor", "count_include_pad": True},
            {"name": "maxpool2", "op": "maxpool", "kernel": 3, "stride": 2, "padding": [1, 1], "rounding": "ceil"},
            {"name": "flatten", "op": "flatten"},
            {"name": "fc", "op": "dense", "out": "$num_classes"}]}},
}


def test_asymmetric_padding(tmp_path, input_batch):
    path = tmp_path / "asym.json"
    path.write_text(json.dumps(ASYMMETRIC))
    spec = shared_spec.load(spec_file=path)
    report = shared_spec.analyze(spec)
    model = impl_torch.build(spec, device="cpu", seed=0)
    x = input_batch(spec, BATCH)
    outs = impl_torch.layer_outputs(model, x)
    for name, value in outs.items():
        assert value.shape == (BATCH, *report.layer(name).out_shape), name
    assert _check_against_reference(spec, model, x) == 4
    # conv1: explicit zero padding (top 0, bottom 1, left 1, right 2), then an unpadded convolution
    w = impl_torch.export_weights(model)
    padded = np.pad(x, ((0, 0), (0, 0), (0, 1), (1, 2)))
    expected = F.conv2d(torch.from_numpy(padded), torch.from_numpy(w["conv1.conv.weight"]),
                        torch.from_numpy(w["conv1.conv.bias"]), stride=2).numpy()
    np.testing.assert_allclose(outs["conv1"], expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- overrides


def test_overrides(built, input_batch):
    spec, _, _ = built
    has_dropout = any(isinstance(layer, Dropout) for layer in spec.walk())
    options = {"num_classes": 7, "in_channels": 2, "input_size": spec.input_size}
    if has_dropout:
        options["dropout"] = 0.3
    custom = shared_spec.load(spec.variant, aux_logits=spec.aux_logits, **options)
    model = impl_torch.build(custom, device="cpu", seed=0)
    x = input_batch(custom, BATCH)
    assert x.shape[1] == 2
    assert impl_torch.forward(model, x).shape == (BATCH, 7)
    assert model.get_submodule(next(l.name for l in custom.walk() if isinstance(l, Conv))).conv.in_channels == 2
    rates = {m.p for m in model.modules() if isinstance(m, nn.Dropout)}
    assert rates == ({0.3} if has_dropout else set())
    assert impl_torch.count_params(model) == (shared_spec.analyze(custom).params, shared_spec.analyze(custom).buffers)
    if spec.has_aux:
        out = impl_torch.forward(model, x, training=True)
        assert [o.shape for o in out] == [(BATCH, 7)] * 3


def test_aux_heads_off_by_default(input_batch):
    spec = shared_spec.load("googlenet", input_size=SMALL)
    model = impl_torch.build(spec, device="cpu", seed=0)
    assert not hasattr(model, "aux1")
    out = impl_torch.forward(model, input_batch(spec, BATCH), training=True)
    assert isinstance(out, np.ndarray) and out.shape == (BATCH, 1000)


def test_non_square_input(input_batch):
    spec = shared_spec.load("googlenet", input_size=(40, 57), aux_logits=True)
    report = shared_spec.analyze(spec)
    outs = impl_torch.layer_outputs(impl_torch.build(spec, device="cpu", seed=0), input_batch(spec, BATCH))
    for name, value in outs.items():
        assert value.shape == (BATCH, *report.layer(name).out_shape), name


# --------------------------------------------------------------------------- train vs eval


def test_train_and_eval_outputs(built):
    spec, model, x = built
    model = copy.deepcopy(model).eval()
    heads = len(spec.aux_heads)
    train_out = impl_torch.forward(model, x, training=True)
    if heads:
        assert isinstance(train_out, tuple) and len(train_out) == 1 + heads
        assert all(o.shape == (BATCH, spec.num_classes) for o in train_out)
    else:
        assert isinstance(train_out, np.ndarray) and train_out.shape == (BATCH, spec.num_classes)
    assert model.training is False  # forward restores the mode
    first = impl_torch.forward(model, x)
    assert isinstance(first, np.ndarray) and first.shape == (BATCH, spec.num_classes)
    np.testing.assert_array_equal(impl_torch.forward(model, x), first)  # no dropout in eval
    # eval results do not depend on the rest of the batch (BN running statistics, no batch statistics)
    np.testing.assert_allclose(impl_torch.forward(model, x[1:]), first[1:], rtol=1e-5, atol=1e-6)

    main = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731
    again = [main(impl_torch.forward(model, x, training=True)) for _ in range(2)]
    has_dropout = any(isinstance(layer, Dropout) and layer.rate > 0 for layer in spec.layers)
    if has_dropout:
        assert clearly_differ(again[0], again[1])  # dropout is active in training
    else:
        np.testing.assert_array_equal(again[0], again[1])
    has_bn = any(isinstance(layer, Conv) and layer.norm for layer in spec.walk())
    if not has_bn and not has_dropout:
        np.testing.assert_array_equal(again[0], first)  # nothing differs between the modes


@pytest.mark.parametrize("variant", [v for v in VARIANTS if shared_spec.load(v).has_aux])
def test_aux_outputs_come_in_spec_order(variant, input_batch):
    spec = small_spec(variant)
    model = impl_torch.build(spec, device="cpu", seed=0)
    captured = {}
    for head in spec.aux_heads:
        model.get_submodule(head.name).register_forward_hook(
            lambda m, a, out, name=head.name: captured.__setitem__(name, out.detach().numpy().copy()))
    _, *aux = impl_torch.forward(model, input_batch(spec, BATCH), training=True)
    assert [h.name for h in spec.aux_heads] == ["aux1", "aux2"]
    for head, value in zip(spec.aux_heads, aux, strict=True):
        np.testing.assert_array_equal(value, captured[head.name], err_msg=head.name)
    assert not np.array_equal(aux[0], aux[1])


@pytest.mark.parametrize("variant", bn_variants())
def test_batchnorm_statistics(variant, input_batch):
    spec = small_spec(variant, dropout=0.0) if any(
        isinstance(l, Dropout) for l in shared_spec.load(variant).walk()) else small_spec(variant)
    model = impl_torch.build(spec, device="cpu", seed=0)
    x = input_batch(spec, BATCH)
    first = next(l for l in spec.walk() if isinstance(l, Conv) and l.norm)
    unit = model.get_submodule(first.name)
    assert unit.bn.eps == first.norm.eps and unit.bn.momentum == first.norm.momentum

    eval_out = impl_torch.forward(model, x)
    captured = {}
    handle = unit.conv.register_forward_hook(lambda m, a, out: captured.setdefault("conv", out.detach().clone()))
    train_out = impl_torch.forward(model, x, training=True)
    handle.remove()
    train_main = train_out[0] if isinstance(train_out, tuple) else train_out
    assert clearly_differ(train_main, eval_out)  # batch statistics in training

    # momentum is the weight of the new batch: running = (1 - m) * running + m * batch
    m, conv = first.norm.momentum, captured["conv"]
    mean, var = conv.mean(dim=(0, 2, 3)), conv.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(unit.bn.running_mean, m * mean, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(unit.bn.running_var, (1 - m) + m * var, rtol=1e-4, atol=1e-6)

    # eval uses the running statistics: changing them changes the output. The last BN on the main
    # path, because at init deep activations are tiny and the first BN's scale barely reaches the logits.
    aux = {head.name for head in spec.aux_heads}
    last = [l for l in spec.walk() if isinstance(l, Conv) and l.norm and l.name.split(".")[0] not in aux][-1]
    before = impl_torch.forward(model, x)
    with torch.no_grad():
        model.get_submodule(last.name).bn.running_var.mul_(4.0)
    assert clearly_differ(impl_torch.forward(model, x), before)


# --------------------------------------------------------------------------- init and seeds


def test_init_follows_spec(built):
    spec, model, _ = built
    w = impl_torch.export_weights(model)
    init = spec.init
    for layer in spec.walk():
        if not isinstance(layer, Conv):
            continue
        weight = w[f"{layer.name}.conv.weight"]
        if init.weight == "xavier_uniform":
            fan_in, fan_out = weight[0].size, weight.shape[0] * weight[0, 0].size
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            assert np.abs(weight).max() <= bound
            if weight.size >= 4096:
                assert np.abs(weight).max() > 0.95 * bound, layer.name
        else:
            assert np.abs(weight).max() <= max(abs(init.a), abs(init.b))
            if weight.size >= 4096:
                assert abs(weight.std() - init.std) < 0.05 * init.std, layer.name
                assert abs(weight.mean()) < 0.05 * init.std, layer.name
        if layer.bias:
            assert (w[f"{layer.name}.conv.bias"] == np.float32(init.bias)).all()
        if layer.norm:
            assert (w[f"{layer.name}.bn.gamma"] == 1).all() and (w[f"{layer.name}.bn.beta"] == 0).all()
            assert (w[f"{layer.name}.bn.running_mean"] == 0).all() and (w[f"{layer.name}.bn.running_var"] == 1).all()


def test_seed_leaves_global_rng_alone():
    spec = small_spec("d2l")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    impl_torch.build(spec, device="cpu", seed=5)
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(7)
    a = impl_torch.export_weights(impl_torch.build(spec, device="cpu"))
    torch.manual_seed(7)
    b = impl_torch.export_weights(impl_torch.build(spec, device="cpu"))
    np.testing.assert_array_equal(a["fc.weight"], b["fc.weight"])  # seed=None draws from the global RNG


# --------------------------------------------------------------------------- weights


# --------------------------------------------------------------------------- arguments and devices


def test_ieee_fp32_switches_tf32_off_and_restores():
    from impl_torch.api import ieee_fp32

    conv = getattr(torch.backends.cudnn, "conv", None)
    owner, name, off = ((conv, "fp32_precision", "ieee") if hasattr(conv, "fp32_precision")
                        else (torch.backends.cudnn, "allow_tf32", False))
    before = getattr(owner, name)
    with ieee_fp32(True):
        assert getattr(owner, name) == off
    assert getattr(owner, name) == before
    with ieee_fp32(False):
        assert getattr(owner, name) == before


def test_name_clashing_with_torch_attribute_is_a_value_error(tmp_path):
    doc = copy.deepcopy(ASYMMETRIC)
    doc["variants"]["asym"]["layers"][0]["name"] = "eval"
    path = tmp_path / "clash.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="Received: name='eval'"):
        impl_torch.build(shared_spec.load(spec_file=path), device="cpu")


# --------------------------------------------------------------------------- training step


@pytest.mark.parametrize("variant", ["googlenet", "cifar"])
def test_train_step_is_plain_sgd_on_the_contract_loss(variant, input_batch):
    spec = shared_spec.load(variant, num_classes=5, dropout=0.0, input_size=32,
                            **({"aux_logits": True} if variant == "googlenet" else {}))
    model = impl_torch.build(spec, device="cpu", seed=0)
    reference = copy.deepcopy(model)
    x, y, lr = input_batch(spec, BATCH), np.array([1, 4]), 0.01
    before = impl_torch.export_weights(model)

    result = impl_torch.train_step(model, x, y, lr=lr)

    # the same loss and gradients, written out independently (dropout 0: deterministic)
    reference.train()
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.from_numpy(y)
    out = reference(xt)
    main, *aux = out if isinstance(out, tuple) else (out,)
    assert len(aux) == len(spec.aux_heads)
    loss = F.cross_entropy(main, yt)
    loss = loss + sum(h.loss_weight * F.cross_entropy(a, yt) for h, a in zip(spec.aux_heads, aux))
    loss.backward()

    assert math.isfinite(result["loss"])
    assert result["loss"] == pytest.approx(loss.item(), rel=1e-6)
    assert result["input_grad"].shape == x.shape
    np.testing.assert_allclose(result["input_grad"], xt.grad.numpy(), rtol=1e-4, atol=1e-9)
    after = result["weights"]
    assert list(after) == list(spec.weight_shapes())
    grads = {name: p.grad for name, p in reference.named_parameters()}
    state = reference.state_dict()
    checked = 0
    for key in after:
        torch_key = re.sub(r"\.bn\.gamma$", ".bn.weight", re.sub(r"\.bn\.beta$", ".bn.bias", key))
        if torch_key in grads:
            expected = before[key] - lr * grads[torch_key].numpy()
            np.testing.assert_allclose(after[key], expected, rtol=1e-5, atol=1e-8, err_msg=key)
            checked += not np.array_equal(after[key], before[key])
        else:  # BN running statistics: updated by the training forward, not by SGD
            np.testing.assert_allclose(after[key], state[torch_key].numpy(), rtol=1e-5, atol=1e-7, err_msg=key)
    assert checked > 0
    # bit-exact for the classifier: w - lr * grad, nothing else (no momentum, no weight decay)
    fc = model.get_submodule(spec.layers[-1].name)
    expected = torch.from_numpy(before["fc.weight"]).add(fc.weight.grad, alpha=-lr)  # w + (-lr) * grad, as optim.SGD
    np.testing.assert_array_equal(after["fc.weight"], expected.numpy())
    assert model.training is True  # as built (torch's default); train_step restores the mode


# --------------------------------------------------------------------------- torchvision


def _torchvision_key(key: str) -> str:
    key = re.sub(r"\.bn\.gamma$", ".bn.weight", re.sub(r"\.bn\.beta$", ".bn.bias", key))
    key = re.sub(r"(inception\w+)\.branch1\.conv1\.", r"\1.branch1.", key)
    key = re.sub(r"\.branch([23])\.conv1\.", r".branch\1.0.", key)
    key = re.sub(r"\.branch([23])\.conv2\.", r".branch\1.1.", key)
    return re.sub(r"\.branch4\.conv1\.", ".branch4.1.", key)


def test_googlenet_matches_torchvision_code(input_batch):
    """The 'googlenet' variant computes what torchvision's GoogLeNet (seed 001) computes, aux heads included."""
    spec = shared_spec.load("googlenet", num_classes=10, aux_logits=True, input_size=96)
    model = impl_torch.build(spec, device="cpu", seed=0)
    reference = GoogLeNet(num_classes=10, aux_logits=True)  # impl_torch/handwritten.py: torchvision's code
    weights = impl_torch.export_weights(model)
    state = {_torchvision_key(k): torch.from_numpy(v) for k, v in weights.items()}
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    x = input_batch(spec, BATCH)
    reference.eval()
    with torch.no_grad():
        expected_main, expected_aux2, expected_aux1 = reference(torch.from_numpy(x), with_aux=True)
    np.testing.assert_allclose(impl_torch.forward(model, x), expected_main.numpy(), rtol=1e-4, atol=1e-5)
    outs = impl_torch.layer_outputs(model, x)
    np.testing.assert_allclose(outs["aux1"], expected_aux1.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outs["aux2"], expected_aux2.numpy(), rtol=1e-4, atol=1e-5)
