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
