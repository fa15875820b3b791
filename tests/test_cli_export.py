"""``googlenet-suite export``: a file that onnxruntime runs like the framework that wrote it, or no file.

The exporters themselves, for every framework and aux on/off, are in test_onnx_export.py; this is the
command around them: the verification line, the exit codes and nothing written on bad input.
"""

from __future__ import annotations

import pytest

from googlenet_suite.cli import main

pytestmark = [pytest.mark.onnx, pytest.mark.cross]


def _needs(*modules):
    for module in modules:
        pytest.importorskip(module, reason=f"{module} is not installed")


@pytest.mark.torch
def test_export_writes_a_verified_file(tmp_path, capsys):
    _needs("torch", "onnxruntime")
    out = tmp_path / "d2l.onnx"
    assert main(["export", "d2l", "--framework", "torch", "--output", str(out)]) == 0
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert out.is_file() and out.stat().st_size > 1_000_000
    assert "onnxruntime vs PyTorch on a batch of 2: max abs diff" in line and "<= 0.0001" in line


def test_export_of_the_spec_built_graph_with_aux_outputs(tmp_path, capsys):
    _needs("onnxruntime")
    out = tmp_path / "g.onnx"
    assert main(["export", "googlenet", "--aux", "--framework", "onnx", "--input-size", "64", "64",
                 "--output", str(out)]) == 0
    assert "outputs logits, aux1, aux2" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--framework", "onnx", "--output", "{tmp}/model.txt"], "expected a .onnx file name"),
    (["--framework", "onnx", "--output", "{tmp}"], "is a directory"),
    (["--framework", "onnx", "--output", "{tmp}/missing/model.onnx"], "does not exist"),
    (["--framework", "onnx", "--opset", "99", "--output", "{tmp}/model.onnx"], "Received: opset=99"),
    (["--framework", "onnx", "--batch", "0", "--output", "{tmp}/model.onnx"], "--batch must be >= 1"),
])
def test_bad_export_input_is_one_line_exit_2_and_no_file(tmp_path, capsys, argv, message):
    _needs("onnxruntime")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["export", "d2l", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == []


def test_export_holds_each_output_to_the_rule_compare_holds_every_layer_to():
    """1e-4 relative to the output's scale above 1 (harness.layer_agrees), absolute below; NaN never agrees."""
    from pathlib import Path

    from googlenet_suite.harness import Export

    def export(diff, scale):
        return Export(Path("m.onnx"), "torch", "inception-v3", "seed 0", 17, ("logits",), 2, "logits", diff, scale,
                      1e-4)

    assert export(1.5e-4, 4.0).agree and not export(1.5e-4, 1.0).agree and not export(1.5e-4, 0.5).agree
    assert export(1e-4, 0.5).agree and not export(4.1e-4, 4.0).agree
    assert not export(float("nan"), 4.0).agree  # a NaN in the framework's output makes the diff NaN too


V3_EXPORTS = [pytest.param(fw, marks=[pytest.mark.matrix, getattr(pytest.mark, fw)]) for fw in ("torch", "tf", "mxnet")]


@pytest.mark.parametrize("framework", V3_EXPORTS)
@pytest.mark.usefixtures("memory_heavy")
def test_inception_v3_keras_exports_at_75(framework, tmp_path, capsys):
    """Inception v3 at its minimum input from each exporter: BatchNorm without gamma and the pools that do not
    count the padding, verified in onnxruntime on the reference weights (seeded, BatchNorm calibrated)."""
    _needs({"torch": "torch", "tf": "tf2onnx", "mxnet": "mxnet"}[framework], "onnxruntime")
    out = tmp_path / "m.onnx"
    code = main(["export", "inception-v3-keras", "--framework", framework, "--input-size", "75", "75",
                 "--output", str(out)])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 0 and out.is_file(), line
    assert "BatchNorm calibrated" in line and "outputs logits;" in line and "<= 0.0001 x max(1, scale)" in line


@pytest.mark.matrix
@pytest.mark.torch
def test_inception_v3_exports_its_aux_head_at_299(tmp_path, capsys):
    """torchvision's aux head needs 299x299 (test_inception_v3.test_aux_head_needs_299): both outputs verified."""
    _needs("torch", "onnxruntime")
    out = tmp_path / "m.onnx"
    assert main(["export", "inception-v3", "--aux", "--framework", "torch", "--output", str(out)]) == 0
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert out.is_file() and "outputs logits, aux;" in line and "<= 0.0001 x max(1, scale)" in line
