"""``googlenet-suite convert`` for Inception v3: torchvision's and pytorch-fid's state_dicts, Keras's InceptionV3
weight files (Keras 3 ``.weights.h5`` and the Keras 2 ``.h5`` keras.applications downloads) and MXNet's model-zoo
``.params``, both ways, into the variant each one's network is, and refused into one that computes something else.

The source networks are the libraries' own code or an independent hand-written copy, built here with random
weights and realistic BatchNorm statistics (random running means and variances, gammas around 1), saved in each
format, converted and run in every framework against the source network's own logits (1e-4 relative to the
logit scale). Lean: 75x75 (the minimum) and one model per source network per module; MXNet's model-zoo network
needs 299 (its fixed 8x8 pool) and runs there once, batch 1. The framework-heavy tests are marker ``matrix``; the
default run keeps the name maps, a torchvision round trip and the refusals.
"""

from __future__ import annotations

import numpy as np
import pytest

import shared_spec
from googlenet_suite import convert, frameworks
from googlenet_suite.cli import main

from conftest import cli_refused as bad, cli_run as run  # tests/conftest.py

SIZE, TOL = 75, 1e-4
SMALL = ["--input-size", str(SIZE), str(SIZE)]


def agree(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Within 1e-4 relative to the logit scale, and the scale of order 1 or more (a test that can fail)."""
    scale = float(np.abs(want).max())
    assert scale > 1.0, f"{what}: logits of scale {scale:.3g}: the comparison would prove little"
    diff = float(np.abs(np.asarray(got) - want).max())
    assert diff <= TOL * scale, f"{what}: differs by {diff:.2e} at logit scale {scale:.2f}"


def same_arrays(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    unequal = [k for k in a if not np.array_equal(a[k], b[k]) or a[k].dtype != b[k].dtype]
    assert not unequal, f"not bit-identical: {unequal[:3]}"


def random_weights(spec: shared_spec.Spec, seed: int = 0) -> dict[str, np.ndarray]:
    """He-scaled kernels, gammas around 1, random betas, running means and variances (not 0/1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in spec.weight_shapes().items():
        if key.endswith("weight"):
            value = rng.normal(0, (2.0 / np.prod(shape[1:])) ** 0.5, shape)
        elif key.endswith(("running_var", "gamma")):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        out[key] = value.astype(np.float32)
    return out


# --------------------------------------------------------------------------- torchvision and pytorch-fid


def _torch_network(*, fid: bool, seed: int):
    """The hand-written torchvision (aux head on) or pytorch-fid network, with random weights and statistics."""
    torch = pytest.importorskip("torch")
    from impl_torch.handwritten_inception import Inception3

    model = Inception3(aux_logits=not fid, fid=fid).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("weight") and tensor.ndim > 1:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / tensor[0].numel()) ** 0.5)
            elif name.endswith(("running_var", "bn.weight")):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return model


@pytest.fixture(scope="module")
def tv(tmp_path_factory, input_batch):
    """torchvision's network (aux on), its torch.save'd state_dict, the input, its logits with transform_input."""
    torch = pytest.importorskip("torch")
    model = _torch_network(fid=False, seed=0)
    path = tmp_path_factory.mktemp("tv") / "inception_v3_google.pth"
    torch.save(model.state_dict(), path)
    x = input_batch(shared_spec.load("inception-v3", input_size=(SIZE, SIZE)), 2)
    model.transform_input = True
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    return {"model": model, "path": path, "x": x, "logits": logits}


@pytest.mark.torch
def test_torchvision_names_are_the_modules_state_dict(tv):
    """torchvision's keys with the aux head and without it; pytorch-fid's network has the latter's names."""
    keys = set(tv["model"].state_dict())
    main_keys = {key for key in keys if not key.startswith("AuxLogits.")}
    for spec, want in ((shared_spec.load("inception-v3", aux_logits=True), keys),
                       (shared_spec.load("inception-v3"), main_keys), (shared_spec.load("inception-v3-fid"), main_keys)):
        assert set(convert.torchvision_names(spec).values()) | set(convert.torchvision_counters(spec)) == want
    names = convert.torchvision_names(shared_spec.load("inception-v3"))
    assert names["mixed_6e.branch7x7dbl.conv5.conv.weight"] == "Mixed_6e.branch7x7dbl_5.conv.weight"
    assert names["mixed_7b.branch3x3.conv2.b.conv.bn.gamma"] == "Mixed_7b.branch3x3_2b.bn.weight"


@pytest.mark.torch
def test_torchvision_round_trip_is_bit_identical_and_drops_the_aux_head_with_a_note(tv, tmp_path, capsys):
    """torchvision -> suite (aux off: a note) and suite (aux on) -> .pth / .safetensors -> suite, bit for bit;
    the written .pth loads into torchvision's module with strict=True."""
    torch = pytest.importorskip("torch")
    from impl_torch.handwritten_inception import Inception3

    main_only = tmp_path / "main.safetensors"
    err = run(capsys, ["convert", tv["path"], "inception-v3", "--from", "torchvision", "--to", "suite",
                       "--output", main_only])
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "holds aux weights" in notes[0] and "--aux keeps them" in notes[0], err
    first = tmp_path / "first.safetensors"
    run(capsys, ["convert", tv["path"], "inception-v3", "--aux", "--from", "torchvision", "--to", "suite",
                 "--output", first])
    before, _ = shared_spec.weights.load_weights(first)
    state = {k: v.numpy() for k, v in tv["model"].state_dict().items()}
    assert np.array_equal(before["mixed_6e.branch7x7dbl.conv5.bn.running_var"],
                          state["Mixed_6e.branch7x7dbl_5.bn.running_var"])
    for suffix in (".pth", ".safetensors"):
        middle, back = tmp_path / f"tv{suffix}", tmp_path / f"back{suffix}.safetensors"
        run(capsys, ["convert", first, "inception-v3", "--aux", "--from", "suite", "--to", "torchvision",
                     "--output", middle])
        run(capsys, ["convert", middle, "inception-v3", "--aux", "--from", "torchvision", "--to", "suite",
                     "--output", back])
        same_arrays(before, shared_spec.weights.load_weights(back)[0])
    Inception3(aux_logits=True).load_state_dict(torch.load(tmp_path / "tv.pth", weights_only=True), strict=True)


@pytest.fixture(scope="module")
def fid(tmp_path_factory, input_batch):
    """pytorch-fid's network (1008 classes, its own pools), saved with torchvision's key names."""
    torch = pytest.importorskip("torch")
    model = _torch_network(fid=True, seed=1)
    path = tmp_path_factory.mktemp("fid") / "pt_inception-2015-12-05.pth"
    torch.save(model.state_dict(), path)
    x = input_batch(shared_spec.load("inception-v3-fid", input_size=(SIZE, SIZE)), 2, seed=1)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    return {"path": path, "x": x, "logits": logits}


#: a torchvision-format file's network -> (the fixture that makes it, the variant it converts into, convert's
#: options for it, the spec's)
TORCHVISION_FORMAT = {"torchvision": ("tv", "inception-v3", ["--transform-input"], {"transform_input": True}),
                      "pytorch-fid": ("fid", "inception-v3-fid", [], {})}


@pytest.mark.cross
@pytest.mark.matrix
@pytest.mark.parametrize("key", list(frameworks.FRAMEWORKS))
@pytest.mark.parametrize("source", list(TORCHVISION_FORMAT))
def test_torchvision_format_weights_run_in_every_framework(source, key, request, tmp_path_factory, capsys, builder):
    """torchvision's state_dict (converted with --transform-input) and pytorch-fid's give their network's logits in
    each builder."""
    made, variant, options, overrides = TORCHVISION_FORMAT[source]
    network = request.getfixturevalue(made)
    mod = builder(key)
    out = tmp_path_factory.mktemp(f"{source}-{key}") / f"{variant}.safetensors"
    run(capsys, ["convert", network["path"], variant, *options, "--from", "torchvision", "--to", "suite",
                 "--output", out, *SMALL])
    model = mod.build(shared_spec.load(variant, input_size=(SIZE, SIZE), **overrides), device="cpu", seed=0)
    mod.load_weights(model, out)
    agree(mod.forward(model, network["x"]), network["logits"], f"{key}: {source}'s weights")


@pytest.mark.torch
def test_fid_weights_into_torchvisions_network_are_refused(fid, tmp_path, capsys):
    line = bad(capsys, tmp_path, ["convert", fid["path"], "inception-v3", "--num-classes", 1008, "--from",
                                  "torchvision", "--to", "suite", "--output", tmp_path / "out" / "w.safetensors"],
               "pytorch-fid", "'inception-v3-fid'", "count the padding", "max pool", "--allow-mismatch")
    assert "convert with variant 'inception-v3-fid'" in line


# --------------------------------------------------------------------------- refusals without a framework


@pytest.fixture(scope="module")
def suite_v3(tmp_path_factory):
    spec = shared_spec.load("inception-v3")
    path = tmp_path_factory.mktemp("suite") / "inception-v3.safetensors"
    shared_spec.weights.save_weights(path, random_weights(spec), spec)
    return path


def test_torchvisions_network_into_keras_is_refused_naming_the_variant_that_fits(suite_v3, tmp_path, capsys):
    line = bad(capsys, tmp_path, ["convert", suite_v3, "inception-v3", "--from", "suite", "--to", "keras",
                                  "--output", tmp_path / "out" / "k.weights.h5"],
               "--to keras", "keras.applications.InceptionV3 is variant 'inception-v3-keras'",
               "without a scale (gamma)", "do not count the padding", "--allow-mismatch")
    assert "94 layers" in line and "9 layers" in line


def test_a_pytorch_fid_file_is_known_by_its_1008_classes(tmp_path, capsys):
    """A safetensors file with torchvision's names and 1008 classes: refused as torchvision's network."""
    from safetensors.numpy import save_file

    spec = shared_spec.load("inception-v3-fid")
    names = convert.torchvision_names(spec)
    path = tmp_path / "fid.safetensors"
    save_file({names[k]: v for k, v in random_weights(spec).items()}, str(path))
    bad(capsys, tmp_path, ["convert", path, "inception-v3", "--from", "torchvision", "--to", "suite",
                           "--output", tmp_path / "out" / "w.safetensors"], "'inception-v3-fid'", "'inception-v3'")


def test_no_aux_head_in_the_model_zoo_network(suite_v3, tmp_path, capsys):
    bad(capsys, tmp_path, ["convert", suite_v3, "inception-v3", "--aux", "--from", "suite", "--to", "gluoncv",
                           "--output", tmp_path / "out" / "w.params"], "--to gluoncv", "no aux head")


def test_keras_has_no_googlenet(tmp_path, capsys):
    spec = shared_spec.load("googlenet")
    src = tmp_path / "g.safetensors"
    shared_spec.weights.save_weights(src, random_weights(spec), spec)
    bad(capsys, tmp_path, ["convert", src, "googlenet", "--from", "suite", "--to", "keras",
                           "--output", tmp_path / "out" / "g.weights.h5"], "keras.applications has no GoogLeNet")


# --------------------------------------------------------------------------- Keras


def _keras_standin(model, path) -> None:
    """The Keras 2 layout of ``inception_v3_weights_tf_dim_ordering_tf_kernels.h5`` (what keras.applications
    downloads), written with h5py: root ``layer_names``, each layer's ``weight_names`` (``conv2d_1/kernel:0``),
    Keras 2's layer names (numbered from 1 in creation order), the weights of ``model`` in its layer order."""
    import h5py

    def split(name: str) -> tuple[str, int]:  # "conv2d_37" -> ("conv2d", 37); "conv2d" -> ("conv2d", 0)
        stem, _, number = name.rpartition("_")
        return (stem, int(number)) if stem and number.isdigit() else (name, 0)

    first: dict[str, int] = {}
    for layer in model.layers:
        stem, number = split(layer.name)
        first[stem] = min(first.get(stem, number), number)

    def keras2(layer) -> str:
        if layer.name.startswith("mixed") or layer.name in ("avg_pool", "predictions"):
            return layer.name  # named by keras.applications' code
        stem, number = split(layer.name)
        return f"{stem}_{number - first[stem] + 1}"

    with h5py.File(path, "w") as handle:
        names = [keras2(layer) for layer in model.layers]
        handle.attrs["layer_names"] = np.array([n.encode() for n in names])
        handle.attrs["backend"], handle.attrs["keras_version"] = b"tensorflow", b"2.1.2"
        for layer, name in zip(model.layers, names):
            group = handle.create_group(name)
            weights = layer.trainable_weights + layer.non_trainable_weights
            kinds = [w.path.rpartition("/")[2] for w in weights]
            group.attrs["weight_names"] = np.array([f"{name}/{kind}:0".encode() for kind in kinds])
            for kind, weight in zip(kinds, weights):
                group[f"{name}/{kind}:0"] = np.asarray(weight.numpy())


@pytest.fixture(scope="module")
def keras_app(tmp_path_factory, input_batch):
    """keras.applications.InceptionV3 with random weights and statistics, saved by save_weights and as the
    Keras 2 stand-in, and its logits."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("h5py")
    model = keras.applications.InceptionV3(weights=None, classifier_activation=None, input_shape=(SIZE, SIZE, 3))
    rng = np.random.default_rng(2)
    for layer in model.layers:
        for weight in layer.weights:
            kind, shape = weight.path.rpartition("/")[2], tuple(weight.shape)
            if kind == "kernel":
                value = rng.normal(0, (2.0 / np.prod(shape[:-1])) ** 0.5, shape)
            elif kind == "moving_variance":
                value = rng.uniform(0.5, 1.5, shape)
            else:
                value = rng.normal(0, 0.1, shape)
            weight.assign(value.astype(np.float32))
    root = tmp_path_factory.mktemp("keras")
    files = {"keras3": root / "inception_v3.weights.h5", "keras2": root / "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"}
    model.save_weights(files["keras3"])
    _keras_standin(model, files["keras2"])
    x = input_batch(shared_spec.load("inception-v3-keras", input_size=(SIZE, SIZE)), 2, seed=2)
    logits = keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1), training=False))
    return {"files": files, "x": x, "logits": logits, "model": model}


@pytest.fixture(scope="module")
def keras_suite(keras_app, tmp_path_factory):
    """Each Keras file converted to the suite's format (inception-v3-keras, the default for --from keras)."""
    out = {}
    for kind, path in keras_app["files"].items():
        out[kind] = tmp_path_factory.mktemp(f"ks-{kind}") / "inception-v3-keras.safetensors"
        assert main(["convert", str(path), "--from", "keras", "--to", "suite", "--output", str(out[kind])]) == 0
    return out


@pytest.mark.tf
@pytest.mark.matrix
def test_both_keras_files_read_the_same(keras_suite):
    a, meta = shared_spec.weights.load_weights(keras_suite["keras3"])
    same_arrays(a, shared_spec.weights.load_weights(keras_suite["keras2"])[0])
    assert meta["variant"] == "inception-v3-keras" and "mixed_7c.branch_pool.conv1.bn.gamma" not in a


@pytest.mark.cross
@pytest.mark.matrix
@pytest.mark.parametrize("key", list(frameworks.FRAMEWORKS))
def test_kerass_weights_run_in_every_framework(key, keras_app, keras_suite, builder):
    mod = builder(key)
    spec = shared_spec.load("inception-v3-keras", input_size=(SIZE, SIZE))
    model = mod.build(spec, device="cpu", seed=0)
    mod.load_weights(model, keras_suite["keras2"])
    agree(mod.forward(model, keras_app["x"]), keras_app["logits"], f"{key}: Keras's weights")


@pytest.mark.tf
@pytest.mark.matrix
@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])
def test_suite_keras_suite_is_bit_identical_and_keras_reads_it(suffix, keras_app, keras_suite, tmp_path, capsys):
    middle, back = tmp_path / f"k{suffix}", tmp_path / "back.safetensors"
    run(capsys, ["convert", keras_suite["keras3"], "--from", "suite", "--to", "keras", "--output", middle])
    run(capsys, ["convert", middle, "--from", "keras", "--to", "suite", "--output", back])
    same_arrays(shared_spec.weights.load_weights(keras_suite["keras3"])[0],
                shared_spec.weights.load_weights(back)[0])
    import keras

    fresh = keras.applications.InceptionV3(weights=None, classifier_activation=None, input_shape=(SIZE, SIZE, 3))
    fresh.load_weights(middle)
    for mine, theirs in zip(fresh.weights, keras_app["model"].weights):
        assert np.array_equal(mine.numpy(), theirs.numpy()), mine.path


@pytest.mark.tf
@pytest.mark.matrix
def test_bad_keras_files_are_one_line(keras_app, tmp_path, capsys):
    text = tmp_path / "notes.weights.h5"
    text.write_text("not HDF5\n")
    bad(capsys, tmp_path, ["convert", text, "--from", "keras", "--to", "suite",
                           "--output", tmp_path / "out" / "w.safetensors"], str(text), "not an HDF5 file")
    bad(capsys, tmp_path, ["convert", keras_app["files"]["keras2"], "--num-classes", 10, "--from", "keras", "--to",
                           "suite", "--output", tmp_path / "out" / "w.safetensors"],
        "inception_v3_weights_tf_dim_ordering_tf_kernels.h5", "(10 classes")
    import h5py  # a Keras 3 file that lost one layer: Keras warns about the layer it skips, then raises

    short = tmp_path / "short.weights.h5"
    with h5py.File(keras_app["files"]["keras3"]) as source, h5py.File(short, "w") as handle:
        for key in source:
            source.copy(source[key], handle, key)
        del handle["layers"]["conv2d_5"]
    bad(capsys, tmp_path, ["convert", short, "--from", "keras", "--to", "suite",
                           "--output", tmp_path / "out" / "w.safetensors"], str(short), "could not be loaded")


@pytest.mark.cross
@pytest.mark.matrix
def test_torchvisions_weights_into_keras_only_when_asked_and_gamma_folds_exactly(tv, tmp_path, capsys):
    """Refused without --allow-mismatch; with it, gamma is folded into the kernels and running means: the stem
    (no average pool yet) computes exactly torchvision's, and the notes say what differs further on."""
    torch = pytest.importorskip("torch")
    import impl_torch

    out = tmp_path / "out" / "k.safetensors"
    argv = ["convert", tv["path"], "inception-v3-keras", "--from", "torchvision", "--to", "suite", "--output", out,
            *SMALL]
    bad(capsys, tmp_path, argv, "weights of torchvision's inception_v3", "convert with variant 'inception-v3'")
    err = run(capsys, [*argv, "--allow-mismatch"])
    assert "gamma folded" in err and "do not count the padding" in err, err
    spec = shared_spec.load("inception-v3-keras", input_size=(SIZE, SIZE))
    model = impl_torch.build(spec, device="cpu", seed=0)
    impl_torch.load_weights(model, out)
    stem = impl_torch.layer_outputs(model, tv["x"])["maxpool2"]
    tv["model"].transform_input = False
    with torch.no_grad():
        m = tv["model"]
        x = torch.from_numpy(tv["x"])
        want = m.maxpool2(m.Conv2d_4a_3x3(m.Conv2d_3b_1x1(m.maxpool1(m.Conv2d_2b_3x3(m.Conv2d_2a_3x3(
            m.Conv2d_1a_3x3(x))))))).numpy()
    tv["model"].transform_input = True
    agree(stem, want, "the stem with gamma folded")


# --------------------------------------------------------------------------- MXNet model zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """MXNet's model-zoo inception_v3 with random weights and statistics, saved in both .params forms."""
    mx = pytest.importorskip("mxnet")
    from mxnet.gluon.model_zoo import vision

    net = vision.inception_v3()
    net.initialize()
    net(mx.nd.zeros((1, 3, 299, 299)))  # the parameters' shapes (deferred until a first forward)
    rng = np.random.default_rng(3)
    for name, param in net.collect_params().items():
        shape = param.shape
        if name.endswith("_weight") and len(shape) > 1:
            value = rng.normal(0, (2.0 / np.prod(shape[1:])) ** 0.5, shape)
        elif name.endswith(("running_var", "gamma")):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        param.set_data(mx.nd.array(value.astype(np.float32)))
    root = tmp_path_factory.mktemp("zoo")
    files = {"names": root / "inceptionv3-names.params", "blocks": root / "inceptionv3-blocks.params"}
    net.collect_params().save(str(files["names"]))
    net.save_parameters(str(files["blocks"]))
    return {"net": net, "files": files}


@pytest.mark.mxnet
def test_model_zoo_names_are_mxnets_own():
    """Parameter names (instance prefix off) and the block paths save_parameters writes, as MXNet names them."""
    pytest.importorskip("mxnet")
    from mxnet.gluon.model_zoo import vision

    net = vision.inception_v3()
    spec = shared_spec.load("inception-v3-gluon")
    assert set(convert.gluoncv_names(spec).values()) == {k.split("_", 1)[1] for k in net.collect_params()}
    assert set(convert.gluoncv_block_names(spec).values()) == set(net._collect_params_with_prefix())
    assert convert.gluoncv_names(spec)["mixed_7b.branch3x3.conv2.b.conv.bn.gamma"] == "E1_batchnorm3_gamma"
    assert convert.gluoncv_block_names(spec)["mixed_7b.branch3x3dbl.conv3.a.conv.conv.weight"] \
        == "features.16.2.1.0.0.0.weight"


@pytest.mark.mxnet
@pytest.mark.matrix
def test_model_zoo_file_runs_in_the_gluon_builder_and_round_trips(zoo, tmp_path, capsys, input_batch):
    """Both .params forms read the same; the Gluon builder's inception-v3-gluon gives the model zoo's logits at
    299 (batch 1); suite -> .params -> suite is bit-identical and loads into the model zoo's net (strict)."""
    mx = pytest.importorskip("mxnet")
    import impl_mxnet
    from mxnet.gluon.model_zoo import vision

    outs = {kind: tmp_path / f"{kind}.safetensors" for kind in zoo["files"]}
    for kind, path in zoo["files"].items():
        run(capsys, ["convert", path, "inception-v3-gluon", "--from", "gluoncv", "--to", "suite", "--output",
                     outs[kind]])
    first = shared_spec.weights.load_weights(outs["names"])[0]
    same_arrays(first, shared_spec.weights.load_weights(outs["blocks"])[0])
    spec = shared_spec.load("inception-v3-gluon")
    x = input_batch(spec, 1, seed=3)
    model = impl_mxnet.build(spec, device="cpu", seed=0)
    impl_mxnet.load_weights(model, outs["names"])
    agree(impl_mxnet.forward(model, x), zoo["net"](mx.nd.array(x)).asnumpy(), "the model zoo's weights")
    middle, back = tmp_path / "zoo.params", tmp_path / "back.safetensors"
    run(capsys, ["convert", outs["names"], "inception-v3-gluon", "--from", "suite", "--to", "gluoncv",
                 "--output", middle])
    run(capsys, ["convert", middle, "inception-v3-gluon", "--from", "gluoncv", "--to", "suite", "--output", back])
    same_arrays(first, shared_spec.weights.load_weights(back)[0])
    fresh = vision.inception_v3()
    fresh.load_parameters(str(middle))
    for (name, mine), theirs in zip(fresh.collect_params().items(), zoo["net"].collect_params().values()):
        assert np.array_equal(mine.data().asnumpy(), theirs.data().asnumpy()), name


@pytest.mark.mxnet
def test_torchvisions_network_into_the_model_zoo_is_the_same_at_299_with_a_note(suite_v3, tmp_path, capsys):
    err = run(capsys, ["convert", suite_v3, "inception-v3", "--from", "suite", "--to", "gluoncv",
                       "--output", tmp_path / "zoo.params"])
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "the same at 299x299" in notes[0] and "8x8" in notes[0], err


@pytest.mark.torch
def test_an_inception_v3_file_read_as_googlenet_says_which_it_is(tv, tmp_path, capsys):
    bad(capsys, tmp_path, ["convert", tv["path"], "--from", "torchvision", "--to", "suite",
                           "--output", tmp_path / "out" / "w.safetensors"],
        "not a torchvision GoogLeNet checkpoint for variant 'googlenet'", "the file holds Inception v3 weights",
        "e.g. inception-v3")
