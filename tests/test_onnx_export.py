"""Each framework's ONNX export, run in onnxruntime, gives the framework's own eval outputs (1e-4).

Exports: impl_torch (TorchScript exporter), impl_tf (tf2onnx, NCHW in front of the NHWC model),
impl_mxnet (mx2onnx), for every variant, aux heads off and on where it has them. Weights: torch-initialised with
data BN statistics (``harness.calibrated_weights``) so logits are O(1), imported into each framework;
the framework's own init where torch is missing. Damaged and foreign files are tested without any
framework (``impl_onnx.verify`` only).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("mxnet") is not None:  # mxnet must come before tensorflow (tf2onnx) in a process
    try:
        import mxnet  # noqa: F401
    except Exception:  # pragma: no cover - a broken mxnet is skipped below
        pass

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

import shared_spec  # noqa: E402
from googlenet_suite import cli, harness  # noqa: E402
from impl_onnx import verify as V  # noqa: E402

pytestmark = pytest.mark.onnx

TOL = 1e-4
#: the registered frameworks with an ``impl_X.onnx_export``: the opset each writes, and what the exporter needs
#: beyond the framework itself (Keras exports through tf2onnx)
EXPORTS = {"torch": (17, None), "tf": (17, "tf2onnx"), "mxnet": (13, None)}
# every variant, at its own input size; aux heads off, and on where the variant has them
CASES = [(variant, aux) for variant in shared_spec.list_variants(shared_spec.BUILTIN_SPEC)  # GoogLeNet
         for aux in ((False, True) if shared_spec.load(variant).has_aux else (False,))]


def _spec(variant, aux):
    return shared_spec.load(variant, **({"aux_logits": True} if aux else {}))


_WEIGHTS: dict = {}


def weights_for(spec, input_batch):
    """torch-initialised weights with calibrated BN statistics, or None without torch."""
    key = (spec.variant, spec.aux_logits)
    if key not in _WEIGHTS:
        if importlib.util.find_spec("torch") is None:
            _WEIGHTS[key] = None
        else:
            import torch

            import impl_torch
            from googlenet_suite.harness import calibrated_weights

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                calibration = input_batch(spec, 8, seed=11)  # a batch of its own, not the one compared
                _WEIGHTS[key] = calibrated_weights(impl_torch, spec, calibration, seed=3, device="cpu")
            finally:
                torch.set_num_threads(threads)
    return _WEIGHTS[key]


def _params():
    for fw in EXPORTS:
        for variant, aux in CASES:
            # googlenet without its aux heads is the aux file's main path: left to the full matrix (tox -e matrix);
            # so is tf2onnx's googlenet with aux heads (12 s of the default run): its d2l export stays, and the
            # aux heads' slices and means stay through the torch and MXNet exporters
            deep = variant == "googlenet" and (not aux or fw == "tf")
            extra = [pytest.mark.matrix] if deep else []
            yield pytest.param(fw, variant, aux, id=f"{fw}-{variant}{'-aux' if aux else ''}",
                               marks=[pytest.mark.cross, getattr(pytest.mark, fw), *extra])


@pytest.mark.slow
@pytest.mark.parametrize("framework,variant,aux", list(_params()))
def test_export_runs_in_onnxruntime_like_the_framework(framework, variant, aux, tmp_path, monkeypatch, builder,
                                                       input_batch):
    opset, needs = EXPORTS[framework]
    # tf2onnx deep-copies the whole graph before each of its optimizer passes so that it can skip a pass that
    # fails; with the variable set (to anything: tf2onnx 1.17 tests the name, not the value) a failing pass is
    # an error instead, which a test wants anyway, and the export takes about 40% less time
    monkeypatch.setenv("TF2ONNX_CATCH_ERRORS", "false")
    mod = builder(framework)
    if needs:
        pytest.importorskip(needs, reason=f"{needs} is not installed")
    spec = _spec(variant, aux)
    model = mod.build(spec, device="cpu", seed=0)
    weights = weights_for(spec, input_batch)
    if weights is not None:
        mod.import_weights(model, weights)
    x = input_batch(spec, seed=1)
    path = tmp_path / f"{framework}-{variant}.onnx"
    harness.export_onnx(framework, model, path, opset=opset, aux=aux)  # the exporter, then the suite's names
    expected = {"logits": mod.forward(model, x)}
    if aux:
        outs = mod.layer_outputs(model, x)
        expected.update({head.name: outs[head.name] for head in spec.aux_heads})
    got = V.run_file(path, x, threads=1)
    assert list(got) == list(expected), "outputs: logits, then the aux heads"
    diff = V.verify(path, x, expected, threads=1)
    scale = float(np.abs(expected["logits"]).max())
    print(f"{framework} {variant} aux={aux}: max abs diff {diff:.2e} (logit scale {scale:.2f})")
    assert diff <= TOL
    assert onnx.load(str(path)).opset_import[0].version == opset


# --------------------------------------------------------------------------- damaged and foreign files


def _tiny_model(path, *, shape=("N", 3, 4, 4), opset=17):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["logits"])], "t",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save_model(model, str(path), )
    return path


def test_damaged_file_one_line_error(tmp_path):
    good = _tiny_model(tmp_path / "good.onnx")
    x = np.ones((2, 3, 4, 4), np.float32)
    assert V.verify(good, x, {"logits": x}) == 0.0
    damaged = tmp_path / "damaged.onnx"
    data = good.read_bytes()
    damaged.write_bytes(data[: len(data) // 2] + b"\xff\xfe garbage")
    with pytest.raises(V.OnnxFileError, match="not an ONNX model") as info:
        V.run_file(damaged, x)
    assert "\n" not in str(info.value)
    text = tmp_path / "weights.onnx"
    text.write_text("definitely not a protobuf\n")
    with pytest.raises(V.OnnxFileError, match="not an ONNX model"):
        V.run_file(text, x)
    with pytest.raises(V.OnnxFileError, match="no such"):
        V.run_file(tmp_path / "missing.onnx", x)


def test_foreign_model_and_unknown_opset(tmp_path):
    flat = _tiny_model(tmp_path / "flat.onnx", shape=("N", 10))
    with pytest.raises(V.OnnxFileError, match="not a float32 NCHW tensor"):
        V.run_file(flat, np.ones((2, 10), np.float32))
    future = _tiny_model(tmp_path / "future.onnx", opset=99)
    with pytest.raises(V.OnnxFileError, match="unknown opset 99"):
        V.run_file(future, np.ones((2, 3, 4, 4), np.float32))
    good = _tiny_model(tmp_path / "good.onnx")
    with pytest.raises(V.OnnxFileError, match="no output named 'aux1'"):
        V.verify(good, np.ones((2, 3, 4, 4), np.float32), {"aux1": np.ones((2, 3, 4, 4), np.float32)})
    with pytest.raises(ValueError, match=r"Received: x\.shape=\(2, 3, 5, 5\)"):
        V.run_file(good, np.ones((2, 3, 5, 5), np.float32))


def test_nan_never_verifies(tmp_path):
    """A NaN in the file's output or in the expected one is a NaN difference, which fails ``<= tolerance``."""
    good = _tiny_model(tmp_path / "good.onnx")
    x = np.ones((2, 3, 4, 4), np.float32)
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    assert np.isnan(V.verify(good, x, {"logits": nan}))
    assert np.isnan(V.verify(good, nan, {"logits": x}))
    assert not V.verify(good, nan, {"logits": nan}) <= TOL


@pytest.mark.parametrize("framework", ["torch", "tf", "mxnet", "onnx"])
@pytest.mark.parametrize("opset", ["0", "-1", "999"])
def test_export_refuses_an_opset_its_exporter_cannot_write(framework, opset, tmp_path, capsys):
    needs = {"torch": "torch", "tf": "tf2onnx", "mxnet": "mxnet", "onnx": "onnx"}[framework]
    pytest.importorskip(needs, reason=f"{needs} is not installed")
    out = tmp_path / "m.onnx"
    code = cli.main(["export", "d2l", "--framework", framework, "--opset", opset, "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and f"Received: opset={opset}" in err[0], err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_export_with_nan_weights_is_not_written(tmp_path, capsys):
    pytest.importorskip("torch")
    import impl_torch

    spec = shared_spec.load("d2l")
    model = impl_torch.build(spec, seed=0)
    weights = impl_torch.export_weights(model)
    first = next(iter(weights))
    weights[first] = np.full_like(weights[first], np.nan)
    impl_torch.import_weights(model, weights)
    impl_torch.save_weights(model, tmp_path / "nan.safetensors")
    out = tmp_path / "nan.onnx"
    code = cli.main(["export", "d2l", "--framework", "torch", "--weights", str(tmp_path / "nan.safetensors"),
                     "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "nan > 0.0001" in err and "not written" in err, err
    assert not out.exists()


def test_impl_onnx_file_verifies(tmp_path, input_batch):
    """The ONNX builder's own file has the same interface as the framework exports."""
    import impl_onnx

    spec = _spec("d2l", False)
    model = impl_onnx.build(spec, seed=0)
    x = input_batch(spec, seed=1)
    impl_onnx.save_onnx(model, tmp_path / "d2l.onnx")
    assert V.verify(tmp_path / "d2l.onnx", x, {"logits": impl_onnx.forward(model, x)}) == 0.0
