"""googlenet-suite list / inspect, and the CLI's bad-input contract (one line, exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import shared_spec
from googlenet_suite.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_table_names_every_variant(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for variant in shared_spec.list_variants():
        assert variant in out
    assert "6,624,904" in out and "13,004,888" in out and "6,258,500" in out


def test_list_json(capsys):
    code, out, _ = run(capsys, "list", "--format", "json")
    rows = {r["variant"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["googlenet"]["params"] == 6_624_904 and rows["googlenet"]["params_with_aux"] == 13_004_888
    assert rows["d2l"]["input"] == [1, 96, 96] and rows["d2l"]["params_with_aux"] is None
    assert rows["googlenet"]["min_input_size"] == [15, 15]


@pytest.mark.parametrize("variant", shared_spec.list_variants())
def test_inspect_json_every_variant(capsys, variant):
    code, out, _ = run(capsys, "inspect", variant, "--format", "json")
    data = json.loads(out)
    report = shared_spec.analyze(shared_spec.load(variant))
    assert code == 0
    assert {"variant", "input", "num_classes", "params", "macs", "min_input_size", "layers"} <= set(data)
    assert data["params"] == {"trainable": report.params, "buffers": report.buffers}
    assert data["layers"][-1]["out_shape"] == list(report.output_shape)
    assert all({"name", "op", "out_shape", "params"} <= set(layer) for layer in data["layers"])


def test_inspect_overrides(capsys):
    code, out, _ = run(capsys, "inspect", "googlenet", "--num-classes", "10", "--in-channels", "1",
                       "--input-size", "64", "96", "--aux", "--format", "json")
    data = json.loads(out)
    assert code == 0
    assert data["input"] == [1, 64, 96] and data["num_classes"] == 10 and data["aux_logits"] is True
    assert any(layer["name"] == "aux2.fc2" and layer["out_shape"] == [10] for layer in data["layers"])


def test_inspect_table_and_markdown(capsys):
    code, out, _ = run(capsys, "inspect", "cifar", "--all")
    assert code == 0 and "inception3a.branch3.conv3" in out and "6,258,500" in out
    code, out, _ = run(capsys, "inspect", "d2l", "--format", "markdown")
    assert code == 0 and out.count("|") > 50 and "| inception5b |" in out


def test_inspect_user_spec_file(capsys, write_spec):
    def mutate(doc):
        doc["variants"]["mine"] = doc["variants"].pop("d2l")
        doc["variants"]["mine"]["num_classes"] = 3
    path = write_spec(mutate)
    code, out, _ = run(capsys, "inspect", "mine", "--spec", str(path), "--format", "json")
    assert code == 0 and json.loads(out)["layers"][-1]["out_shape"] == [3]
    code, out, _ = run(capsys, "list", "--spec", str(path), "--format", "json")
    assert "mine" in {r["variant"] for r in json.loads(out)}


@pytest.mark.parametrize("argv,fragment", [
    (["inspect", "resnet"], "unknown variant 'resnet'; known variants:"),
    (["inspect", "googlenet", "--input-size", "8", "8"], "minimum is 15x15"),
    (["inspect", "googlenet", "--num-classes", "0"], "num_classes=0"),
    (["inspect", "d2l", "--aux"], "no aux heads"),
    (["inspect", "--spec", "/nonexistent.json"], "cannot read spec file"),
    (["inspect", "--format", "yaml"], "invalid choice: 'yaml'"),
    (["compare", "--frameworks", "jax"], "unknown framework 'jax'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_broken_spec_file_via_console_script(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{ not json")
    proc = subprocess.run([sys.executable, "-m", "googlenet_suite", "inspect", "--spec", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "broken.json: line 1 column 3: malformed JSON" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_inspect_spec_file_and_a_variant_named_like_a_file(capsys, write_spec, tmp_path, monkeypatch):
    """``--spec`` is the one way to name a file: ``inspect --spec my.json x.json`` is variant ``x.json`` of my.json."""
    monkeypatch.chdir(tmp_path)
    write_spec(name="x.json")  # a file of that name is there, and is not read
    write_spec(lambda d: d["variants"].update({"x.json": d["variants"]["d2l"]}), name="my.json")
    code, out, _ = run(capsys, "inspect", "--spec", "my.json", "x.json", "--format", "json")
    assert code == 0 and json.loads(out)["variant"] == "x.json"
    code, _, err = run(capsys, "inspect", "--spec", "my.json", "y.json")
    assert code == 2 and "my.json: unknown variant 'y.json'; known variants: googlenet," in err
    code, _, err = run(capsys, "inspect", "x.json")  # the built-in spec has no variant of that name
    assert code == 2 and "unknown variant 'x.json'; known variants: googlenet," in err
