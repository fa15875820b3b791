"""Against GluonCV's own GoogLeNet (``gluoncv.model_zoo.get_model('googlenet')``, gluoncv==0.10.5.post0):
run by ``tox -e gluoncv``; skipped wherever GluonCV is not installed (it is not in the suite's extras: it
pulls opencv, pandas and scipy). Nothing is downloaded: the models are initialised here."""

from __future__ import annotations

import numpy as np
import pytest

import shared_spec
from googlenet_suite.cli import main

pytestmark = pytest.mark.mxnet
mx = pytest.importorskip("mxnet")
gluoncv = pytest.importorskip("gluoncv", reason="GluonCV is not installed (tox -e gluoncv)")

CLASSES, TOL = 10, 1e-4


def _gluoncv(seed: int):
    net = gluoncv.model_zoo.get_model("googlenet", pretrained=False, aux_logits=True, classes=CLASSES)
    net.initialize(mx.init.Xavier(magnitude=2.0))
    rng = np.random.default_rng(seed)
    for name, param in net.collect_params().items():
        if name.endswith("running_var"):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
        elif name.endswith("weight"):  # He-like scale: O(1) logits
            param.set_data(mx.nd.array(rng.normal(0, (2.0 / np.prod(param.shape[1:])) ** 0.5, param.shape)))
    return net


@pytest.fixture(scope="module")
def net():
    return _gluoncv(0)


@pytest.fixture(scope="module")
def x(input_batch):
    return input_batch(shared_spec.load("googlenet-gluoncv"), 1, seed=1)


@pytest.mark.parametrize("form", ["save_parameters", "collect_params"])
def test_gluoncvs_file_runs_as_googlenet_gluoncv(net, x, tmp_path, capsys, form):
    import impl_mxnet

    params = tmp_path / "googlenet.params"
    if form == "save_parameters":
        net.save_parameters(str(params))
    else:
        net.collect_params().save(str(params))
    out = tmp_path / "suite.safetensors"
    assert main(["convert", str(params), "--from", "gluoncv", "--to", "suite", "--output", str(out),
                 "googlenet-gluoncv", "--aux", "--num-classes", str(CLASSES)]) == 0, capsys.readouterr().err
    model = impl_mxnet.build(shared_spec.load("googlenet-gluoncv", aux_logits=True, num_classes=CLASSES), seed=0)
    impl_mxnet.load_weights(model, out)
    got = impl_mxnet.layer_outputs(model, x)
    main_out, aux2, aux1 = (o.asnumpy() for o in net(mx.nd.array(x)))
    for name, want in (("fc", main_out), ("aux1", aux1), ("aux2", aux2)):
        assert float(np.abs(want).max()) > 1e-1
        assert float(np.abs(got[name] - want).max()) <= TOL, name


def test_suite_weights_load_into_gluoncv(x, tmp_path, capsys):
    import impl_mxnet

    spec = shared_spec.load("googlenet-gluoncv", aux_logits=True, num_classes=CLASSES)
    model = impl_mxnet.build(spec, seed=0)
    source = _gluoncv(2)
    source.save_parameters(str(tmp_path / "a.params"))
    assert main(["convert", str(tmp_path / "a.params"), "--from", "gluoncv", "--to", "suite", "--output",
                 str(tmp_path / "s.safetensors"), "googlenet-gluoncv", "--aux", "--num-classes", str(CLASSES)]) == 0
    impl_mxnet.load_weights(model, tmp_path / "s.safetensors")
    assert main(["convert", str(tmp_path / "s.safetensors"), "--from", "suite", "--to", "gluoncv", "--output",
                 str(tmp_path / "b.params"), "googlenet-gluoncv", "--aux", "--num-classes", str(CLASSES)]) == 0
    target = gluoncv.model_zoo.get_model("googlenet", pretrained=False, aux_logits=True, classes=CLASSES)
    target.load_parameters(str(tmp_path / "b.params"))  # strict: no missing, no extra name
    want = target(mx.nd.array(x))[0].asnumpy()
    assert float(np.abs(impl_mxnet.forward(model, x) - want).max()) <= TOL
