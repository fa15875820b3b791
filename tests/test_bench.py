"""googlenet-suite bench: the per-framework runners (impl_<key>.bench), the measuring processes and the CLI.

Mechanics, never speed: every runner runs its forward and its training step on a tiny
input, the hand-written models are the spec's network (parameter count, same logits for the
same weights), the CLI writes complete JSON, a PNG, and nothing on bad arguments. And trust: a row
measured while another process spins on a core is flagged or within 2x of its quiet figure, each
framework's memory is its own process's whatever ran before, and every row says its threads.
Fast modes are compiled on a trimmed GoogLeNet (stem + inception3a + head): compiling the whole
network takes minutes on a small CPU machine, and compilation itself is what is tested.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import shared_spec
import shared_spec.protocol  # noqa: F401  (small_peak patches its peak sizes)
from googlenet_suite import bench
from googlenet_suite import frameworks as fw_registry
from googlenet_suite.bench import machine, session, timing
from googlenet_suite.cli import main

# runners with a training step; onnxruntime's (forward only) has its own tests below
FRAMEWORKS = {key: fw.requires for key, fw in fw_registry.FRAMEWORKS.items() if fw.can("bench") and fw.can("train")}
KEYS = [pytest.param(key, marks=getattr(pytest.mark, key)) for key in FRAMEWORKS]
ALL_KEYS = [pytest.param(key, marks=getattr(pytest.mark, key)) for key in fw_registry.with_capability("bench")]
SIZE = (32, 32)  # stage 5 maps are 1x1 there: torch's training BN then needs batch >= 2
BATCH = 2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def small_peak(monkeypatch):
    """The peak matmul at 256 x 256, once: these tests check the mechanics, never the rate (read when a session
    starts, and handed to its measuring processes)."""
    monkeypatch.setattr(shared_spec.protocol, "PEAK_MATMUL", 256)
    monkeypatch.setattr(shared_spec.protocol, "PEAK_CONV", (1, 16, 8))
    monkeypatch.setattr(shared_spec.protocol, "PEAK_REPEATS", 1)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # the bench's own choice, whatever this shell says


def runner_module(key: str):
    pytest.importorskip(fw_registry.FRAMEWORKS[key].requires, reason=f"{key} is not installed")
    return fw_registry.part(key, "bench")


def tiny(**overrides) -> shared_spec.Spec:
    return shared_spec.load("googlenet", **{"input_size": SIZE, "num_classes": 10, **overrides})


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory, builtin_doc) -> shared_spec.Spec:
    """googlenet cut down to conv1 + maxpool1 + inception3a (from conv1's 64 channels) + head (fc from 256
    features), at 32x32, 10 classes: every kind of op the network has, about a tenth of its layers."""
    doc = copy.deepcopy(builtin_doc)
    variant = copy.deepcopy(doc["variants"]["googlenet"])
    for key in ("expected", "stages"):
        variant.pop(key, None)
    keep = ("conv1", "maxpool1", "inception3a", "avgpool", "flatten", "dropout", "fc")
    variant["layers"] = [layer for layer in variant["layers"] if layer["name"] in keep]
    variant["layers"][2]["in"] = 64
    variant["layers"][-1]["in"] = 256
    doc["variants"]["trimmed"] = variant
    path = tmp_path_factory.mktemp("spec") / "trimmed.json"
    path.write_text(json.dumps(doc))
    return shared_spec.load("trimmed", spec_file=path, input_size=SIZE, num_classes=10)


# --------------------------------------------------------------------------- framework access for the checks


def trainable(key: str, model) -> list[np.ndarray]:
    if key == "torch":
        return [p.detach().cpu().numpy().copy() for p in model.parameters()]
    if key == "tf":
        return [np.array(v.numpy()) for v in model.trainable_weights]
    return [p.data().asnumpy() for p in model.collect_params().values() if p.grad_req != "null"]


def running_means(key: str, model) -> list[np.ndarray]:
    if key == "torch":
        return [b.detach().cpu().numpy().copy() for name, b in model.named_buffers() if name.endswith("running_mean")]
    if key == "tf":
        return [np.array(v.numpy()) for v in model.non_trainable_weights if "mean" in v.path]
    return [p.data().asnumpy() for name, p in model.collect_params().items() if name.endswith("running_mean")]


def param_count(key: str, model) -> int:
    return sum(int(np.prod(w.shape)) for w in trainable(key, model))


def changed(before, after) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


# --------------------------------------------------------------------------- timing and the spec/hand ratio


def test_autorange_alternates_the_order_and_keeps_each_repeat():
    calls = []
    fns = {"spec": lambda: calls.append("spec"), "hand": lambda: calls.append("hand")}
    times = bench.autorange(fns, bench.Timing(min_repeats=4, warmup=1, budget_s=0))
    assert calls == ["spec", "hand"] + ["spec", "hand", "hand", "spec", "spec", "hand", "hand", "spec"]
    assert sorted(times) == ["hand", "spec"]
    assert all(len(values) == 4 and all(t >= 0 for t in values) for values in times.values())


def _fake_clock(monkeypatch, durations):
    """``timing``'s clock advanced by each call of the returned function by the next of ``durations``."""
    clock, durations = {"t": 0.0}, iter(durations)
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock["t"])

    def call():
        clock["t"] += next(durations)
    return call


def test_autorange_stops_as_soon_as_the_spread_settles(monkeypatch):
    call = _fake_clock(monkeypatch, [0.1] * 100)
    times = bench.autorange({"a": call}, bench.Timing(min_repeats=5, warmup=0, budget_s=100))
    assert len(times["a"]) == 5  # steady from the start: no call beyond the minimum


def test_autorange_goes_on_while_noisy_until_the_budget_ends(monkeypatch):
    call = _fake_clock(monkeypatch, [0.1, 0.3] * 100)
    times = bench.autorange({"a": call}, bench.Timing(min_repeats=5, warmup=0, budget_s=4.0))
    assert 19 <= len(times["a"]) <= 21  # 4 s of calls of 0.2 s on average, never settled
    assert timing.relative_iqr(times["a"]) > 0.05


def _timed_rows(spec_times, hand_times):
    def row(source, times):
        return {"framework": "tf", "variant": "googlenet", "batch": 1, "mode": "plain", "source": source,
                "forward": {"median_s": float(np.median(times)), "times_s": list(times)}}
    return [row("spec", spec_times), row("hand", hand_times)]


def test_ratio_pairs_calls_so_that_drift_cancels():
    """The machine slows down for good between the two calls of repeat 3: every other pair is 1.0, and
    so is their median; the two medians land on either side of the change (1.3)."""
    (ratio,) = session._ratios(_timed_rows(spec_times=[0.10, 0.10, 0.13, 0.13, 0.13],
                                         hand_times=[0.10, 0.10, 0.10, 0.13, 0.13]))
    assert ratio["forward_of_medians"] == pytest.approx(1.3)
    assert ratio["forward"] == pytest.approx(1.0) and ratio["within_limit"] is True


def test_ratio_reports_a_real_overhead():
    """A spec-built model 3% slower in every pair fails the limit, however noisy the machine."""
    rng = np.random.default_rng(0)
    hand = list(0.1 * (1 + rng.uniform(0, 0.3, size=25)))
    (ratio,) = session._ratios(_timed_rows([h * 1.03 for h in hand], hand))
    assert ratio["forward"] == pytest.approx(1.03)
    assert ratio["forward_spread"] == pytest.approx([1.03, 1.03])
    assert ratio["within_limit"] is False
    assert "train" not in ratio
    assert "1.030 [1.030, 1.030]" in bench.render_result({"rows": [], "frameworks": {}, "speedups": [],
                                                          "spec_vs_hand": [ratio]}, "table")


# --------------------------------------------------------------------------- runners


@pytest.mark.parametrize("source", ["spec", "hand"])
@pytest.mark.parametrize("key", KEYS)
def test_plain_runner_runs_eval_forward_and_a_training_step(key, source):
    _check_plain_runner(key, tiny(), source)


#: each framework's hand-written Inception v3 (``REFERENCES`` in impl_<key>/handwritten.py) and the parameters its
#: library publishes (Keras's: the trainable ones)
V3_REFERENCES = [pytest.param("torch", "inception-v3", 23_834_568, marks=pytest.mark.torch),
                 pytest.param("torch", "inception-v3-fid", 23_850_960, marks=pytest.mark.torch),
                 pytest.param("tf", "inception-v3-keras", 23_817_352, marks=pytest.mark.tf),
                 pytest.param("mxnet", "inception-v3-gluon", 23_834_568, marks=pytest.mark.mxnet)]


def v3_spec(variant: str) -> shared_spec.Spec:
    """75x75, the smallest input, where the network allows it; the model zoo's fixed 8x8 head pool needs 299."""
    return shared_spec.load(variant, **({} if variant == "inception-v3-gluon" else {"input_size": (75, 75)}))


@pytest.mark.parametrize(("key", "variant", "published"), V3_REFERENCES)
def test_inception_v3_handwritten_is_the_variants_network_and_runs(key, variant, published):
    """The reference bench pairs with the spec-built Inception v3 has the oracle's (and its library's) parameter
    count, and the plain runner runs it: forward, then a training step that moves weights and statistics."""
    mod = runner_module(key)
    spec = v3_spec(variant)
    assert variant in mod.HANDWRITTEN
    assert param_count(key, mod.handwritten(spec, device="cpu")) == shared_spec.analyze(spec).params == published
    _check_plain_runner(key, spec, "hand")


@pytest.mark.parametrize("key", KEYS)
def test_handwritten_refuses_a_variant_it_has_no_reference_for_in_one_line(key):
    mod = runner_module(key)
    assert "googlenet" in mod.HANDWRITTEN and "d2l" not in mod.HANDWRITTEN
    with pytest.raises(shared_spec.InputError) as info:
        mod.handwritten(shared_spec.load("d2l"), device="cpu")
    message = str(info.value)
    assert "no hand-written reference for variant 'd2l'" in message and "googlenet" in message
    assert len(message.splitlines()) == 1


def test_a_variant_without_a_hand_written_reference_has_spec_rows_and_a_note():
    """The session asks every framework for ``hand``; the measuring process keeps it only where the framework's
    ``HANDWRITTEN`` table has the variant, and says so in the result's notes."""
    from types import SimpleNamespace

    from googlenet_suite.bench import worker

    module = SimpleNamespace(HANDWRITTEN={"googlenet": None, "inception-v3-keras": None})
    job = worker.Measure("tf", shared_spec.load("inception-v3"), ("spec", "hand"), "plain", 1, "cpu", False,
                         worker.Threads(1), timing.Timing())
    assert worker._sources(module, job) == ("spec",)
    assert worker._notes(module, job) == ["tf has no hand-written inception-v3 (it has googlenet, "
                                          "inception-v3-keras): spec-built rows only"]
    keras_job = worker.Measure("tf", shared_spec.load("inception-v3-keras"), ("spec", "hand"), "plain", 1, "cpu",
                               False, worker.Threads(1), timing.Timing())
    assert worker._sources(module, keras_job) == ("spec", "hand") and worker._notes(module, keras_job) == []
    assert worker._sources(SimpleNamespace(), job) == ("spec",)  # onnxruntime: no HANDWRITTEN at all


def _check_plain_runner(key: str, spec: shared_spec.Spec, source: str) -> None:
    mod = runner_module(key)
    runner = mod.runner(spec, source=source, mode="plain", device="cpu", batch=BATCH, train=True)
    assert runner.device == "cpu" and runner.notes and isinstance(runner.notes, str)
    weights, stats = trainable(key, runner.model), running_means(key, runner.model)
    runner.forward()
    # eval mode: no update of anything, running statistics used and left alone
    assert not changed(weights, trainable(key, runner.model))
    assert not changed(stats, running_means(key, runner.model))
    runner.train_step()
    new_weights = trainable(key, runner.model)
    assert changed(weights, new_weights) and all(np.isfinite(w).all() for w in new_weights)
    assert changed(stats, running_means(key, runner.model))  # training mode: batch statistics
    assert runner.peak_gpu_bytes() is None


@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
def test_fast_runner_compiles_at_setup_and_runs(key, trimmed):
    mod = runner_module(key)
    sources = ["spec", "hand"] if key == "mxnet" else ["spec"]  # mxnet hybridizes in a second
    for source in sources:
        spec = tiny() if source == "hand" else trimmed
        runner = mod.runner(spec, source=source, mode="fast", device="cpu", batch=BATCH, train=True)
        assert runner.device == "cpu"
        expected = {"torch": "torch.compile", "tf": "tf.function (graph, no XLA)", "mxnet": "static_shape=True"}[key]
        assert expected in runner.notes
        weights = trainable(key, runner.model)
        runner.forward()
        runner.train_step()
        assert changed(weights, trainable(key, runner.model))
        assert runner.peak_gpu_bytes() is None


@pytest.mark.tf
def test_keras_fast_forward_is_the_frozen_graph_of_the_models_own_forward(trimmed):
    """The fast forward runs the model's graph with its variables frozen into constants: the same logits as the
    model's own eval-mode call, before any training step moves the weights."""
    mod = runner_module("tf")
    runner = mod.runner(trimmed, source="spec", mode="fast", device="cpu", batch=BATCH, train=False)
    assert "frozen" in runner.notes
    expected = runner.model(runner._x, training=False).numpy()
    actual = runner._predict(runner._x).numpy()
    scale = np.abs(expected).max()
    assert actual.shape == expected.shape == (BATCH, 10) and scale > 0
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("key", KEYS)
def test_bf16_runner_computes_in_bf16_and_reports_its_logits_against_fp32(key, trimmed, monkeypatch):
    """The bf16 path is the fast one computing in bfloat16: its logits differ from fp32's (so bf16 really ran) by
    about bf16's 8-bit mantissa, measured before the setup's training step moves the weights. torch.compile is
    left out here (an identity): compiling is test_fast_runner_compiles_at_setup_and_runs's."""
    mod = runner_module(key)
    if key == "torch":
        import torch

        monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)
    if not shared_spec.protocol.cpu_has_bf16():
        with pytest.raises(ValueError, match="no bf16 path on this device.*Received: mode='bf16'"):
            mod.runner(trimmed, source="spec", mode="bf16", device="cpu", batch=BATCH, train=False)
        pytest.skip("this CPU has no AVX512_BF16 or AMX: refusing bf16 is what there is to test")
    runner = mod.runner(trimmed, source="spec", mode="bf16", device="cpu", batch=BATCH, train=True)
    assert "bf16" in runner.notes or "bfloat16" in runner.notes
    precision = runner.precision
    assert set(precision) == {"max_abs_diff", "logit_scale", "relative"}
    assert precision["logit_scale"] > 0 and 1e-5 < precision["relative"] < 0.1, precision
    weights = trainable(key, runner.model)
    runner.forward()
    runner.train_step()
    assert changed(weights, trainable(key, runner.model))
    monkeypatch.setattr(mod, "cpu_has_bf16", lambda: False)  # a CPU without bf16 instructions
    with pytest.raises(ValueError, match="no bf16 path on this device"):
        mod.runner(trimmed, source="spec", mode="bf16", device="cpu", batch=BATCH, train=False)


@pytest.mark.mxnet
def test_mxnet_bf16_refuses_aux_heads(monkeypatch):
    mod = runner_module("mxnet")
    monkeypatch.setattr(mod, "cpu_has_bf16", lambda: True)  # the aux check, whatever this CPU has
    with pytest.raises(ValueError, match="no aux outputs.*Received: aux_logits=True"):
        mod.runner(tiny(aux_logits=True, input_size=(64, 64)), source="spec", mode="bf16", device="cpu", batch=BATCH,
                   train=False)


def test_bf16_rows_are_set_against_the_fast_rows():
    def row(mode, fwd, train, **extra):
        return {"framework": "torch", "variant": "googlenet", "batch": 8, "mode": mode, "source": "spec",
                "forward": {"median_s": fwd}, "train": {"median_s": train}, **extra}

    precision = {"max_abs_diff": 0.01, "logit_scale": 2.0, "relative": 0.005}
    rows = [row("plain", 0.4, 0.8), row("fast", 0.2, 0.4), row("bf16", 0.1, 0.5, bf16_vs_fp32=precision)]
    (entry,) = session._bf16(rows)
    assert entry["forward"] == pytest.approx(2.0) and entry["train"] == pytest.approx(0.8)
    assert entry["relative"] == 0.005 and entry["max_abs_diff"] == 0.01
    text = bench.render_result({"rows": [], "frameworks": {}, "speedups": [], "bf16": [entry], "spec_vs_hand": []},
                               "markdown")
    assert "| torch | googlenet | 8 | spec | 2.00x | 0.80x | 1.00e-02 / 2.00e+00 = 5.00e-03 |" in text
    assert session._bf16(rows[:2]) == [] and session._bf16(rows[::2]) == []  # no bf16 row, or no fast row to set it by


@pytest.mark.onnx
def test_onnx_runner_has_no_bf16_mode():
    mod = runner_module("onnx")
    assert "bf16" not in mod.MODES
    with pytest.raises(ValueError, match="fp32 graph only.*Received: mode='bf16'"):
        mod.runner(tiny(), source="spec", mode="bf16", device="cpu", batch=BATCH)


@pytest.mark.torch
def test_torch_runner_uses_every_core_unless_omp_num_threads_says_otherwise(monkeypatch):
    mod = runner_module("torch")
    import os

    import torch

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as MXNet leaves it when it is imported first
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        mod.runner(tiny(), source="spec", mode="plain", device="cpu", batch=1, train=False)
        assert torch.get_num_threads() == len(os.sched_getaffinity(0))
        torch.set_num_threads(1)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        mod.runner(tiny(), source="spec", mode="plain", device="cpu", batch=1, train=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


@pytest.mark.torch
def test_torch_compile_failure_is_an_error_not_a_fallback(monkeypatch, trimmed):
    mod = runner_module("torch")
    import torch

    def broken(model, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("inductor: no working C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(RuntimeError, match="torch.compile failed: RuntimeError: inductor: no working C"):
        mod.runner(trimmed, source="spec", mode="fast", device="cpu", batch=BATCH, train=False)


@pytest.mark.torch
def test_torch_runner_takes_given_weights_runs_uncompiled_and_returns_the_loss(monkeypatch, trimmed):
    """The GPU check's use: its reference weights in the model, channels_last + bf16 without torch.compile on a
    CPU rehearsal, and the training step's loss."""
    mod = runner_module("torch")
    import impl_torch
    import torch

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: pytest.fail("compiled=False compiled"))
    weights = impl_torch.export_weights(impl_torch.build(trimmed, device="cpu", seed=5))
    runner = mod.runner(trimmed, source="spec", mode="fast", device="cpu", batch=BATCH, train=False,
                        weights=weights, compiled=False)
    assert runner.notes == "channels_last"
    got = impl_torch.export_weights(runner.model)
    assert all(np.array_equal(got[key], value) for key, value in weights.items())
    loss = runner.train_step()
    assert float(loss) > 0 and np.isfinite(float(loss))
    assert not np.array_equal(impl_torch.export_weights(runner.model)["fc.weight"], weights["fc.weight"])


@pytest.mark.parametrize("key", ALL_KEYS)
def test_runner_rejects_bad_options(key):
    mod = runner_module(key)
    for options in ({"source": "torchvision"}, {"mode": "turbo"}, {"batch": 0}, {"device": "tpu"}):
        kwargs = {"source": "spec", "mode": "plain", "device": "cpu", "batch": 1, "train": False, **options}
        with pytest.raises(ValueError, match="Received"):
            mod.runner(tiny(), **kwargs)


@pytest.mark.parametrize("key", ALL_KEYS)
def test_gpu_without_a_gpu_is_a_value_error(key):
    mod = runner_module(key)
    try:
        mod.resolve_device("gpu")
    except ValueError as exc:
        assert "Received: device='gpu'" in str(exc)
        with pytest.raises(ValueError, match="Received"):
            mod.runner(tiny(), source="spec", mode="plain", device="gpu", batch=1, train=False)
        with pytest.raises(ValueError, match="Received"):
            mod.peak_gflops("gpu")
    else:
        pytest.skip("this machine has a GPU")


@pytest.mark.parametrize("key", ALL_KEYS)
def test_peak_is_a_positive_matmul_rate_and_bf16_only_where_the_hardware_has_it(key, monkeypatch):
    mod = runner_module(key)
    peak = mod.peak_gflops("cpu", "float32")
    assert isinstance(peak, float) and 0.1 < peak < 1e5  # GFLOP/s of one CPU, whatever it is
    if not shared_spec.protocol.cpu_has_bf16():
        assert mod.peak_gflops("cpu", "bfloat16") is None


def test_best_gflops_counts_two_n_cubed_flops_over_the_fastest_call():
    durations = iter([5.0, 0.5, 0.25, 1.0])  # the warm-up call, then three timed calls
    clock = {"t": 0.0}

    def fake_matmul():
        clock["t"] += next(durations)

    import time as time_module
    real = time_module.perf_counter
    time_module.perf_counter = lambda: clock["t"]
    try:
        rate = shared_spec.protocol.best_gflops(fake_matmul, n=1000, repeats=3)
    finally:
        time_module.perf_counter = real
    assert rate == pytest.approx(2 * 1000**3 / 0.25 / 1e9)


@pytest.mark.onnx
@pytest.mark.parametrize("mode", ["plain", "fast"])
def test_onnx_runner_runs_the_spec_graph_forward_only(mode):
    mod = runner_module("onnx")
    runner = mod.runner(tiny(), source="spec", mode=mode, device="cpu", batch=BATCH, train=True)
    assert runner.device == "cpu" and ("ORT_ENABLE_ALL" if mode == "fast" else "ORT_ENABLE_BASIC") in runner.notes
    runner.forward()
    with pytest.raises(NotImplementedError, match="inference only"):
        runner.train_step()
    with pytest.raises(ValueError, match="needs model_file"):
        mod.runner(tiny(), source="export", mode=mode, device="cpu", batch=BATCH)


@pytest.mark.cross
def test_cli_bench_onnx_rows_for_the_spec_graph_and_each_export(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    code = main(["bench", "googlenet", "--input-size", *map(str, SIZE), "--num-classes", "10", "--batch", str(BATCH),
                 "--repeats", "1", "--warmup", "0", "--mode", "plain", "--format", "json", "--exports",
                 "--frameworks", "onnx,torch"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    rows = {(r["framework"], r["source"]): r for r in data["rows"]}
    assert sorted(rows) == [("onnx", "export:torch"), ("onnx", "spec"), ("torch", "spec")]
    macs = shared_spec.analyze(tiny()).macs
    for (key, _), row in rows.items():
        assert "error" not in row, row
        assert row["forward"]["gflops"] == pytest.approx(2 * macs * row["forward"]["images_per_s"] / 1e9)
        limit = max(peak["float32"] for peak in data["peaks_gflops"].values())  # the machine's, not the framework's
        assert data["limit"]["float32"]["gflops"] == limit
        assert row["forward"]["limit_share"] == pytest.approx(row["forward"]["gflops"] / limit)
        assert ("train" in row) == (key == "torch")  # onnxruntime: forward only
    train = rows[("torch", "spec")]["train"]
    assert train["gflops"] == pytest.approx(2 * 3 * macs * train["images_per_s"] / 1e9)
    assert "| torch export |" in bench.render_result(data, "markdown")


# --------------------------------------------------------------------------- the hand-written models


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("overrides", [{}, {"num_classes": 10}, {"num_classes": 37, "in_channels": 1}])
def test_handwritten_has_the_oracles_parameter_count(key, overrides):
    mod = runner_module(key)
    spec = shared_spec.load("googlenet", **overrides)
    assert param_count(key, mod.handwritten(spec, device="cpu")) == shared_spec.analyze(spec).params
    if not overrides:
        assert shared_spec.analyze(spec).params == 6_624_904  # torchvision's num_params


@pytest.mark.parametrize("key", KEYS)
def test_handwritten_refuses_another_network(key):
    mod = runner_module(key)
    with pytest.raises(RuntimeError, match="not the same network"):
        mod.runner(tiny(aux_logits=True), source="hand", mode="plain", device="cpu", batch=1, train=False)


def _random_like(shape, fan_in: int, rng) -> np.ndarray:
    """He-scaled weights, BN gamma/beta/statistics in [0.5, 1.5], so that the logits are O(1) and a
    wrong layer, pad or pool shows."""
    if len(shape) > 1:
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)


@pytest.mark.torch
@pytest.mark.parametrize("size", [(32, 32), (45, 39)])
def test_torch_handwritten_computes_the_spec_models_function(size):
    mod = runner_module("torch")
    import torch

    import impl_torch

    spec = tiny(input_size=size)
    built, hand = impl_torch.build(spec, device="cpu", seed=0), mod.handwritten(spec, device="cpu")
    src, dst = built.state_dict(), hand.state_dict()
    assert [v.shape for v in src.values()] == [v.shape for v in dst.values()]
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for (name, value), target in zip(src.items(), dst.values()):
            if value.is_floating_point():
                value.copy_(torch.from_numpy(_random_like(tuple(value.shape), value[0].numel(), rng)))
            target.copy_(value)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, *spec.input_shape)).astype(np.float32))
    built.eval(), hand.eval()
    with torch.no_grad():
        expected, actual = built(x).numpy(), hand(x).numpy()
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * max(1.0, np.abs(expected).max()))


@pytest.mark.tf
@pytest.mark.parametrize("size", [(32, 32), (45, 39)])  # 45x39: maxpool1/2 pad explicitly, "same" elsewhere
def test_tf_handwritten_computes_the_spec_models_function(size):
    mod = runner_module("tf")
    import impl_tf

    spec = tiny(input_size=size)
    built, hand = impl_tf.build(spec, device="cpu", seed=0), mod.handwritten(spec, device="cpu")
    assert [w.shape for w in built.weights] == [w.shape for w in hand.weights]
    rng = np.random.default_rng(0)
    weights = [_random_like(tuple(w.shape), int(np.prod(w.shape[:-1])), rng) for w in built.weights]  # HWIO, (in, out)
    built.set_weights(weights)
    hand.set_weights(weights)
    x = np.random.default_rng(1).standard_normal((2, *spec.input_size, spec.in_channels)).astype(np.float32)
    expected, actual = built(x, training=False).numpy(), hand(x, training=False).numpy()
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * max(1.0, np.abs(expected).max()))


@pytest.mark.mxnet
@pytest.mark.parametrize("size", [(32, 32), (45, 39)])
def test_mxnet_handwritten_computes_the_spec_models_function(size):
    mod = runner_module("mxnet")
    import mxnet as mx

    import impl_mxnet

    spec = tiny(input_size=size)
    built, hand = impl_mxnet.build(spec, device="cpu", seed=0), mod.handwritten(spec, device="cpu")
    src, dst = list(impl_mxnet.named_parameters(built).values()), list(hand.collect_params().values())
    assert [p.shape for p in src] == [p.shape for p in dst]
    rng = np.random.default_rng(0)
    for a, b in zip(src, dst):
        value = mx.nd.array(_random_like(a.shape, int(np.prod(a.shape[1:])), rng))
        a.set_data(value)
        b.set_data(value)
    x = mx.nd.array(np.random.default_rng(1).standard_normal((2, *spec.input_shape)).astype(np.float32))
    expected, actual = built(x).asnumpy(), hand(x).asnumpy()
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * max(1.0, np.abs(expected).max()))


# --------------------------------------------------------------------------- the CLI


def _installed(within: tuple[str, ...] | None = None) -> list[str]:
    keys = []
    for key, module in FRAMEWORKS.items():
        if within is not None and key not in within:
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        keys.append(key)
    if not keys:
        pytest.skip("no framework is installed")
    return keys


#: the CLI's JSON and plot over two frameworks in the default run (each measured in a child process of its own;
#: Keras's is the slowest to start, and its runners are tested in this process above), over every installed one in
#: the matrix (tox -e matrix)
CLI_FRAMEWORKS = [pytest.param(("torch", "mxnet"), id="torch-mxnet"),
                  pytest.param(None, id="all", marks=pytest.mark.matrix)]


@pytest.mark.cross
@pytest.mark.slow
@pytest.mark.parametrize("within", CLI_FRAMEWORKS)
def test_cli_bench_json_and_plot(capsys, tmp_path, within):
    keys = _installed(within)
    png = tmp_path / "out.png"
    code = main(["bench", "googlenet", "--input-size", *map(str, SIZE), "--num-classes", "10", "--batch", str(BATCH),
                 "--repeats", "1", "--warmup", "0", "--mode", "plain", "--format", "json", "--handwritten",
                 "--frameworks", ",".join(keys), "--plot", str(png)])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["suite_version"] == shared_spec.__version__
    assert data["frameworks"] == {key: {"status": "ok"} for key in keys}
    rows = data["rows"]
    assert sorted((r["framework"], r["source"]) for r in rows) == sorted((k, s) for k in keys for s in ("spec", "hand"))
    for row in rows:
        assert "error" not in row, row
        assert row["variant"] == "googlenet" and row["batch"] == BATCH and row["mode"] == "plain"
        assert row["device"] == "cpu" and row["notes"] and row["setup_s"] >= 0
        for part, fields in (("forward", ("images_per_s", "latency_ms", "median_s", "iqr_s")),
                             ("train", ("images_per_s", "median_s", "iqr_s"))):
            assert all(isinstance(row[part][f], (int, float)) and row[part][f] >= 0 for f in fields), row[part]
            assert row[part]["images_per_s"] > 0 and row[part]["repeats"] == 1
            assert len(row[part]["times_s"]) == 1 and row[part]["times_s"][0] == row[part]["median_s"]
        assert row["forward"]["latency_ms"] == pytest.approx(row["forward"]["median_s"] * 1000)
        assert 0 < row["forward"]["limit_share"] and 0 < row["train"]["limit_share"]
        assert row["threads"] == {"intra": machine.cores(), "inter": 1, "wait": "PASSIVE"}
        assert isinstance(row["warnings"], list)
        assert row["peak_gpu_bytes"] is None
        assert isinstance(row["peak_rss_bytes"], int) and row["peak_rss_bytes"] > 0
    assert data["speedups"] == []  # plain only
    ratios = {r["framework"]: r for r in data["spec_vs_hand"]}
    assert sorted(ratios) == sorted(keys)
    for ratio in ratios.values():
        assert ratio["batch"] == BATCH and ratio["mode"] == "plain"
        assert ratio["forward"] > 0 and ratio["train"] > 0 and isinstance(ratio["within_limit"], bool)
        for part in ("forward", "train"):  # one repeat: one pair, whose ratio is also the medians' ratio
            assert ratio[f"{part}_spread"] == [ratio[part]] * 2
            assert ratio[f"{part}_of_medians"] == pytest.approx(ratio[part])
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(data["peaks_gflops"]) == sorted(keys) and all(p["float32"] > 0 for p in data["peaks_gflops"].values())
    table = bench.render_result(data, "table")
    assert "spec-built / hand-written" in table and "hand-written" in table and "% limit" in table


@pytest.mark.cross
@pytest.mark.parametrize("variant", ["inception-v3"])  # a variant outside the core: the matrix tier
def test_cli_bench_pairs_inception_v3_with_each_frameworks_own_reference(capsys, variant):
    """torch times its hand-written torchvision Inception3 beside the spec-built model; Keras has only
    ``keras.applications.InceptionV3``, which is ``inception-v3-keras``'s network, not this one: spec rows and a
    note."""
    keys = [key for key in ("torch", "tf") if key in _installed()]
    if "torch" not in keys:
        pytest.skip("torch is not installed")
    code = main(["bench", variant, "--input-size", "75", "75", "--batch", str(BATCH), "--repeats", "1", "--warmup",
                 "0", "--time-budget", "0", "--mode", "plain", "--format", "json", "--handwritten",
                 "--frameworks", ",".join(keys)])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    rows = data["rows"]
    assert sorted((r["framework"], r["source"]) for r in rows) == sorted(
        [("torch", "spec"), ("torch", "hand")] + [("tf", "spec")] * ("tf" in keys))
    assert all("error" not in r and r["variant"] == variant and r["forward"]["images_per_s"] > 0 for r in rows)
    (ratio,) = data["spec_vs_hand"]
    assert ratio["framework"] == "torch" and ratio["forward"] > 0 and ratio["train"] > 0
    if "tf" in keys:
        assert data["notes"] == ["tf has no hand-written inception-v3 (it has googlenet, inception-v3-keras): "
                                 "spec-built rows only"]
        assert "spec-built rows only" in bench.render_result(data, "markdown")


@pytest.mark.parametrize("bad", [["--batch", "0"], ["--batch", "2", "0"], ["--plot", "x.jpg"], ["--repeats", "0"],
                                 ["--threads", "0"], ["--inter-threads", "0"], ["--time-budget", "-1"]])
def test_cli_bench_bad_arguments_exit_2_and_write_nothing(capsys, tmp_path, monkeypatch, bad):
    monkeypatch.chdir(tmp_path)
    code = main(["bench", "googlenet", "--output", "out.json", "--plot", "out.png", *bad])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the machine, the limit and the flags


def test_theoretical_peak_from_the_vector_flags_and_the_clock():
    estimate = machine.theoretical({"avx512f", "fma", "avx512_bf16"}, 2600.0, 2)
    assert estimate.fp32_gflops == pytest.approx(2 * 2.6 * 16 * 2 * 2)  # cores x GHz x lanes x FMA x units
    assert estimate.bf16_gflops == pytest.approx(2 * estimate.fp32_gflops)
    assert "avx512f" in estimate.how and "assumed" in estimate.how
    assert machine.theoretical({"avx2", "fma"}, 3000.0, 1).fp32_gflops == pytest.approx(3.0 * 8 * 2 * 2)
    assert machine.theoretical({"avx2", "fma"}, 3000.0, 1).bf16_gflops is None
    assert machine.theoretical({"amx_bf16", "avx512f"}, 1000.0, 1).bf16_gflops == pytest.approx(1024.0)
    assert machine.theoretical({"avx2"}, None, 2) is None and machine.theoretical(set(), 2600.0, 2) is None


def test_the_limit_is_the_best_framework_and_a_share_above_it_says_the_limit_is_wrong():
    limit = session._limit({"torch": {"float32": 400.0, "bfloat16": 800.0}, "onnx": {"float32": 450.0,
                                                                                     "bfloat16": None}})
    assert limit == {"float32": {"gflops": 450.0, "framework": "onnx"},
                     "bfloat16": {"gflops": 800.0, "framework": "torch"}}
    described = {"estimate": {"float32": 332.0, "bfloat16": 900.0, "how": "..."}}
    (warning,) = session._machine_warnings(limit, described)
    assert warning.startswith("float32: onnx reached 450") and "the estimate is wrong" in warning
    busy = {"onnx": {"float32": 450.0, "machine": {"others_cores": 1.2, "cores": 2}},
            "torch": {"float32": 400.0, "machine": {"others_cores": 0.0, "cores": 2}}}
    (warning, _) = session._machine_warnings(limit, described, busy)
    assert warning.startswith("onnx's peak was measured while others used 1.2 of 2 cores: it is too low")
    row = _flagged_row(others=0.0, spread=0.01)
    row["forward"]["gflops"] = 500.0
    session._share(row, limit)
    assert row["forward"]["limit_share"] == pytest.approx(500 / 450)
    assert session._warnings(row) == ["forward: 111% of the limit: the limit is wrong"]


def _flagged_row(*, others, spread, load=0.5):
    reading = {"others_cores": others, "cores": 2, "loadavg": [load, load], "wall_s": 1.0, "own_cpu_s": 2.0}
    return {"framework": "torch", "mode": "fast", "threads": {"intra": 2, "inter": 1},
            "forward": {"spread": spread, "repeats": 10, "gflops": 1.0, "machine": reading}}


def test_a_row_is_flagged_for_busy_cores_load_or_spread_and_only_then():
    assert session._warnings(_flagged_row(others=0.1, spread=0.04)) == []
    assert session._warnings(_flagged_row(others=1.0, spread=0.04)) == ["forward: others used 1.0 of 2 cores"]
    assert session._warnings(_flagged_row(others=0.0, spread=0.3)) == ["forward: spread 30% after 10 calls"]
    assert session._warnings(_flagged_row(others=0.0, spread=0.0, load=4.0)) == []  # the direct reading wins
    assert session._warnings(_flagged_row(others=None, spread=0.0, load=4.0)) == ["forward: load average 4.0 before"]
    assert session._warnings(_flagged_row(others=None, spread=0.0)) == []  # no /proc/stat, and a low load


def test_the_window_sees_a_process_that_spins():
    if not os.path.exists("/proc/stat") or not hasattr(os, "sched_getaffinity"):
        pytest.skip("no /proc/stat here")
    with _spinner(seconds=10):
        import time
        time.sleep(1.0)  # let it start
        with machine.Window() as window:
            time.sleep(1.5)
    reading = window.reading()
    assert reading["others_cores"] > 0.5 and reading["own_cpu_s"] < 0.5
    assert len(reading["loadavg"]) == 2 and reading["cores"] == machine.cores()


class _spinner:
    """A process spinning on this process's first core, bounded in time and always killed."""

    def __init__(self, seconds: float):
        core = min(os.sched_getaffinity(0))
        code = (f"import os, time\nos.sched_setaffinity(0, {{{core}}})\nend = time.time() + {seconds}\n"
                f"while time.time() < end:\n    pass\n")
        self._command = [sys.executable, "-c", code]

    def __enter__(self):
        self._process = subprocess.Popen(self._command)
        return self

    def __exit__(self, *exc):
        self._process.kill()
        self._process.wait()


# --------------------------------------------------------------------------- the proof: noise flagged, memory own


QUICK = bench.Timing(min_repeats=5, warmup=1, budget_s=0.5)


def _bench(keys, **options):
    spec = shared_spec.load("d2l", input_size=SIZE, num_classes=10)
    return bench.run([spec], keys, batches=[BATCH], modes=["plain"], device="cpu", train=True, timing=QUICK,
                     **options)


@pytest.mark.cross
def test_a_busy_core_is_flagged_memory_is_each_frameworks_own_and_every_row_has_its_threads():
    """torch then onnxruntime on a quiet(er) machine, then onnxruntime then torch while a process spins on one
    core: every busy row is within 2x of its quiet figure or flagged (and the spinner is seen), each framework's
    peak RSS is the same whichever ran first (onnxruntime's below torch's, though it ran after it), and every
    row says its threads."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    quiet = _bench(["torch", "onnx"])
    with _spinner(seconds=240):
        busy = _bench(["onnx", "torch"])
    rows = {}
    for name, result in (("quiet", quiet), ("busy", busy)):
        assert [r["framework"] for r in result["rows"]] == (["torch", "onnx"] if name == "quiet" else ["onnx", "torch"])
        for row in result["rows"]:
            assert "error" not in row, row
            assert row["threads"] == {"intra": machine.cores(), "inter": 1, "wait": "PASSIVE"}
            rows[name, row["framework"]] = row
    for key in ("torch", "onnx"):
        before, after = rows["quiet", key], rows["busy", key]
        for part in ("forward", "train"):
            if part in after:
                slower = after[part]["median_s"] / before[part]["median_s"]
                assert slower <= 2 or any(w.startswith(part) for w in after["warnings"]), (key, part, slower)
                assert after[part]["machine"]["others_cores"] > 0.5  # the spinner, at least, was seen
        assert 0.8 < after["peak_rss_bytes"] / before["peak_rss_bytes"] < 1.25, key
    assert rows["quiet", "onnx"]["peak_rss_bytes"] < rows["quiet", "torch"]["peak_rss_bytes"]
    text = bench.render_result(busy, "markdown")
    assert "others used" in text and "rows flagged" in text


@pytest.mark.onnx
def test_threads_option_sets_every_rows_threads():
    pytest.importorskip("onnxruntime")
    result = _bench(["onnx"], threads=1, inter_threads=2)
    (row,) = result["rows"]
    assert row["threads"] == result["threads"] == {"intra": 1, "inter": 2, "wait": "PASSIVE"}
    assert row["process"]["wall_s"] > 0 and row["process"]["cpu_s"] > 0  # its own process's life, compile included
    assert "| 1/2 |" in bench.render_result(result, "markdown")
