"""``googlenet-suite convert``: torchvision's state_dict and GluonCV's .params to and from the suite's format.

torchvision-format files come from ``impl_torch.handwritten.GoogLeNet`` (torchvision's module names, aux heads
on), saved with ``torch.save``; GluonCV names are checked against a small Gluon replica built with GluonCV
0.10's name scopes (so MXNet's own naming machinery, not our map, says what the names are).

Lean: 96x96 (aux heads pool 6x6 -> 4x4, overlapping windows, as at 224) and 10 classes, one image; every
model is built once per module.
"""

from __future__ import annotations

import numpy as np
import pytest

import shared_spec
from googlenet_suite import convert, frameworks
from googlenet_suite.cli import main

from conftest import cli_refused as bad, cli_run as run  # tests/conftest.py

SIZE, CLASSES, TOL = 96, 10, 1e-4
OVERRIDES = ["--num-classes", str(CLASSES), "--input-size", str(SIZE), str(SIZE)]


def _spec(**overrides):
    return shared_spec.load("googlenet", num_classes=CLASSES, input_size=(SIZE, SIZE), **overrides)


# --------------------------------------------------------------------------- torchvision


@pytest.fixture(scope="module")
def tv(tmp_path_factory, input_batch):
    """torchvision's GoogLeNet (aux heads on) with O(1) activations, its torch.save'd state_dict, the input,
    and its eval outputs (logits, aux1, aux2) with transform_input off and on."""
    torch = pytest.importorskip("torch")
    from impl_torch.handwritten import GoogLeNet

    model = GoogLeNet(num_classes=CLASSES, aux_logits=True).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("conv.weight", "fc.weight", "fc1.weight", "fc2.weight")):
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith(("running_mean", "bn.bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    path = tmp_path_factory.mktemp("tv") / "googlenet.pth"
    torch.save(model.state_dict(), path)
    x = input_batch(_spec(), 1)
    outputs = {}
    for transform in (False, True):
        model.transform_input = transform
        with torch.no_grad():
            logits, aux2, aux1 = model(torch.from_numpy(x), with_aux=True)
        outputs[transform] = {"logits": logits.numpy(), "aux1": aux1.numpy(), "aux2": aux2.numpy()}
    return {"model": model, "path": path, "x": x, "outputs": outputs}


@pytest.fixture(scope="module")
def suite_file(tv, tmp_path_factory):
    out = tmp_path_factory.mktemp("suite") / "googlenet.safetensors"
    assert main(["convert", str(tv["path"]), "--from", "torchvision", "--to", "suite", "--output", str(out),
                 "googlenet", "--aux", *OVERRIDES]) == 0
    return out


@pytest.mark.torch
def test_torchvision_names_are_the_modules_state_dict(tv):
    keys = set(tv["model"].state_dict())
    spec = _spec(aux_logits=True)
    assert set(convert.torchvision_names(spec).values()) | set(convert.torchvision_counters(spec)) == keys
    assert convert.torchvision_names(spec)["inception3a.branch4.conv1.bn.gamma"] == "inception3a.branch4.1.bn.weight"


@pytest.mark.torch
def test_aux_weights_are_dropped_with_a_note_or_kept_with_aux(tv, tmp_path, capsys):
    out = tmp_path / "main.safetensors"
    err = run(capsys, ["convert", tv["path"], "--from", "torchvision", "--to", "suite", "--output", out, *OVERRIDES])
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "aux1, aux2" in notes[0] and "--aux keeps them" in notes[0]
    weights, meta = shared_spec.weights.load_weights(out, _spec())
    assert set(weights) == set(_spec().weight_shapes())
    assert meta["source_format"] == "torchvision" and meta["source_file"] == str(tv["path"])


@pytest.mark.cross
@pytest.mark.parametrize("transform", [False, True], ids=["plain", "transform_input"])
@pytest.mark.parametrize("key", list(frameworks.FRAMEWORKS))
def test_every_framework_reproduces_torchvisions_module(key, transform, tv, suite_file, builder):
    mod = builder(key)
    spec = _spec(aux_logits=True, transform_input=transform)
    model = mod.build(spec, device="cpu", seed=0)
    mod.load_weights(model, suite_file)
    got = mod.layer_outputs(model, tv["x"])
    got["logits"] = mod.forward(model, tv["x"])
    want = tv["outputs"][transform]
    assert 1e-1 < float(np.abs(want["logits"]).max()) < 1e3
    for name in ("logits", "aux1", "aux2"):
        diff = float(np.abs(got[name] - want[name]).max())
        assert diff <= TOL, f"{key}: {name} differs from torchvision's module by {diff:.2e}"


@pytest.mark.torch
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_suite_torchvision_suite_is_bit_identical(suite_file, tmp_path, capsys, suffix):
    torch = pytest.importorskip("torch")
    from impl_torch.handwritten import GoogLeNet

    middle, back = tmp_path / f"tv{suffix}", tmp_path / "back.safetensors"
    run(capsys, ["convert", suite_file, "--from", "suite", "--to", "torchvision", "--output", middle, "--aux", *OVERRIDES])
    run(capsys, ["convert", middle, "--from", "torchvision", "--to", "suite", "--output", back, "--aux", *OVERRIDES])
    before, _ = shared_spec.weights.load_weights(suite_file)
    after, meta = shared_spec.weights.load_weights(back)
    assert sorted(before) == sorted(after) and all(np.array_equal(before[k], after[k]) for k in before)
    assert meta["source_format"] == "torchvision" and "suite" in meta["converted_from"]
    if suffix == ".pth":  # torchvision's module takes it with strict=True
        state = torch.load(middle, weights_only=True)
        GoogLeNet(num_classes=CLASSES, aux_logits=True).load_state_dict(state, strict=True)
        assert state._metadata["googlenet_suite"]["source_file"] == str(suite_file)


# --------------------------------------------------------------------------- GluonCV


def _gluoncv_replica(classes: int, aux: bool):
    """GluonCV 0.10's GoogLeNet structure and name scopes (model_zoo/googlenet.py), written for this test."""
    from mxnet.gluon import HybridBlock, nn
    from mxnet.gluon.contrib.nn import HybridConcurrent

    def basic(cin, cout, **kw):
        out = nn.HybridSequential(prefix="")
        out.add(nn.Conv2D(in_channels=cin, channels=cout, use_bias=False, **kw))
        out.add(nn.BatchNorm(in_channels=cout, epsilon=0.001))
        out.add(nn.Activation("relu"))
        return out

    def branch(pool, *convs):
        out = nn.HybridSequential(prefix="")
        if pool:
            out.add(nn.MaxPool2D(pool_size=3, strides=1, padding=1))
        for cin, cout, k in convs:
            out.add(basic(cin, cout, kernel_size=k, padding=k // 2))
        return out

    def mixed(name, cin, c1, c3r, c3, c5r, c5, proj):
        out = HybridConcurrent(axis=1, prefix=f"Mixed_{name}_")
        with out.name_scope():
            out.add(branch(False, (cin, c1, 1)))
            out.add(branch(False, (cin, c3r, 1), (c3r, c3, 3)))
            out.add(branch(False, (cin, c5r, 1), (c5r, c5, 3)))
            out.add(branch(True, (cin, proj, 1)))
        return out

    def aux_head(cin):
        out = nn.HybridSequential(prefix="")
        out.add(nn.AvgPool2D(pool_size=5, strides=3), basic(cin, 128, kernel_size=1), nn.Flatten(),
                nn.Dense(1024, in_units=2048), nn.Activation("relu"), nn.Dropout(0.7), nn.Dense(classes, in_units=1024))
        return out

    class GoogLeNet(HybridBlock):
        """GluonCV's attributes in GluonCV's order, so that both naming forms come out as GluonCV's."""

        def __init__(self):
            super().__init__(prefix="googlenet3_")  # not instance 0: the reader must match any N
            with self.name_scope():
                self.conv1 = basic(3, 64, kernel_size=7, strides=2, padding=3)
                self.maxpool1 = nn.MaxPool2D(pool_size=3, strides=2, ceil_mode=True)
                self.conv2 = basic(64, 64, kernel_size=1)
                self.conv3 = basic(64, 192, kernel_size=3, padding=1)
                self.maxpool2 = nn.MaxPool2D(pool_size=3, strides=2, ceil_mode=True)
                rows = shared_spec.read_document(shared_spec.BUILTIN_SPEC)[0]["tables"]["table1"]["rows"]
                ins = {"3a": 192, "3b": 256, "4a": 480, "4b": 512, "4c": 512, "4d": 512, "4e": 528, "5a": 832, "5b": 832}
                for n in ins:
                    setattr(self, f"inception{n}", mixed(n, ins[n], *rows[f"inception{n}"]))
                    if n == "3b":
                        self.maxpool3 = nn.MaxPool2D(pool_size=3, strides=2, ceil_mode=True)
                    if n == "4e":
                        self.maxpool4 = nn.MaxPool2D(pool_size=2, strides=2)
                self.aux = aux
                if aux:
                    self.aux1, self.aux2 = aux_head(512), aux_head(528)
                self.head = nn.HybridSequential(prefix="")
                self.avgpool, self.dropout = nn.AvgPool2D(pool_size=7), nn.Dropout(0.4)
                self.output = nn.Dense(classes, in_units=1024)
                self.head.add(self.avgpool, self.dropout, self.output)

        def hybrid_forward(self, F, x):
            x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
            x = self.inception4a(self.maxpool3(self.inception3b(self.inception3a(x))))
            aux1 = self.aux1(x) if self.aux else None
            x = self.inception4d(self.inception4c(self.inception4b(x)))
            aux2 = self.aux2(x) if self.aux else None
            x = self.head(self.inception5b(self.inception5a(self.maxpool4(self.inception4e(x)))))
            return (x, aux2, aux1) if self.aux else x  # GluonCV's order

    return GoogLeNet()


@pytest.mark.mxnet
@pytest.mark.parametrize("aux", [False, True], ids=["main", "aux"])
def test_gluoncv_names_are_gluons_own(aux):
    pytest.importorskip("mxnet")
    replica = _gluoncv_replica(CLASSES, aux)
    names = {name[len("googlenet3_"):] for name in replica.collect_params()}
    assert set(convert.gluoncv_names(_spec(aux_logits=aux)).values()) == names


def _replica_file(mx, tmp_path, aux, blocks=False):
    """The replica with O(1) activations, saved with full names (googlenet3_Mixed_3a_conv0_weight ...) or, with
    ``blocks``, by ``save_parameters`` (structural names: conv1.0.weight ..., the classifier twice)."""
    replica = _gluoncv_replica(CLASSES, aux=aux)
    replica.initialize(mx.init.Xavier(magnitude=2.0))
    rng = np.random.default_rng(1)
    for name, param in replica.collect_params().items():
        if name.endswith("running_var"):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
        elif name.endswith("weight"):  # He-like scale: activations keep their size through the network
            param.set_data(mx.nd.array(rng.normal(0, (2.0 / np.prod(param.shape[1:])) ** 0.5, param.shape)))
    params = tmp_path / "googlenet.params"
    if blocks:
        replica.save_parameters(str(params))
    else:
        replica.collect_params().save(str(params))
    return replica, params


@pytest.mark.mxnet
def test_gluoncv_file_with_instance_prefix_converts_and_runs_like_gluoncv(tmp_path, capsys, input_batch):
    """A .params file of the replica (full names, instance 3) -> suite -> the suite's Gluon model at 224: the
    same main logits as the replica (at 224 GluonCV's fixed 7x7 pool and floor 2/2 maxpool4 are torchvision's)."""
    mx = pytest.importorskip("mxnet")
    import impl_mxnet

    replica, params = _replica_file(mx, tmp_path, aux=False)
    out = tmp_path / "suite.safetensors"
    run(capsys, ["convert", params, "--from", "gluoncv", "--to", "suite", "--output", out, "--num-classes", CLASSES])
    spec = shared_spec.load("googlenet", num_classes=CLASSES)
    model = impl_mxnet.build(spec, device="cpu", seed=0)
    impl_mxnet.load_weights(model, out)
    x = input_batch(spec, 1, seed=2)
    want = replica(mx.nd.array(x)).asnumpy()
    assert float(np.abs(want).max()) > 1e-1
    assert float(np.abs(impl_mxnet.forward(model, x) - want).max()) <= TOL


@pytest.mark.mxnet
@pytest.mark.parametrize("blocks", [False, True], ids=["parameter-names", "save_parameters"])
def test_the_googlenet_gluoncv_variant_is_gluoncvs_network_aux_heads_included(tmp_path, capsys, blocks, input_batch):
    """googlenet-gluoncv (5/3 aux pools, fixed 7x7 pool, floor maxpool4) reproduces the replica's (out, aux2, aux1),
    from either naming form of a .params file."""
    mx = pytest.importorskip("mxnet")
    import impl_mxnet

    replica, params = _replica_file(mx, tmp_path, aux=True, blocks=blocks)
    out = tmp_path / "suite.safetensors"
    run(capsys, ["convert", params, "--from", "gluoncv", "--to", "suite", "--output", out, "googlenet-gluoncv",
                 "--aux", "--num-classes", CLASSES])
    spec = shared_spec.load("googlenet-gluoncv", num_classes=CLASSES, aux_logits=True)
    model = impl_mxnet.build(spec, device="cpu", seed=0)
    impl_mxnet.load_weights(model, out)
    x = input_batch(spec, 1, seed=3)
    main_out, aux2, aux1 = (o.asnumpy() for o in replica(mx.nd.array(x)))
    got = impl_mxnet.layer_outputs(model, x)
    for name, want in (("fc", main_out), ("aux1", aux1), ("aux2", aux2)):
        assert float(np.abs(want).max()) > 1e-1
        assert float(np.abs(got[name] - want).max()) <= TOL, name


@pytest.mark.mxnet
def test_suite_gluoncv_suite_is_bit_identical(tmp_path, capsys):
    pytest.importorskip("mxnet")
    spec = _spec(aux_logits=True)
    rng = np.random.default_rng(0)
    weights = {k: rng.standard_normal(s).astype(np.float32) for k, s in spec.weight_shapes().items()}
    first, middle, back = tmp_path / "a.safetensors", tmp_path / "g.params", tmp_path / "b.safetensors"
    shared_spec.weights.save_weights(first, weights, spec)
    run(capsys, ["convert", first, "--from", "suite", "--to", "gluoncv", "--output", middle, "--aux", *OVERRIDES])
    run(capsys, ["convert", middle, "--from", "gluoncv", "--to", "suite", "--output", back, "--aux", *OVERRIDES])
    after, meta = shared_spec.weights.load_weights(back)
    assert sorted(after) == sorted(weights) and all(np.array_equal(weights[k], after[k]) for k in weights)
    assert meta["source_format"] == "gluoncv"


# --------------------------------------------------------------------------- bad input


def _torch_file(tmp_path, name, content):
    torch = pytest.importorskip("torch")
    path = tmp_path / name
    torch.save(content, path)
    return path


def _state(tv, **changes):
    import torch

    state = dict(tv["model"].state_dict())
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            state.pop(key)
        else:
            state[key] = value if isinstance(value, torch.Tensor) else torch.zeros(value)
    return state


class _NotAStateDict:  # a pickled object of a class: torch.load(weights_only=True) refuses it
    pass


BAD = {
    "inception_v3 keys": (lambda tv: {"Conv2d_1a_3x3.conv.weight": __import__("torch").zeros(32, 3, 3, 3),
                                      "Mixed_5b.branch1x1.conv.weight": __import__("torch").zeros(64, 192, 1, 1)},
                          ["not a torchvision GoogLeNet checkpoint", "Conv2d_1a_3x3.conv.weight"]),
    "missing key": (lambda tv: _state(tv, inception4b__branch3__1__bn__running_var=None),
                    ["missing key 'inception4b.branch3.1.bn.running_var'"]),
    "extra key": (lambda tv: _state(tv, inception4b__branch5__conv__weight=(8, 8, 1, 1)),
                  ["unexpected key 'inception4b.branch5.conv.weight'"]),
    "shape mismatch": (lambda tv: _state(tv, fc__weight=(1000, 1024)),
                       ["key 'fc.weight' has shape (1000, 1024), expected (10, 1024)"]),
    "training checkpoint": (lambda tv: {"model": _state(tv), "epoch": 3}, ["not a plain state_dict", "'model'"]),
    "pickled object": (lambda tv: _NotAStateDict(), ["weights_only", "Unsupported global", "_NotAStateDict"]),
}


@pytest.mark.torch
@pytest.mark.parametrize("case", list(BAD))
def test_bad_torchvision_checkpoint(tv, tmp_path, capsys, case):
    make, expected = BAD[case]
    path = _torch_file(tmp_path, "bad.pth", make(tv))
    bad(capsys, tmp_path, ["convert", path, "--from", "torchvision", "--to", "suite", "--aux",
                           "--output", tmp_path / "out" / "w.safetensors", *OVERRIDES], str(path), *expected)


@pytest.mark.torch
def test_not_a_torch_file(tmp_path, capsys):
    pytest.importorskip("torch")
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint\n")
    bad(capsys, tmp_path, ["convert", path, "--from", "torchvision", "--to", "suite",
                           "--output", tmp_path / "out" / "w.safetensors"], str(path), "not a plain state_dict")


@pytest.mark.mxnet
def test_not_an_mxnet_file(tmp_path, capsys):
    pytest.importorskip("mxnet")
    path = tmp_path / "notes.params"
    path.write_text("not a parameter file\n")
    bad(capsys, tmp_path, ["convert", path, "--from", "gluoncv", "--to", "suite",
                           "--output", tmp_path / "out" / "w.safetensors"], str(path), "not an MXNet parameter file",
        "Invalid NDArray file format")


@pytest.mark.mxnet
def test_gluoncv_names_with_two_instance_prefixes(tmp_path, capsys):
    mx = pytest.importorskip("mxnet")
    path = tmp_path / "mixed.params"
    mx.nd.save(str(path), {"googlenet0_conv0_weight": mx.nd.zeros((64, 3, 7, 7)),
                           "googlenet1_conv1_weight": mx.nd.zeros((64, 64, 1, 1))})
    bad(capsys, tmp_path, ["convert", path, "--from", "gluoncv", "--to", "suite",
                           "--output", tmp_path / "out" / "w.safetensors"], str(path), "'googlenet0_'", "'googlenet1_'")


# --------------------------------------------------------------------------- bad input: each class at its root


def _unchanged(path):
    """The bytes of an input file, to compare after a command: no input file is ever changed."""
    return path.read_bytes()


@pytest.mark.torch
def test_a_bfloat16_tensor_is_named_not_a_traceback(tv, tmp_path, capsys):
    state = _state(tv)
    path = _torch_file(tmp_path, "bf16.pth", {**state, "fc.weight": state["fc.weight"].bfloat16()})
    bad(capsys, tmp_path, ["convert", path, "--from", "torchvision", "--to", "suite", "--aux",
                           "--output", tmp_path / "out" / "w.safetensors", *OVERRIDES], str(path), "'fc.weight'",
        "bfloat16", "float32")


@pytest.mark.torch
def test_a_bfloat16_safetensors_tensor_is_named(tv, tmp_path, capsys):
    pytest.importorskip("torch")
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in _state(tv).items()}
    state["fc.bias"] = state["fc.bias"].bfloat16()
    path = tmp_path / "bf16.safetensors"
    save_file(state, str(path))
    bad(capsys, tmp_path, ["convert", path, "--from", "torchvision", "--to", "suite", "--aux",
                           "--output", tmp_path / "out" / "w.safetensors", *OVERRIDES], str(path), "'fc.bias'",
        "bfloat16")


@pytest.mark.torch
def test_a_pth_whose_crc_no_longer_matches_is_refused(tv, tmp_path, capsys):
    """One flipped sign bit inside a tensor's data: torch.load would take it; the zip's CRC-32 does not."""
    state = _state(tv)
    path = _torch_file(tmp_path, "flipped.pth", state)
    data = bytearray(path.read_bytes())
    at = data.find(state["fc.bias"].numpy().tobytes())
    assert at > 0
    data[at + 3] ^= 0x80
    path.write_bytes(bytes(data))
    before = _unchanged(path)
    bad(capsys, tmp_path, ["convert", path, "--from", "torchvision", "--to", "suite", "--aux",
                           "--output", tmp_path / "out" / "w.safetensors", *OVERRIDES], str(path), "CRC-32")
    assert path.read_bytes() == before


@pytest.mark.torch
def test_a_ddp_module_prefix_is_read_without_it_with_a_note(tv, tmp_path, capsys):
    wrapped = _torch_file(tmp_path, "ddp.pth", {f"module.{k}": v for k, v in _state(tv).items()})
    out, plain = tmp_path / "ddp.safetensors", tmp_path / "plain.safetensors"
    err = run(capsys, ["convert", wrapped, "--from", "torchvision", "--to", "suite", "--output", out, "--aux",
                       *OVERRIDES])
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and str(wrapped) in notes[0] and "'module.'" in notes[0]
    assert "DistributedDataParallel" in notes[0]
    run(capsys, ["convert", tv["path"], "--from", "torchvision", "--to", "suite", "--output", plain, "--aux",
                 *OVERRIDES])
    got, want = shared_spec.weights.load_weights(out)[0], shared_spec.weights.load_weights(plain)[0]
    assert sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in got)


@pytest.mark.torch
def test_an_extra_key_beside_the_aux_heads_is_named_itself(tv, tmp_path, capsys):
    """Converting to aux off: the file is read as the variant with aux on (which it fits), so the message names
    the one stray key, not the aux keys an aux-off reading would leave over."""
    path = _torch_file(tmp_path, "extra.pth", _state(tv, inception4b__branch5__conv__weight=(8, 8, 1, 1)))
    message = bad(capsys, tmp_path, ["convert", path, "--from", "torchvision", "--to", "suite",
                                     "--output", tmp_path / "out" / "w.safetensors", *OVERRIDES],
                  str(path), "unexpected key 'inception4b.branch5.conv.weight'")
    assert "aux" not in message.split("unexpected key")[1].split(":")[0]


def test_no_gluoncv_file_for_a_variant_gluoncv_has_no_model_for(tmp_path, capsys):
    spec = shared_spec.load("d2l")
    src = tmp_path / "d2l.safetensors"
    shared_spec.weights.save_weights(src, {k: np.zeros(s, np.float32) for k, s in spec.weight_shapes().items()}, spec)
    before = _unchanged(src)
    bad(capsys, tmp_path, ["convert", src, "d2l", "--from", "suite", "--to", "gluoncv",
                           "--output", tmp_path / "out" / "d2l.params"],
        "--to gluoncv", "GluonCV has no model for variant 'd2l'", "googlenet, googlenet-gluoncv")
    assert src.read_bytes() == before


def _mx_row_sparse(mx, path, index):
    """A row_sparse array (2 stored rows of a 3-row shape) whose second row index is patched to ``index``."""
    import struct

    array = mx.nd.sparse.row_sparse_array((np.ones((2, 4), np.float32), np.array([0, 1])), shape=(3, 4))
    mx.nd.save(str(path), {"conv0_weight": array})
    data = bytearray(path.read_bytes())
    at = data.rfind(struct.pack("<qq", 0, 1))
    data[at:at + 16] = struct.pack("<qq", 0, index)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.mxnet
@pytest.mark.parametrize("index", [1, 2**40, -1], ids=["in-range", "past-the-end", "negative"])
def test_mxnet_sparse_storage_is_refused_before_it_is_made_dense(tmp_path, capsys, index):
    """Out-of-range row indices aborted the process in asnumpy(); this runs in the test's own process."""
    mx = pytest.importorskip("mxnet")
    path = _mx_row_sparse(mx, tmp_path / "sparse.params", index)
    bad(capsys, tmp_path, ["convert", path, "--from", "gluoncv", "--to", "suite",
                           "--output", tmp_path / "out" / "w.safetensors"], str(path), "'conv0_weight'", "row_sparse")


@pytest.mark.mxnet
def test_mxnet_shape_larger_than_the_file_is_one_line(tmp_path, capsys):
    import struct

    mx = pytest.importorskip("mxnet")
    path = tmp_path / "huge.params"
    mx.nd.save(str(path), {"conv0_weight": mx.nd.ones((2, 3))})
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<iqq", 2, 2, 3))
    data[at:at + 20] = struct.pack("<iqq", 2, 2**31, 2**31)  # 2^62 elements
    path.write_bytes(bytes(data))
    bad(capsys, tmp_path, ["convert", path, "--from", "gluoncv", "--to", "suite",
                           "--output", tmp_path / "out" / "w.safetensors"], str(path), "array #0", "truncated")
