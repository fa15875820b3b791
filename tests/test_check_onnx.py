"""``googlenet-suite check --onnx FILE``: d2l's PyTorch code and a trap model exported to ONNX (by torch's
TorchScript exporter), checked through onnxruntime with every node's output."""

from __future__ import annotations

from pathlib import Path

import importlib.util
import json

import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")  # writes the files and makes the suite's weights

from googlenet_suite.cli import main  # noqa: E402

pytestmark = [pytest.mark.onnx, pytest.mark.cross, pytest.mark.torch]  # torch writes the files

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _module(path):
    spec = importlib.util.spec_from_file_location(path.replace("/", "_").removesuffix(".py"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    d2l = _module(f"{FIXTURES}/d2l_torch.py").net.eval()
    traps = _module(f"{FIXTURES}/trap_models_torch.py")
    paths = {}
    for name, model, shape in [("d2l", d2l, (1, 1, 32, 32)), ("same", traps.same_padding().eval(), (1, 2, 16, 16))]:
        paths[name] = out / f"{name}.onnx"
        torch.onnx.export(model, torch.zeros(shape), paths[name], dynamo=False, input_names=["x"],
                          output_names=["logits"])
    return paths


def check(capsys, *argv):
    code = main(["check", *map(str, argv), "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else None), err


def test_d2l_exported_to_onnx_agrees(capsys, files):
    code, result, err = check(capsys, "d2l", "--input-size", 32, 32, "--onnx", files["d2l"])
    assert code == 0, err
    assert result["logits"]["max_abs_diff"] <= 1e-4
    assert sum(row["status"] == "agree" for row in result["layers"]) >= 80


def test_same_padding_in_an_onnx_file_is_diagnosed(capsys, files):
    code, result, err = check(capsys, "conv_s2", "--spec", f"{FIXTURES}/traps.json", "--onnx", files["same"])
    assert code == 1, err
    assert result["first_divergence"]["diagnosis"]["trap"] == "same-padding-stride-2"


class _Plain(torch.nn.Module):
    """torchvision's forward with its keyword-only argument, for the TorchScript exporter."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def test_torch_export_with_fresh_batchnorm_tensors_stored_once_agrees(capsys, tmp_path):
    """TrainingMode.PRESERVE keeps BatchNorm (an eval export folds it away); a fresh model's BN tensors are all
    ones or zeros, which the exporter stores once and hands to every BN through Identity nodes."""
    import onnx
    from impl_torch.handwritten import GoogLeNet

    path = tmp_path / "googlenet.onnx"
    torch.onnx.export(_Plain(GoogLeNet()).eval(), (torch.zeros(1, 3, 32, 32),), path, dynamo=False,
                      training=torch.onnx.TrainingMode.PRESERVE, input_names=["x"], output_names=["logits"])
    graph = onnx.load(path).graph
    bn_inputs = [name for node in graph.node if node.op_type == "BatchNormalization" for name in node.input[1:]]
    assert len(graph.initializer) < len(bn_inputs)  # shared: fewer tensors than BatchNorm inputs
    code, result, err = check(capsys, "googlenet", "--input-size", 32, 32, "--onnx", path)
    assert code == 0, (err, result and result["verdict"])
    assert result["logits"]["max_abs_diff"] <= 1e-4
    assert sum(row["status"] == "agree" for row in result["layers"]) >= 80


@pytest.mark.slow
@pytest.mark.parametrize("framework,needs", [("torch", ["torch"]), ("tf", ["tensorflow", "tf2onnx"]),
                                             ("mxnet", ["mxnet"]), ("onnx", [])])
def test_the_suites_own_exports_agree(capsys, tmp_path, framework, needs):
    """googlenet-suite export from every exporter (tf2onnx writes its nodes in an order of its own), checked."""
    for module in needs:
        pytest.importorskip(module)
    path = tmp_path / f"d2l_{framework}.onnx"
    code = main(["export", "d2l", "--input-size", "32", "32", "--framework", framework, "--output", str(path)])
    capsys.readouterr()
    assert code == 0
    code, result, err = check(capsys, "d2l", "--input-size", 32, 32, "--onnx", path)
    assert code == 0, (err, result and result["verdict"])
    assert sum(row["status"] == "agree" for row in result["layers"]) >= 80


def test_not_an_onnx_file(capsys):
    code, _, err = check(capsys, "d2l", "--onnx", "README.md")
    assert code == 2 and "not an ONNX model" in err.strip().splitlines()[-1]
