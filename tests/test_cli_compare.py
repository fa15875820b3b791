"""googlenet-suite compare and run: the main job and the CI-conformance contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

import shared_spec
import shared_spec.weights
from googlenet_suite import frameworks as fw_registry
from googlenet_suite.cli import main


pytestmark = pytest.mark.cross


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def keys(installed) -> list[str]:
    """The registered frameworks installed here (compare's default columns, in the registry's order), two or more."""
    if len(installed) < 2:
        pytest.skip(f"needs at least two frameworks, have {list(installed)}")
    return list(installed)


def test_compare_json_agrees(capsys, keys):
    code, out, err = run(capsys, "compare", "d2l", "--format", "json", "--input-size", "64", "64")
    data = json.loads(out)
    assert code == 0 and data["agree"] is True
    (report,) = data["variants"]
    assert report["variant"] == "d2l" and report["agree"] is True
    assert report["oracle"]["params"] == shared_spec.analyze(shared_spec.load("d2l")).params
    for key in keys:
        res = report["frameworks"][key]
        assert res["status"] == "ok" and res["version"] and res["device"] == "cpu"
        assert res["params"] == report["oracle"]["params"] and res["buffers"] == 0
        assert res["max_abs_diff"] <= 1e-4
        assert [row["name"] for row in res["layers"]] == [row["name"] for row in report["oracle"]["layers"]]
        assert all(row["out_shape"] == o["out_shape"] for row, o in zip(res["layers"], report["oracle"]["layers"]))
    assert "AGREE" in report["verdict"]
    assert "building" in err  # progress is shown on stderr


def test_compare_table_and_stages(capsys, keys):
    code, out, _ = run(capsys, "compare", "gluon-tutorial", "--stages")
    assert code == 0
    assert "b3 (maxpool3)" in out and "(480, 5, 5)" in out and "trainable params" in out
    assert "max abs diff vs torch" in out and "gluon-tutorial: AGREE" in out


def test_compare_markdown_to_file(capsys, tmp_path, keys):
    target = tmp_path / "report.md"
    code, out, err = run(capsys, "compare", "cifar", "--format", "markdown", "--output", target,
                         "--frameworks", "torch,mxnet")
    text = target.read_text()
    assert code == 0 and out == "" and "wrote" in err
    assert text.startswith("### cifar") and "| layer | oracle | PyTorch | MXNet Gluon |" in text and "AGREE" in text


@pytest.fixture
def tf_missing(monkeypatch):
    """The registry reports Keras/TF as not installed; the other frameworks load as they are."""
    real = fw_registry.load

    def fake(key):
        if key == "tf":
            raise fw_registry.FrameworkMissing("Keras 3 (TF) is not installed")
        return real(key)

    monkeypatch.setattr(fw_registry, "load", fake)


def test_compare_reports_a_missing_framework(capsys, tf_missing, keys):
    code, out, _ = run(capsys, "compare", "d2l", "--format", "json", "--input-size", "32", "32")
    data = json.loads(out)
    tf = data["variants"][0]["frameworks"]["tf"]
    assert tf["status"] == "missing" and "pip install" in tf["hint"] and "[tf]" in tf["hint"]
    others = [k for k in keys if k != "tf"]
    assert all(data["variants"][0]["frameworks"][k]["status"] == "ok" for k in others)
    assert code == 0 and data["agree"] is True and data["variants"][0]["require_all"] is False


def test_compare_require_all_fails_on_a_missing_framework(capsys, tf_missing, keys):
    others = [k for k in keys if k != "tf"]
    code, out, _ = run(capsys, "compare", "d2l", "--format", "json", "--input-size", "32", "32", "--require-all",
                       "--frameworks", ",".join([*others, "tf"]))
    data = json.loads(out)
    (report,) = data["variants"]
    assert code == 1 and data["agree"] is False and report["agree"] is False and report["require_all"] is True
    assert report["verdict"] == f"d2l: INCOMPLETE: not installed: tf (--require-all); {', '.join(others)} ran"
    assert all(report["frameworks"][k]["status"] == "ok" and report["frameworks"][k]["agree"] for k in others)


def test_compare_require_all_passes_when_every_named_framework_runs(capsys, keys):
    code, out, _ = run(capsys, "compare", "d2l", "--format", "json", "--input-size", "32", "32", "--require-all",
                       "--frameworks", ",".join(keys[:2]))
    data = json.loads(out)
    assert code == 0 and data["agree"] is True and data["variants"][0]["verdict"].startswith("d2l: AGREE: ")


def test_compare_disagreement_exits_1_and_names_the_layer(capsys, monkeypatch, keys):
    victim = keys[1]
    mod = fw_registry.load(victim)

    def corrupt_load(model, path):
        weights, _ = shared_spec.weights.load_weights(path)
        weights["inception4b.branch1.conv1.conv.weight"] = weights["inception4b.branch1.conv1.conv.weight"] * 1.5
        mod.import_weights(model, weights)

    monkeypatch.setattr(mod, "load_weights", corrupt_load)
    code, out, _ = run(capsys, "compare", "d2l", "--format", "json", "--input-size", "32", "32",
                       "--frameworks", ",".join(keys[:2]))
    data = json.loads(out)
    res = data["variants"][0]["frameworks"][victim]
    assert code == 1 and data["agree"] is False
    assert res["first_divergence"] == "inception4b" and res["max_abs_diff"] > 1e-4
    assert "DISAGREE" in data["variants"][0]["verdict"] and "inception4b" in data["variants"][0]["verdict"]


def test_compare_bad_output_dir_writes_nothing(capsys, tmp_path, keys):
    code, _, err = run(capsys, "compare", "d2l", "--input-size", "32", "32", "--output", tmp_path / "no" / "r.txt")
    assert code == 2 and "does not exist" in err and not (tmp_path / "no").exists()


def test_run_own_input_across_frameworks(capsys, tmp_path, keys, input_batch):
    x = input_batch(shared_spec.load("cifar"))
    np.save(tmp_path / "x.npy", x)
    weights = tmp_path / "w.safetensors"
    code, _, err = run(capsys, "run", "--framework", keys[0], "cifar", "--seed", 3, "--input", tmp_path / "x.npy",
                       "--output", tmp_path / "a.npy", "--save-weights", weights)
    assert code == 0 and weights.exists(), err
    code, _, err = run(capsys, "run", "--framework", keys[1], "cifar", "--weights", weights,
                       "--input", tmp_path / "x.npy", "--output", tmp_path / "b.npy")
    assert code == 0, err
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (2, 100) and np.max(np.abs(a - b)) <= 1e-4


@pytest.mark.parametrize("case", ["shape", "not_npy", "weights_corrupt", "weights_variant", "missing_input"])
def test_run_bad_input_exit_2_no_output(capsys, tmp_path, case, keys):
    x = np.zeros((1, 3, 32, 32), np.float32)
    np.save(tmp_path / "x.npy", x)
    args = ["run", "--framework", keys[0], "cifar", "--input", tmp_path / "x.npy", "--output", tmp_path / "out.npy"]
    fragment = {"shape": "does not fit variant 'cifar'", "not_npy": "not a readable .npy file",
                "weights_corrupt": "not a readable safetensors file", "weights_variant": "weights are for variant 'd2l', not 'cifar'",
                "missing_input": "no such input file"}[case]
    if case == "shape":
        np.save(tmp_path / "x.npy", np.zeros((1, 1, 32, 32), np.float32))
    elif case == "not_npy":
        (tmp_path / "x.npy").write_text("hello")
    elif case == "weights_corrupt":
        (tmp_path / "w.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
        args += ["--weights", tmp_path / "w.safetensors"]
    elif case == "weights_variant":
        run(capsys, "run", "--framework", keys[0], "d2l", "--in-channels", 3, "--input", tmp_path / "x.npy",
            "--output", tmp_path / "d.npy", "--save-weights", tmp_path / "d2l.safetensors")
        (tmp_path / "d.npy").unlink()
        args += ["--weights", tmp_path / "d2l.safetensors"]
    elif case == "missing_input":
        args[args.index(tmp_path / "x.npy")] = tmp_path / "nope.npy"
    code, _, err = run(capsys, *args)
    assert code == 2, err
    assert fragment in err and err.count("\n") == 1
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.tf
@pytest.mark.mxnet
def test_tf_before_mxnet_in_one_process_does_not_crash(tmp_path):
    """MXNet 1.9.1 segfaults when imported after TensorFlow: `--frameworks tf,mxnet` must still run. In a
    fresh process, since this test session has MXNet loaded already (conftest)."""
    import subprocess
    import sys

    pytest.importorskip("tensorflow")
    pytest.importorskip("mxnet")
    done = subprocess.run([sys.executable, "-m", "googlenet_suite", "compare", "d2l", "--frameworks", "tf,mxnet",
                           "--input-size", "32", "32"], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "d2l: AGREE: tf, mxnet" in done.stdout
    header = next(line for line in done.stdout.splitlines() if "layer" in line and "oracle" in line)
    assert header.index("Keras") < header.index("MXNet"), "columns keep the order the user gave"


def test_compare_never_agrees_on_nan(capsys, tmp_path, keys):
    """A NaN anywhere (here: a NaN weight) is a disagreement, named, and the verdict and the JSON say the same."""
    spec = shared_spec.load("d2l", input_size=(32, 32))
    mod = fw_registry.load(keys[0])
    model = mod.build(spec, device="cpu", seed=0)
    weights = mod.export_weights(model)
    weights["fc.bias"][:] = np.nan
    from googlenet_suite import harness

    original = harness.calibrated_weights
    harness.calibrated_weights = lambda *args, **kwargs: weights
    try:
        result = harness.compare([spec], keys, batch=2, device="cpu", seed=0)
    finally:
        harness.calibrated_weights = original
    (report,) = result["variants"]
    assert result["agree"] is False and report["agree"] is False
    assert "DISAGREE" in report["verdict"] and "non-finite" in report["verdict"] and "at fc" in report["verdict"]
    assert all(report["frameworks"][k]["non_finite"] == "fc" for k in keys)


def _perturbed(monkeypatch, mod, *, logits=0.0, layer=None, factor=1.0):
    """``mod`` reporting its logits shifted by ``logits`` and ``layer``'s activation times ``factor``."""
    forward, layer_outputs = mod.forward, mod.layer_outputs
    monkeypatch.setattr(mod, "forward", lambda model, x, **kw: forward(model, x, **kw) + np.float32(logits))

    def outputs(model, x):
        acts = layer_outputs(model, x)
        if layer is not None:
            acts[layer] = acts[layer] * np.float32(factor)
        return acts

    monkeypatch.setattr(mod, "layer_outputs", outputs)


def test_compare_judges_the_logits_as_every_layer(capsys, monkeypatch, keys):
    """One rule for the logits and every layer: 1e-4 relative to the reference's scale above 1 (cifar's logits
    are about 4.8 at 8x8 with the calibrated reference weights). 1.5e-4 on every logit agrees at that scale; 1e-3 does not."""
    victim = keys[1]
    _perturbed(monkeypatch, fw_registry.load(victim), logits=1.5e-4)
    code, out, _ = run(capsys, "compare", "cifar", "--format", "json", "--input-size", "8", "8",
                       "--frameworks", ",".join(keys[:2]))
    (report,) = json.loads(out)["variants"]
    res, scale = report["frameworks"][victim], report["frameworks"][keys[0]]["logit_scale"]
    assert scale > 1.5 and res["max_abs_diff"] > 1e-4, "the case needs logits above 1 and an absolute diff above 1e-4"
    assert code == 0 and report["agree"] is True and res["max_relative_diff"] <= 1e-4
    assert "logits and every layer within 0.0001 x max(1, scale)" in report["verdict"]
    _perturbed(monkeypatch, fw_registry.load(victim), logits=1e-3)
    code, out, _ = run(capsys, "compare", "cifar", "--format", "json", "--input-size", "8", "8",
                       "--frameworks", ",".join(keys[:2]))
    (report,) = json.loads(out)["variants"]
    assert code == 1 and report["agree"] is False and report["frameworks"][victim]["max_relative_diff"] > 1e-4
    assert f"{victim} logits differ from {keys[0]} by" in report["verdict"] and "> 0.0001 x max(1, " in report["verdict"]


def test_compare_fails_on_an_inner_layer_even_when_the_logits_agree(capsys, monkeypatch, keys):
    """A layer beyond the tolerance fails the variant, named, though the logits agree: every layer is judged."""
    victim = keys[1]
    _perturbed(monkeypatch, fw_registry.load(victim), layer="inception4b", factor=1.01)
    code, out, _ = run(capsys, "compare", "d2l", "--format", "json", "--input-size", "32", "32",
                       "--frameworks", ",".join(keys[:2]))
    (report,) = json.loads(out)["variants"]
    res = report["frameworks"][victim]
    assert res["max_abs_diff"] <= 1e-4 and res["first_divergence"] == "inception4b"
    assert code == 1 and report["agree"] is False and res["agree"] is False
    assert f"DISAGREE: {victim} differs from {keys[0]} at layer inception4b (" in report["verdict"]
