"""``googlenet-suite check --torch``: a user's own nn.Module held to a variant (d2l's PyTorch code as it is, the
suite's hand-written torchvision GoogLeNet, bad factories). The traps, one wrong model each: test_check_traps.py."""

from __future__ import annotations

from pathlib import Path

import json

import pytest

pytest.importorskip("torch")

from googlenet_suite.cli import main  # noqa: E402

pytestmark = pytest.mark.torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"

D2L = f"{FIXTURES}/d2l_torch.py:net"


def run(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_d2l_pytorch_code_agrees_with_the_d2l_variant(capsys, tmp_path):
    report = tmp_path / "check.json"
    code, _, err = run(capsys, ["check", "d2l", "--input-size", 32, 32, "--torch", D2L, "--format", "json",
                                "--output", report])
    assert code == 0, err
    result = json.loads(report.read_text())
    assert result["agree"] and result["first_divergence"] is None
    assert result["logits"]["max_abs_diff"] <= 1e-4
    names = {row["name"]: row for row in result["layers"]}
    assert names["inception3a.branch3.conv2"]["status"] == "agree"  # the 5x5, with its functional ReLU
    assert names["inception3a.branch3.conv2"]["record"] == "2.0.p3_2"
    assert sum(row["status"] == "agree" for row in result["layers"]) >= 80


def test_branches_run_out_of_order_are_mapped_by_the_concat_order(capsys):
    """Registered and run last branch first, concatenated in the spec's order: the data flow (torch.cat's input
    order) says which 1x1 conv is which, where the order they ran in would swap two of the same shape."""
    code, out, err = run(capsys, ["check", "d2l", "--input-size", 32, 32, "--torch",
                                  f"{FIXTURES}/forms_torch.py:shuffled", "--format", "json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["agree"] and result["mapping"]["notes"] == []
    rows = {row["name"]: row for row in result["layers"]}
    assert rows["inception3b.branch1.conv1"]["record"] == "blocks.3b.conv1"
    assert rows["inception3b.branch2.conv1"]["record"] == "blocks.3b.reduce3"


@pytest.mark.parametrize("factory,layer,expected,yours,tensor,cause", [
    ("conv1_padded_2", "conv1", [64, 16, 16], [64, 15, 15], "0.0",
     "padding (2, 2, 2, 2) where the spec pads (3, 3, 3, 3)"),
    ("pool_without_padding", "maxpool1", [64, 8, 8], [64, 7, 7], "0.2", "no padding where the spec pads (1, 1, 1, 1)"),
])
def test_an_architecture_mistake_in_d2l_is_a_finding_with_its_cause(capsys, tmp_path, factory, layer, expected,
                                                                    yours, tensor, cause):
    report, junit = tmp_path / "check.json", tmp_path / "check.xml"
    code, out, err = run(capsys, ["check", "d2l", "--input-size", 32, 32, "--torch",
                                  f"{FIXTURES}/d2l_mistakes_torch.py:{factory}", "--format", "json",
                                  "--output", report, "--junit", junit])
    assert code == 1 and "Traceback" not in err, err
    result = json.loads(report.read_text())
    arch = result["architecture"]
    assert (arch["layer"], arch["expected"], arch["yours"], arch["tensor"], arch["cause"]) == \
        (layer, expected, yours, tensor, cause)
    assert f"shape differs at layer {layer}" in result["verdict"] and f"reproduced by: {cause}" in result["verdict"]
    assert result["layers"][-1] == {**result["layers"][-1], "name": layer, "status": "shape differs", "record": tensor}
    assert cause in junit.read_text()


def test_torchvision_style_model_for_the_d2l_variant_is_a_clear_mismatch(capsys, tmp_path):
    """Another architecture is a finding (exit 1, the report), not bad input."""
    report, junit = tmp_path / "check.json", tmp_path / "check.xml"
    code, out, err = run(capsys, ["check", "d2l", "--input-size", 32, 32, "--torch",
                                  "impl_torch.handwritten:GoogLeNet", "--format", "json", "--output", report,
                                  "--junit", junit])
    assert code == 1 and "Traceback" not in err
    result = json.loads(report.read_text())
    line = result["verdict"]
    assert "DIVERGES: another architecture: cannot map" in line and "'conv1.conv.weight' (64, 1, 7, 7)" in line
    assert "(64, 3, 7, 7)" in line and "another variant" in line
    arch = result["architecture"]
    assert (arch["layer"], arch["expected"], arch["yours"]) == ("conv1", [64, 1, 7, 7], [64, 3, 7, 7])
    assert arch["tensor"] == "conv1.conv.weight" and arch["trap"] == "in-channels"
    assert "architecture (weights)" in junit.read_text() and "another variant" in junit.read_text()


def test_torchvision_style_model_agrees_with_googlenet(capsys):
    code, out, err = run(capsys, ["check", "googlenet", "--input-size", 32, 32, "--torch",
                                  "impl_torch.handwritten:GoogLeNet", "--format", "markdown"])
    assert code == 0, err
    assert "AGREE" in out and "| inception5b |" in out


@pytest.mark.parametrize("target,expected", [
    (f"{FIXTURES}/nowhere.py:net", "does not exist"),
    (f"{FIXTURES}/d2l_torch.py:nothing", "has no attribute 'nothing'"),
    ("no_such_module_xyz:net", "importing no_such_module_xyz failed: ModuleNotFoundError"),
    ("json:dumps", "calling dumps() failed: TypeError"),
    ("json:__name__", "expected a torch.nn.Module, got builtins.str"),
    (f"{FIXTURES}/d2l_torch.py", "expected MODULE:FACTORY"),
])
def test_bad_factories_are_one_line_exit_2(capsys, target, expected):
    code, out, err = run(capsys, ["check", "d2l", "--torch", target])
    lines = err.strip().splitlines()
    assert code == 2 and out == ""
    assert lines[-1].startswith("error: ") and expected in lines[-1], lines[-1]
    assert "Traceback" not in err


def test_exactly_one_model_option(capsys):
    code, _, err = run(capsys, ["check", "d2l"])
    assert code == 2 and "exactly one of --torch" in err


def test_map_rules_name_the_spec_keys(capsys, tmp_path):
    rules = tmp_path / "map.json"
    rules.write_text(json.dumps({r"^0\.0\.(weight|bias)$": r"conv1.conv.\1", r"^5\.weight$": "fc.weight"}))
    code, _, err = run(capsys, ["check", "d2l", "--input-size", 32, 32, "--torch", D2L, "--map", rules])
    assert code == 0, err
    rules.write_text(json.dumps({r"^0\.0\.weight$": "conv1.weight"}))
    code, _, err = run(capsys, ["check", "d2l", "--input-size", 32, 32, "--torch", D2L, "--map", rules])
    assert code == 2 and "'0.0.weight' -> 'conv1.weight', which is no spec key of 'd2l'" in err


def test_d2l_model_for_the_googlenet_variant_is_a_clear_mismatch(capsys):
    code, out, err = run(capsys, ["check", "googlenet", "--input-size", 32, 32, "--torch", D2L])
    line = out.strip().splitlines()[-1]
    assert code == 1 and "DIVERGES: another architecture: cannot map" in line and "another variant" in line


def test_a_forward_that_raises_is_one_line(capsys):
    code, out, err = run(capsys, ["check", "conv_s2", "--spec", f"{FIXTURES}/traps.json", "--torch",
                                  f"{FIXTURES}/trap_models_torch.py:broken"])
    line = err.strip().splitlines()[-1]
    assert code == 2 and "running it on (1, 2, 16, 16) failed: IndexError" in line and "Traceback" not in err
