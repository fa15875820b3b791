"""``check`` on Inception v3 code the suite did not write, with no ``--map``: torchvision's network written by hand
(``impl_torch.handwritten_inception``), pytorch-fid's, ``keras.applications.InceptionV3`` (auto-named layers, a
functional graph, NHWC), MXNet's model-zoo ``inception_v3``, and each one's ONNX export. Each agrees with the variant
it is; each wrong pairing is a finding (exit 1) whose diagnosis names the trap: an average pool that counts the
padding or not, a max pool where the spec averages, a BatchNorm with or without gamma.

At 75x75 (the minimum) where the network allows: the model zoo's fixed ``AvgPool2D(8)`` needs 299x299, and the FID
network's max pool in ``mixed_7c`` equals an average that leaves the padding out on the 1x1 maps of 75x75, so that
pairing runs at 107x107 (2x2 maps). Each model is built once per module and handed to ``check`` as an object of a
module registered for the test (``v3_models:tv``). Everything but one torch check is marker ``matrix``.
"""

from __future__ import annotations

import json
import re
import sys
import types

import pytest

import shared_spec
from googlenet_suite.check import run_check
from googlenet_suite.cli import main

SIZE = ("--input-size", "75", "75")
POOLS = [f"mixed_{block}.branch_pool.pool" for block in ("5b", "5c", "5d", "6b", "6c", "6d", "6e", "7b", "7c")]
#: the pool-count trap (``avgpool-count-pad``) in each direction, as its diagnosis says it
COUNTS = "an average pool that counts the padding where the spec does not"
EXCLUDES = "an average pool that does not count the padding where the spec does"
MAX = "a max pool where the spec averages"


@pytest.fixture(scope="module")
def models():
    """A module ``v3_models`` whose attributes are the models under test, for ``MODULE:NAME`` targets; each built
    on first use."""
    module = types.ModuleType("v3_models")
    sys.modules["v3_models"] = module
    yield module
    del sys.modules["v3_models"]


def _target(models, name: str, build) -> str:
    if not hasattr(models, name):
        setattr(models, name, build())
    return f"v3_models:{name}"


@pytest.fixture(scope="module")
def torch_models(models):
    pytest.importorskip("torch")
    from impl_torch.handwritten_inception import Inception3

    return {"tv": _target(models, "tv", Inception3), "fid": _target(models, "fid", lambda: Inception3(fid=True))}


def check(capsys, *argv):
    code = main(["check", *map(str, argv), "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else None), err


def _spec(variant: str, size: int = 75) -> shared_spec.Spec:
    return shared_spec.load(variant, input_size=(size, size))


def _departures(departures) -> dict[str, str]:
    """layer -> the trap's words (each departure's detail is ``trap: words``)."""
    return {d["layer"]: d["detail"].split(": ", 1)[1].split(" (")[0] for d in departures}


# --------------------------------------------------------------------------- torch: the one check of the default run


@pytest.mark.torch
def test_torchvision_style_model_agrees_with_inception_v3(capsys, torch_models):
    code, result, err = check(capsys, "inception-v3", *SIZE, "--torch", torch_models["tv"])
    assert code == 0, (err, result and result["verdict"])
    assert "AGREE" in result["verdict"] and not result["in_weights"]
    assert result["logits"]["max_abs_diff"] == 0.0
    rows = {row["name"]: row["status"] for row in result["layers"]}
    assert all(rows[pool] == "not recorded" for pool in POOLS)  # F.avg_pool2d: a function, not a module
    assert sum(status == "agree" for status in rows.values()) >= 100


@pytest.mark.torch
@pytest.mark.matrix
def test_fid_model_agrees_with_inception_v3_fid(torch_models):
    result = run_check(_spec("inception-v3-fid"), "torch", torch_models["fid"])
    assert result.agree, result.verdict


@pytest.mark.torch
@pytest.mark.matrix
def test_torchvision_model_as_the_keras_variant_names_both_traps(torch_models):
    """BatchNorm2d has a gamma the Keras network has not; F.avg_pool2d counts the padding Keras's does not."""
    result = run_check(_spec("inception-v3-keras"), "torch", torch_models["tv"])
    assert not result.agree
    assert [found.trap for found in result.in_weights] == ["bn-extra-scale"]
    assert result.in_weights[0].layers == 94 and result.in_weights[0].module == "Conv2d_1a_3x3.bn"
    assert result.first_divergence.layer == "mixed_5b.branch_pool.conv1"  # the pool is a function: seen here
    assert result.first_divergence.diagnosis.trap == "avgpool-count-pad"
    assert COUNTS in result.first_divergence.diagnosis.detail
    assert _departures(result.to_dict()["departures"]) == {pool: COUNTS for pool in POOLS}
    assert result.walk.layers == result.walk.as_the_spec + len(POOLS)  # nothing else departs
    assert COUNTS in result.verdict and "in your parameters" in result.verdict and "bn-extra-scale" in result.verdict


@pytest.mark.torch
@pytest.mark.matrix
def test_fid_model_as_inception_v3_names_the_pools(capsys, tmp_path, torch_models):
    """Pools that leave the padding out, and at 107x107 (2x2 maps in mixed_7c) the max pool of mixed_7c."""
    junit = tmp_path / "check.xml"
    code, result, err = check(capsys, "inception-v3", "--input-size", 107, 107, "--num-classes", 1008,
                              "--torch", torch_models["fid"], "--junit", junit)
    assert code == 1, err
    assert "max-for-avg-pool" in junit.read_text()
    assert result["first_divergence"]["diagnosis"]["trap"] == "avgpool-count-pad"
    assert EXCLUDES in result["first_divergence"]["diagnosis"]["detail"]
    assert _departures(result["departures"]) == {**{pool: EXCLUDES for pool in POOLS[:-1]}, POOLS[-1]: MAX}


@pytest.mark.torch
@pytest.mark.matrix
def test_fid_model_with_its_1008_classes_as_inception_v3(capsys, torch_models):
    code, result, err = check(capsys, "inception-v3", *SIZE, "--torch", torch_models["fid"])
    assert code == 1, err
    arch = result["architecture"]  # the fc's weights do not fit, so the shapes of its own run: fc gives 1008
    assert (arch["where"], arch["layer"], arch["expected"], arch["yours"]) == ("output", "fc", [1000], [1008])
    assert arch["trap"] == "num-classes" and "--num-classes 1008 checks the rest" in result["verdict"]


# --------------------------------------------------------------------------- Keras: keras.applications.InceptionV3


@pytest.fixture(scope="module")
def keras_app(models):
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    return _target(models, "keras_app", lambda: keras.applications.InceptionV3(
        weights=None, classifier_activation=None, input_shape=(75, 75, 3)))


@pytest.mark.tf
@pytest.mark.matrix
def test_keras_applications_agrees_with_inception_v3_keras(capsys, keras_app):
    code, result, err = check(capsys, "inception-v3-keras", *SIZE, "--keras", keras_app)
    assert code == 0, (err, result and result["verdict"])
    assert all(row["status"] == "agree" for row in result["layers"])  # every layer, its auto-named tensor
    # conv2d_bn's BN, with the ReLU after it: Keras's auto name, whose counter depends on what the process built before
    assert re.fullmatch(r"batch_normalization(_\d+)?", result["layers"][0]["record"]), result["layers"][0]["record"]


@pytest.mark.tf
@pytest.mark.matrix
def test_keras_applications_as_inception_v3_names_both_traps(keras_app):
    """scale=False: no gamma where torchvision's BatchNorm has one; 'same' average pools that leave the padding
    out."""
    result = run_check(_spec("inception-v3"), "tf", keras_app)
    assert not result.agree
    assert [found.trap for found in result.in_weights] == ["bn-missing-scale"]
    assert result.first_divergence.layer == "mixed_5b.branch_pool.pool"
    assert result.first_divergence.diagnosis.trap == "avgpool-count-pad"
    assert _departures(result.to_dict()["departures"]) == {pool: EXCLUDES for pool in POOLS}


# --------------------------------------------------------------------------- MXNet: the model zoo, at 299


@pytest.fixture(scope="module")
def gluon_zoo(models):
    pytest.importorskip("mxnet")
    from mxnet.gluon.model_zoo import vision

    return _target(models, "gluon_zoo", vision.inception_v3)


@pytest.mark.mxnet
@pytest.mark.matrix
@pytest.mark.slow
def test_model_zoo_agrees_with_inception_v3_gluon(gluon_zoo):
    result = run_check(_spec("inception-v3-gluon", 299), "mxnet", gluon_zoo)
    assert result.agree, result.verdict
    assert sum(row.status == "agree" for row in result.layers) >= 120


# --------------------------------------------------------------------------- each one's ONNX export


def _plain(net):
    """torchvision's forward has a keyword-only argument; the TorchScript exporter wants a plain one."""
    import torch

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    return Plain()


@pytest.fixture(scope="module")
def torch_onnx(tmp_path_factory, models, torch_models):
    """torchvision's and pytorch-fid's networks exported with TrainingMode.PRESERVE (BatchNorm kept)."""
    pytest.importorskip("onnxruntime")
    import torch

    out = tmp_path_factory.mktemp("v3onnx")
    paths = {}
    for name in ("tv", "fid"):
        paths[name] = out / f"{name}.onnx"
        torch.onnx.export(_plain(getattr(models, name)).eval(), (torch.zeros(1, 3, 75, 75),), paths[name],
                          dynamo=False, training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                          input_names=["x"], output_names=["logits"])
    return paths


@pytest.mark.onnx
@pytest.mark.torch
@pytest.mark.matrix
@pytest.mark.parametrize("name,variant", [("tv", "inception-v3"), ("fid", "inception-v3-fid")])
def test_torch_onnx_export_agrees(capsys, torch_onnx, name, variant):
    code, result, err = check(capsys, variant, *SIZE, "--onnx", torch_onnx[name])
    assert code == 0, (err, result and result["verdict"])
    assert sum(row["status"] == "agree" for row in result["layers"]) >= 100


@pytest.mark.onnx
@pytest.mark.torch
@pytest.mark.matrix
def test_torch_onnx_export_as_the_keras_variant_names_the_pools(capsys, torch_onnx):
    """In ONNX the pools are nodes: the first divergence is the pool itself."""
    code, result, err = check(capsys, "inception-v3-keras", *SIZE, "--onnx", torch_onnx["tv"])
    assert code == 1, err
    first = result["first_divergence"]
    assert (first["layer"], first["diagnosis"]["trap"]) == ("mixed_5b.branch_pool.pool", "avgpool-count-pad")
    assert COUNTS in first["diagnosis"]["detail"]


@pytest.mark.onnx
@pytest.mark.tf
@pytest.mark.matrix
@pytest.mark.slow
@pytest.mark.usefixtures("memory_heavy")
def test_keras_applications_through_tf2onnx_agrees(capsys, tmp_path, models, keras_app):
    """tf2onnx folds each BatchNorm into its convolution: the suite's weights are loaded folded. The statistics are
    made realistic first (a fresh model's fold to a zero bias, which tf2onnx leaves out: nothing to load into)."""
    import numpy as np

    pytest.importorskip("onnxruntime")
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    keras = pytest.importorskip("keras")
    model = models.keras_app
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.beta.shape[0]
            layer.beta.assign(rng.normal(0, 0.1, n))
            layer.moving_mean.assign(rng.normal(0, 0.1, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
    signature = [tf.TensorSpec((None, 3, 75, 75), tf.float32, name="x")]

    @tf.function(input_signature=signature)
    def nchw(x):
        return tf.identity(model(tf.transpose(x, (0, 2, 3, 1)), training=False))

    path = tmp_path / "keras.onnx"
    tf2onnx.convert.from_function(nchw, input_signature=signature, opset=17, output_path=str(path))
    code, result, err = check(capsys, "inception-v3-keras", *SIZE, "--onnx", path)
    assert code == 0, (err, result and result["verdict"])
    assert any("folded" in note for note in result["mapping"]["notes"])


@pytest.mark.onnx
@pytest.mark.mxnet
@pytest.mark.matrix
@pytest.mark.slow
def test_model_zoo_through_mx2onnx_agrees(capsys, tmp_path, models, gluon_zoo):
    pytest.importorskip("onnxruntime")
    import mxnet as mx
    import onnx
    from impl_mxnet.onnx_export import _graph_proto

    net = models.gluon_zoo
    net(mx.nd.zeros((1, 3, 299, 299)))  # deferred initialisation done
    params = {p.name: p.data() for p in net.collect_params().values()}
    graph = _graph_proto(net(mx.sym.var("x")), params, (3, 299, 299), 13)
    weights = {init.name for init in graph.initializer}  # mx2onnx also lists every weight as a graph input
    inputs = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    path = tmp_path / "zoo.onnx"
    onnx.save_model(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)]), str(path))
    code, result, err = check(capsys, "inception-v3-gluon", "--onnx", path)
    assert code == 0, (err, result and result["verdict"])
