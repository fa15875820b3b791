"""``googlenet-suite train`` / ``evaluate``: the three training loops, checkpoints, resume, logs, DDP.

Small on purpose (the CI machine has 2 cores): the d2l variant at 32x32, 32 synthetic examples,
batch 16, two epochs. One run per framework is shared by the tests of this module.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import shared_spec
from googlenet_suite import cli, data, train

SMALL = dict(variant="d2l", data="synthetic", epochs=2, batch=16, resize=32, limit=32, seed=0, device="cpu")
FRAMEWORKS = {"torch": "torch", "tf": "tensorflow", "mxnet": "mxnet"}
PNG = b"\x89PNG\r\n\x1a\n"


def _need(key: str) -> None:
    pytest.importorskip(FRAMEWORKS[key])


def _train(out: Path, spec: Path | None = None, **options) -> list[dict]:
    recipe = train.Recipe(**{**SMALL, **options})
    return train.train(shared_spec.load(recipe.variant, spec_file=spec), recipe, out, progress=False,
                       log=lambda message: None)


def _network(ckpt) -> shared_spec.Spec:
    """The network a checkpoint records, loaded as ``evaluate`` loads it."""
    request = train.checkpoint_spec(ckpt)
    return shared_spec.load(request.variant, spec_file=request.spec_file, **request.overrides)


def _weights(path) -> dict[str, np.ndarray]:
    from shared_spec import weights as W

    return W.load_weights(path)[0]


def _params(key: str):
    marks = {"torch": pytest.mark.torch, "tf": pytest.mark.tf, "mxnet": pytest.mark.mxnet}
    return [pytest.param(k, marks=marks[k]) for k in (FRAMEWORKS if key == "all" else [key])]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, builtin_doc) -> dict:
    """A variant of four layers with BatchNorm (conv-BN-ReLU twice, global average pool, dense) in a spec file of
    its own: ``runs(key, **tiny)`` trains it. For the tests of the driver's plumbing (the optimizer's state, the
    same start, the files ``train --framework all`` writes, the aux heads' loss and weights), which do not depend
    on the network: building and tracing it takes a fraction of d2l's or googlenet's time (Keras: seconds less per
    run). The same file holds ``tiny-aux``: the same with an aux head after each conv, as googlenet's (pool, 1x1
    conv, dense), weighted 0.3."""
    doc = json.loads(json.dumps(builtin_doc))
    variant = doc["variants"]["googlenet"]  # its layer defaults: conv without bias, BatchNorm, ReLU
    variant.pop("transform_input")
    variant.pop("preprocess", None)  # googlenet's pipeline runs its transform_input, which the tiny variants lack
    convs = [{"name": "conv1", "op": "conv", "out": 8, "kernel": 3, "stride": 2, "padding": 1},
             {"name": "conv2", "op": "conv", "out": 8, "kernel": 3, "padding": 1}]
    head = [{"name": "avgpool", "op": "global_avgpool"}, {"name": "flatten", "op": "flatten"},
            {"name": "fc", "op": "dense", "in": 8, "out": "$num_classes"}]

    def aux(name):
        return {"name": name, "op": "aux", "loss_weight": 0.3, "layers": [
            {"name": "pool", "op": "adaptive_avgpool", "output_size": [2, 2]},
            {"name": "conv", "op": "conv", "out": 4, "kernel": 1}, {"name": "flatten", "op": "flatten"},
            {"name": "fc", "op": "dense", "out": "$num_classes"}]}

    doc["variants"] = {
        "tiny": {**variant, "aux_logits": False, "stages": {"head": "fc"}, "expected": {}, "layers": [*convs, *head]},
        "tiny-aux": {**variant, "aux_logits": False, "stages": {"head": "fc"}, "expected": {},
                     "layers": [convs[0], aux("aux1"), convs[1], aux("aux2"), *head]}}
    doc["default_variant"] = "tiny"
    path = tmp_path_factory.mktemp("tiny-spec") / "tiny.json"
    path.write_text(json.dumps(doc))
    return {"variant": "tiny", "spec": path}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Small training runs, each made on first use: (framework, options) -> its output directory."""
    made: dict[tuple, Path] = {}

    def get(key: str, **options) -> Path:
        _need(key)
        name = (key, *sorted(options.items()))
        if name not in made:
            out = tmp_path_factory.mktemp(f"run-{key}")
            _train(out, framework=key, **options)
            made[name] = out
        return made[name]

    return get


# --------------------------------------------------------------------------- each framework


@pytest.mark.parametrize("key", _params("all"))
def test_a_few_steps_lower_the_loss_and_write_logs(runs, key):
    out = runs(key)
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert [int(r["steps"]) for r in rows] == [2, 4]  # 32 examples, batch 16
    losses = [float(r["loss"]) for r in rows]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]
    for row in rows:
        assert 0.0 <= float(row["train_acc"]) <= 1.0 and 0.0 <= float(row["test_acc"]) <= 1.0
        assert float(row["examples_per_s"]) > 0
    log = json.loads((out / "log.json").read_text())
    assert log["recipe"]["framework"] == key and log["recipe"]["lr"] == 0.1 and log["recipe"]["optimizer"] == "sgd"
    assert [r["epoch"] for r in log["epochs"]] == [1, 2]
    assert (out / "curves.png").read_bytes()[:8] == PNG
    for name in ("epoch_1", "epoch_2", "last"):
        assert set(_weights(out / f"{name}.safetensors")) == set(_weights(out / "last.safetensors"))
        meta = json.loads((out / f"{name}.json").read_text())
        assert meta["format"] == train.CHECKPOINT_FORMAT and meta["framework"] == key
    assert json.loads((out / "last.json").read_text())["epoch"] == 2
    assert not list(out.glob(".*.tmp"))  # atomic writes leave nothing behind


@pytest.mark.parametrize("key", _params("all"))
def test_resume_continues_at_the_right_epoch_with_the_same_state(runs, tmp_path, key):
    full = runs(key)
    resumed = tmp_path / "resumed"
    recipe = train.resume_recipe(train.read_checkpoint(full / "epoch_1.safetensors"), {"epochs": 2})
    history = train.train(shared_spec.load(recipe.variant), recipe, resumed, resume=full / "epoch_1.safetensors",
                          progress=False, log=lambda m: None)
    assert [row["epoch"] for row in history] == [1, 2] and history[1]["steps"] == 4
    assert not (resumed / "epoch_1.safetensors").exists()  # epoch 1 came from the checkpoint
    a, b = _weights(full / "epoch_2.safetensors"), _weights(resumed / "epoch_2.safetensors")
    worst = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    assert worst <= 1e-6, f"resumed weights differ from the uninterrupted run's by {worst:.2e}"
    full_rows = json.loads((full / "log.json").read_text())["epochs"]
    assert history[1]["loss"] == pytest.approx(full_rows[1]["loss"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("key", _params("all"))
def test_resume_restores_adam_state(runs, tiny, tmp_path, key):
    """Adam's moments and step count travel in the framework's own optimizer file beside the weights."""
    full, resumed = runs(key, optimizer="adam", lr=1e-3, **tiny), tmp_path / "resumed"
    suffix = {"torch": ".pt", "tf": ".safetensors", "mxnet": ".states"}[key]
    assert (full / f"epoch_1.optimizer{suffix}").is_file() and (full / f"last.optimizer{suffix}").is_file()
    assert json.loads((full / "last.json").read_text())["optimizer_state"] == f"last.optimizer{suffix}"
    recipe = train.resume_recipe(train.read_checkpoint(full / "epoch_1.safetensors"), {})
    train.train(_network(full / "epoch_1.safetensors"), recipe, resumed, resume=full / "epoch_1.safetensors",
                progress=False, log=lambda m: None)
    a, b = _weights(full / "epoch_2.safetensors"), _weights(resumed / "epoch_2.safetensors")
    assert max(float(np.max(np.abs(a[k] - b[k]))) for k in a) <= 1e-6


@pytest.mark.parametrize("key", _params("all"))
def test_resume_with_a_damaged_or_missing_optimizer_file(runs, tiny, tmp_path, capsys, key):
    run = tmp_path / "run"  # a copy of the shared Adam run's first epoch: this test damages it
    run.mkdir()
    for path in runs(key, optimizer="adam", lr=1e-3, **tiny).glob("epoch_1.*"):
        shutil.copy2(path, run / path.name)
    state = next(run.glob("epoch_1.optimizer.*"))
    state.write_bytes(b"not an optimizer state")
    err = _fails(capsys, _resume_args(tmp_path / "out", run / "epoch_1.safetensors", "--epochs", "2"),
                 tmp_path / "out")
    assert state.name in err
    state.unlink()
    err = _fails(capsys, _resume_args(tmp_path / "out", run / "epoch_1.safetensors", "--epochs", "2"),
                 tmp_path / "out")
    assert state.name in err and "missing" in err


AUX = dict(variant="googlenet", aux=True, epochs=1, batch=8, limit=16)
#: the networks with aux heads the aux tests train: the tiny variant's two heads in the default run, googlenet's
#: (the same loops and files on the real network, a Keras run of 10 s) in the matrix (tox -e matrix)
AUX_NETWORKS = [pytest.param("tiny-aux"), pytest.param("googlenet", marks=pytest.mark.matrix)]


def _aux(network: str, tiny: dict) -> dict:
    return AUX if network == "googlenet" else {**AUX, "variant": network, "spec": tiny["spec"]}


@pytest.mark.slow
@pytest.mark.parametrize("network", AUX_NETWORKS)
@pytest.mark.parametrize("key", _params("all"))
def test_aux_heads_train_in_every_framework(runs, tiny, key, network):
    """Two aux heads (googlenet's, or the tiny variant's): training mode returns (main, aux1, aux2) and each loop
    adds loss_weight x CE of the aux heads; the checkpoint holds the aux heads' weights."""
    out = runs(key, **_aux(network, tiny))
    (row,) = json.loads((out / "log.json").read_text())["epochs"]
    assert np.isfinite(row["loss"]) and row["loss"] > 0 and np.isfinite(row["test_loss"])
    assert any(name.startswith("aux1.") for name in _weights(out / "last.safetensors"))


# --------------------------------------------------------------------------- the network a run trains


def test_fit_to_data_sets_classes_channels_and_size_and_keeps_the_specs_overrides():
    """MNIST at 96: one channel, 96x96, 10 classes; the aux heads on when asked; an override given stays."""
    images, labels = np.zeros((2, 1, 28, 28), np.uint8), np.zeros(2, np.int64)
    ds = data.Dataset("mnist-like", images, labels, images, labels, num_classes=10, channels=1)
    fitted = train.fit_to_data(shared_spec.load("googlenet", dropout=0.1), ds, resize=96, aux=True)
    assert (fitted.variant, fitted.input_shape, fitted.num_classes, fitted.aux_logits) == \
        ("googlenet", (1, 96, 96), 10, True)
    assert fitted.overrides["dropout"] == 0.1


def test_train_refuses_a_recipe_that_names_another_variant(tmp_path):
    with pytest.raises(ValueError, match="recipe.variant"):
        train.train(shared_spec.load("googlenet"), train.Recipe(**SMALL), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.torch
def test_a_checkpoint_of_a_users_spec_file_resumes_and_evaluates_without_spec(builtin_doc, tmp_path, capsys):
    """The checkpoint's .json records the spec file and variant it was trained from: ``--resume`` and ``evaluate``
    rebuild that network with no ``--spec`` given again (a variant of the built-in spec keeps no file)."""
    _need("torch")
    doc = json.loads(json.dumps(builtin_doc))
    doc["variants"]["mine"] = doc["variants"]["d2l"]
    path = tmp_path / "my-spec.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "run"
    assert cli.main(["train", "mine", "--spec", str(path), *_train_args(out, "--framework", "torch")[1:]]) == 0
    recorded = json.loads((out / "last.json").read_text())["spec"]
    assert recorded == {"variant": "mine", "file": str(path.resolve()), "overrides": {}}
    assert cli.main(_resume_args(tmp_path / "resumed", out / "epoch_1.safetensors", "--epochs", "2")) == 0
    assert json.loads((tmp_path / "resumed" / "last.json").read_text())["spec"] == recorded
    capsys.readouterr()
    assert cli.main(["evaluate", "--framework", "torch", "--weights", str(tmp_path / "resumed" / "last.safetensors"),
                     "--data", "synthetic", "--limit", "16", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["variant"] == "mine" and result["resize"] == 32 and result["examples"] == 16


@pytest.mark.torch
def test_a_damaged_spec_record_is_one_line(runs, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("last.safetensors", "last.json"):
        shutil.copy2(runs("torch") / name, run / name)
    meta = json.loads((run / "last.json").read_text())
    assert meta["spec"] == {"variant": "d2l", "file": None, "overrides": {}}  # the built-in spec: no file
    (run / "last.json").write_text(json.dumps({**meta, "spec": {"variant": "d2l", "file": 3}}))
    argv = ["evaluate", "--framework", "torch", "--weights", str(run / "last.safetensors"), "--data", "synthetic",
            "--output", str(tmp_path / "out")]
    assert "$.spec.file" in _fails(capsys, argv, tmp_path / "out")
    err = _fails(capsys, _resume_args(tmp_path / "out", run / "last.safetensors", "--epochs", "3"), tmp_path / "out")
    assert "$.spec.file" in err


# --------------------------------------------------------------------------- one model, three APIs


@pytest.mark.cross
@pytest.mark.parametrize("trained_in", ["torch", "mxnet"])
def test_a_checkpoint_evaluates_the_same_in_every_framework(runs, trained_in):
    _check_same_everywhere(runs(trained_in) / "last.safetensors", trained_in)


@pytest.mark.cross
@pytest.mark.parametrize("network", AUX_NETWORKS)
def test_an_aux_checkpoint_evaluates_the_same_in_every_framework(runs, tiny, network):
    """BatchNorm and aux heads (googlenet's, or the tiny variant's): the running statistics and the aux weights travel
    too."""
    _check_same_everywhere(runs("tf", **_aux(network, tiny)) / "last.safetensors", "tf")


def _check_same_everywhere(ckpt: Path, trained_in: str) -> None:
    limit = json.loads((ckpt.parent / "log.json").read_text())["recipe"]["limit"]
    results = {}
    for key in FRAMEWORKS:
        _need(key)
        results[key] = train.evaluate_checkpoint(_network(ckpt), key, ckpt, data_name="synthetic", limit=limit,
                                                 device="cpu")
    accuracies = {key: r["accuracy"] for key, r in results.items()}
    losses = {key: r["loss"] for key, r in results.items()}
    assert len(set(accuracies.values())) == 1, accuracies
    assert max(losses.values()) - min(losses.values()) <= 1e-4, losses
    logged = json.loads((ckpt.parent / "log.json").read_text())["epochs"][-1]
    assert results[trained_in]["accuracy"] == pytest.approx(logged["test_acc"])  # evaluate = what training logged
    assert results[trained_in]["loss"] == pytest.approx(logged["test_loss"], abs=1e-6)


@pytest.mark.cross
def test_cli_evaluate_json(runs, capsys):
    ckpt = runs("torch") / "last.safetensors"
    _need("mxnet")
    code = cli.main(["evaluate", "--framework", "mxnet", "--weights", str(ckpt), "--data", "synthetic",
                     "--limit", "32", "--device", "cpu", "--format", "json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["framework"] == "mxnet" and result["examples"] == 32 and result["resize"] == 32
    assert {"accuracy", "loss"} <= set(result)


# --------------------------------------------------------------------------- the command line's errors


def _fails(capsys, argv, out: Path) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    assert not out.exists(), f"{out} was written"
    return err.strip()


def _train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "--data", "synthetic", "--resize", "32", "--limit", "16", "--batch", "16", "--epochs", "1",
            "--device", "cpu", "--quiet", "--out", str(out), *extra]


def _resume_args(out: Path, ckpt, *extra: str) -> list[str]:
    return ["train", "--resume", str(ckpt), "--quiet", "--out", str(out), *extra]


def test_cli_unknown_framework(tmp_path, capsys):
    err = _fails(capsys, _train_args(tmp_path / "out", "--framework", "jax"), tmp_path / "out")
    assert "jax" in err


def test_cli_framework_is_required(tmp_path, capsys):
    _fails(capsys, _train_args(tmp_path / "out"), tmp_path / "out")


@pytest.mark.torch
def test_cli_unknown_variant(tmp_path, capsys):
    _need("torch")
    err = _fails(capsys, _train_args(tmp_path / "out", "--framework", "torch", "--variant", "resnet"), tmp_path / "out")
    assert "resnet" in err and "d2l" in err  # lists the known variants


@pytest.mark.torch
def test_cli_missing_data_files_give_the_data_layers_message(tmp_path, capsys):
    _need("torch")
    empty = tmp_path / "nodata"
    empty.mkdir()
    with pytest.raises(data.DatasetError) as expected:
        data.load("fashion-mnist", empty)
    argv = ["train", "--framework", "torch", "--data", "fashion-mnist", "--data-dir", str(empty),
            "--out", str(tmp_path / "out"), "--quiet"]
    err = _fails(capsys, argv, tmp_path / "out")
    assert err == f"error: {str(expected.value).splitlines()[0]}"


@pytest.mark.torch
@pytest.mark.torch
def test_cli_resume_goes_on_from_the_checkpoint(runs, tmp_path, capsys):
    full = runs("torch")
    assert cli.main(_resume_args(tmp_path / "out", full / "epoch_1.safetensors")) == 0
    assert "epochs 2..2" in capsys.readouterr().err
    assert [r["epoch"] for r in csv.DictReader((tmp_path / "out" / "log.csv").open())] == ["1", "2"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.safetensors")) == ["epoch_2.safetensors",
                                                                                 "last.safetensors"]


@pytest.mark.torch
def test_cli_resume_missing_file(tmp_path, capsys):
    _need("torch")
    err = _fails(capsys, _resume_args(tmp_path / "out", tmp_path / "nope.safetensors"), tmp_path / "out")
    assert "nope.safetensors" in err


@pytest.mark.torch
def test_cli_resume_corrupt_file(tmp_path, capsys):
    _need("torch")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header, not weights")
    err = _fails(capsys, _resume_args(tmp_path / "out", bad), tmp_path / "out")
    assert "bad.safetensors" in err


@pytest.mark.torch
def test_cli_resume_without_its_json(runs, tmp_path, capsys):
    lone = tmp_path / "lone.safetensors"
    shutil.copyfile(runs("torch") / "epoch_1.safetensors", lone)
    err = _fails(capsys, _resume_args(tmp_path / "out", lone, "--epochs", "3"), tmp_path / "out")
    assert "lone.json" in err


@pytest.mark.torch
def test_cli_resume_refuses_a_different_recipe(runs, tmp_path, capsys):
    ckpt = runs("torch") / "epoch_1.safetensors"
    err = _fails(capsys, _resume_args(tmp_path / "out", ckpt, "--lr", "0.5"), tmp_path / "out")
    assert "lr=0.1" in err and "lr=0.5" in err


def test_cli_evaluate_missing_weights(tmp_path, capsys):
    argv = ["evaluate", "--framework", "torch", "--weights", str(tmp_path / "none.safetensors"), "--data", "synthetic",
            "--output", str(tmp_path / "out")]
    _fails(capsys, argv, tmp_path / "out")


# --------------------------------------------------------------------------- several processes


@pytest.mark.torch
@pytest.mark.slow
def test_torchrun_ddp_two_processes(runs, tmp_path):
    """The torch trainer, unchanged, under torchrun: gloo on the CPU, rank 0 writes the one log. The two
    processes together see the single-process batches, so the logged losses agree with a single run's."""
    _need("torch")
    single = runs("torch")
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    argv = [str(torchrun), "--nproc_per_node", "2", "-m", "googlenet_suite.cli", "train", "--framework", "torch",
            "--data", "synthetic", "--resize", "32", "--limit", "32", "--batch", "16", "--epochs", "2",
            "--variant", "d2l", "--lr", "0.1", "--device", "cpu", "--quiet", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert done.stderr.count("epoch 2:") == 1  # only rank 0 logs
    reference = json.loads((single / "log.json").read_text())["epochs"]
    for row, ref in zip(rows, reference):
        assert float(row["loss"]) == pytest.approx(ref["loss"], abs=1e-4)
        assert float(row["train_acc"]) == pytest.approx(ref["train_acc"])


# --------------------------------------------------------------------------- all frameworks side by side

#: the README's quick demo as it is (googlenet, SGD at lr 0.025, 2000 training images, 63 steps an epoch). Cut to the
#: first 640 examples, Keras ended at test accuracy 0.77; cut to 1280, PyTorch at 0.89 (BatchNorm's running
#: statistics lag behind the weights early on): so the test runs the demo itself
ALL_ARGS = ("--data", "synthetic", "--resize", "32", "--epochs", "3", "--batch", "32", "--device", "cpu", "--quiet")


def test_the_default_sgd_learning_rate_is_d2ls_scaled_with_the_batch():
    assert train.default_lr("sgd", 128) == 0.1 and train.default_lr("sgd", 32) == pytest.approx(0.025)
    assert train.default_lr("adam", 32) == train.default_lr("adam", 128) == 0.001


def test_the_synthetic_set_trains_a_batchnorm_variant_by_default():
    assert train.default_variant("synthetic") == "googlenet"
    assert train.default_variant("fashion-mnist") == train.default_variant(None) == "d2l"


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """The README's demo, ``train --framework all``, once for the module: its output directory."""
    for key in FRAMEWORKS:
        _need(key)
    out = tmp_path_factory.mktemp("demo")
    assert cli.main(["train", "--framework", "all", *ALL_ARGS, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def all_runs(tmp_path_factory, tiny):
    """``train --framework all`` cut to one epoch of 64 examples of the tiny variant (what it writes, not how well
    it learns)."""
    for key in FRAMEWORKS:
        _need(key)
    out = tmp_path_factory.mktemp("all")
    argv = ["train", tiny["variant"], "--spec", str(tiny["spec"]), "--framework", "all", *ALL_ARGS, "--out", str(out)]
    argv[argv.index("--epochs") + 1] = "1"
    assert cli.main([*argv, "--limit", "64"]) == 0
    return out


def _log(out: Path, key: str, variant: str = "googlenet") -> list[dict]:
    return json.loads((out / f"{key}-{variant}-synthetic" / "log.json").read_text())["epochs"]


@pytest.mark.cross
@pytest.mark.slow
@pytest.mark.demo
def test_train_all_learns_in_every_framework_and_overlays_the_runs(demo_runs):
    for key in FRAMEWORKS:
        rows = _log(demo_runs, key)
        assert [row["epoch"] for row in rows] == [1, 2, 3]
        assert rows[-1]["test_acc"] >= 0.9, (key, [row["test_acc"] for row in rows])
        assert (demo_runs / f"{key}-googlenet-synthetic" / "last.safetensors").is_file()
    assert (demo_runs / "overlay-googlenet-synthetic.png").read_bytes().startswith(PNG)


@pytest.mark.cross
@pytest.mark.slow
def test_train_all_writes_each_run_and_the_overlay(all_runs):
    for key in FRAMEWORKS:
        assert [row["epoch"] for row in _log(all_runs, key, "tiny")] == [1]
        assert (all_runs / f"{key}-tiny-synthetic" / "last.safetensors").is_file()
    assert (all_runs / "overlay-tiny-synthetic.png").read_bytes().startswith(PNG)


@pytest.mark.cross
def test_initial_weights_are_where_every_framework_starts(tiny, tmp_path):
    """``train_all``'s same start: weights drawn once (here by torch, seed 7, not the runs' seed 0) are what each
    framework trains from; at lr 1e-12 one step leaves them as they were (the BatchNorm running statistics, which
    the step updates from the batch, aside)."""
    for key in FRAMEWORKS:
        _need(key)
    import impl_torch

    recipe = train.Recipe(**{**SMALL, "variant": tiny["variant"], "epochs": 1, "limit": 16, "lr": 1e-12})
    spec = shared_spec.load(recipe.variant, spec_file=tiny["spec"])
    fitted = train.fit_to_data(spec, train.load_dataset(recipe, None), resize=recipe.resize, aux=recipe.aux)
    start = impl_torch.export_weights(impl_torch.build(fitted, device="cpu", seed=7))
    for key in FRAMEWORKS:
        run = dataclasses.replace(recipe, framework=key)
        train.train(spec, run, tmp_path / key, progress=False, log=lambda message: None, initial_weights=start)
        after = _weights(tmp_path / key / "last.safetensors")
        trained = [name for name in start if not name.endswith(("running_mean", "running_var"))]
        worst = max(float(np.max(np.abs(after[name] - start[name]))) for name in trained)
        assert worst < 1e-6, (key, worst)


@pytest.mark.cross
@pytest.mark.slow
def test_evaluate_all_gives_one_accuracy_in_every_framework(all_runs, capsys):
    ckpt = all_runs / "torch-tiny-synthetic" / "last.safetensors"  # its .json names the tiny spec file: no --spec
    argv = ["evaluate", "--framework", "all", "--weights", str(ckpt), "--data", "synthetic", "--device", "cpu",
            "--limit", "64"]
    assert cli.main([*argv, "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    accuracies = {key: r["accuracy"] for key, r in result["frameworks"].items()}
    assert set(FRAMEWORKS) <= set(accuracies)
    assert max(accuracies.values()) - min(accuracies.values()) <= 1e-6, accuracies
    assert result["accuracy_spread"] <= 1e-6
    assert accuracies["torch"] == pytest.approx(_log(all_runs, "torch", "tiny")[-1]["test_acc"])  # what it logged
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    assert all(label in table for label in ("PyTorch", "Keras 3 (TF)", "MXNet Gluon"))


@pytest.mark.onnx
@pytest.mark.torch
def test_evaluate_onnx_is_a_real_evaluation(runs, capsys):
    """ONNX Runtime is inference only, and inference is all evaluation takes: the same accuracy as torch."""
    pytest.importorskip("onnxruntime")
    ckpt = runs("torch") / "last.safetensors"
    results = {key: train.evaluate_checkpoint(_network(ckpt), key, ckpt, data_name="synthetic", limit=32,
                                              device="cpu") for key in ("torch", "onnx")}
    assert results["onnx"]["accuracy"] == results["torch"]["accuracy"]
    assert results["onnx"]["loss"] == pytest.approx(results["torch"]["loss"], abs=1e-4)
    code = cli.main(["evaluate", "--framework", "onnx", "--weights", str(ckpt), "--data", "synthetic",
                     "--limit", "32"])
    assert code == 0 and "accuracy" in capsys.readouterr().out


def test_cli_train_all_refuses_resume(tmp_path, capsys):
    err = _fails(capsys, _resume_args(tmp_path / "out", tmp_path / "x.safetensors", "--framework", "all"),
                 tmp_path / "out")
    assert "--framework all" in err
