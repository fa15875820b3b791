"""Training semantics agree: one SGD step from the same weights and batch.

Loss, gradient with respect to the input, and every weight after the step agree
within 1e-4 where fp32 itself allows it; where BatchNorm over few elements puts
PyTorch's own fp32 step more than 1e-4 from its fp64 step, every framework must
be as close to that fp64 reference as PyTorch's fp32 step is.

BatchNorm's running variance: PyTorch updates it with the unbiased batch variance.
The Keras builder maps that (a BatchNormalization subclass); MXNet's fused
BatchNorm operator uses the biased variance and cannot be mapped. That one
divergence is named here and its size pinned exactly: per channel,
(running_var - (1 - m) * old) differs by the factor n / (n - 1), n = N * H * W. """

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import shared_spec
from googlenet_suite import frameworks

from test_cross_equivalence import max_diff, randomise_bn

pytestmark = pytest.mark.cross

TOL = 1e-4
# Well-conditioned steps: the three agree within 1e-4 (sizes kept small for the 2-core CI machine).
STRICT = {
    "googlenet": {"aux_logits": True, "dropout": 0.0, "input_size": (64, 64)},
    "googlenet-paper": {"aux_logits": True, "dropout": 0.0},
    "d2l": {"input_size": (64, 64)},
    "gluon-tutorial": {"dropout": 0.0},
}
# BatchNorm over few elements (2 images x 2x2 maps in bn-notebook's last stage) amplifies fp32
# rounding in the backward pass beyond 1e-4 in *every* framework: PyTorch's own fp32 step differs
# from its fp64 step by more than 1e-4 here. For these, each framework's fp32 step must be as close
# to the fp64 reference as PyTorch's own fp32 step is (within a factor FLOOR_FACTOR).
NOISY = {
    "cifar": {"dropout": 0.0},
    "bn-notebook": {},
    "googlenet": {"aux_logits": True, "dropout": 0.0, "input_size": (96, 96)},
}
FLOOR_FACTOR = 4.0


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# Measured on an AMD EPYC without AVX-512 (2026-12-02; these steps agree on the AVX-512 machines CI ran on
# before): MXNet's oneDNN step for googlenet at 64x64 is 4.7e-3 from PyTorch's fp64 step in the input
# gradient while PyTorch's and Keras's fp32 steps are within 4e-5 of it, and in bn-notebook Keras's input
# gradient is 5.2x PyTorch's own fp32 noise floor (limit 4x). oneDNN picks other kernels without AVX-512
# (MXNet logs "MKLDNN Pooling: training with prop_kind is forward_scoring"). Expected failures there, named,
# until the kernel paths are pinned down; README "Known cross-framework divergences" says the same.
NO_AVX512 = "avx512f" not in _cpu_flags()
CPU_KERNELS = pytest.mark.xfail(NO_AVX512, strict=False, reason="oneDNN kernels without AVX-512: MXNet's (googlenet) "
                                "and Keras's (bn-notebook) training steps measured beyond the limits on this CPU")
# What cannot be mapped, by framework: running_var is updated with the biased batch variance.
BIASED_RUNNING_VAR = {"mxnet"}
CASES = {**NOISY, **STRICT}


@pytest.fixture
def problem(installed, input_batch):
    """``problem(variant, overrides, seed=11, randomise=False)``: (trainers, spec, weights, x, y) for one step,
    ``trainers`` the installed frameworks that can train (key -> builder package), at least two."""
    trainers = {key: mod for key, mod in installed.items() if frameworks.FRAMEWORKS[key].can("train")}
    if len(trainers) < 2:
        pytest.skip(f"needs at least two frameworks that train, have {list(trainers)}")

    def make(variant, overrides, seed=11, randomise=False):
        spec = shared_spec.load(variant, **overrides)
        first = next(iter(trainers.values()))
        weights = first.export_weights(first.build(spec, device="cpu", seed=seed))
        if randomise:
            weights = randomise_bn(weights, seed=seed)
        x = input_batch(spec, 2, seed=seed)
        y = np.arange(2) % spec.num_classes
        return trainers, spec, weights, x, y

    return make


def _steps(trainers, spec, weights, x, y):
    """One SGD step from the same weights and batch in each framework."""
    out = {}
    for key, mod in trainers.items():
        model = mod.build(spec, device="cpu", seed=0)
        mod.import_weights(model, weights)
        out[key] = mod.train_step(model, x, y, lr=0.01)
    return out


def _step_all(problem, variant, overrides, seed=11, randomise=False):
    trainers, spec, weights, x, y = problem(variant, overrides, seed, randomise)
    return spec, weights, _steps(trainers, spec, weights, x, y)


def _weight_diff(a, b, keys=("torch", "tf")):
    skip = any(k in BIASED_RUNNING_VAR for k in keys)
    return max(max_diff(a[k], b[k]) for k in a if not (skip and k.endswith(".bn.running_var")))


@pytest.mark.parametrize("variant", [pytest.param(v, marks=CPU_KERNELS) if v == "googlenet" else v for v in STRICT])
def test_one_sgd_step_agrees(variant, problem):
    spec, before, out = _step_all(problem, variant, STRICT[variant])
    keys = list(out)
    ref = out[keys[0]]
    for key in keys[1:]:
        res = out[key]
        assert abs(res["loss"] - ref["loss"]) <= TOL, f"{variant}: loss {key} {res['loss']} vs {ref['loss']}"
        assert max_diff(res["input_grad"], ref["input_grad"]) <= TOL, f"{variant}: input grad {key}"
        for name, value in ref["weights"].items():
            if name.endswith(".bn.running_var") and key in BIASED_RUNNING_VAR:
                continue  # pinned separately below
            diff = max_diff(res["weights"][name], value)
            assert diff <= TOL, f"{variant}: {key} weight {name} after one step differs by {diff:.2e}"
    # the step really changed the weights
    changed = [k for k, v in ref["weights"].items() if not k.endswith("running_var")
               and max_diff(v, before[k]) > 0]
    assert len(changed) > len(before) // 2


def _torch_fp64_step(impl, spec, weights, x, y, lr=0.01):
    """The same step in float64 with PyTorch (``impl``: impl_torch): the reference that fp32 rounding is
    measured against."""
    import torch
    import torch.nn.functional as F

    model = impl.build(spec, device="cpu", seed=0)
    impl.import_weights(model, weights)
    model.double().train()
    xt = torch.from_numpy(x).double().requires_grad_(True)
    yt = torch.from_numpy(y.astype(np.int64))
    out = model(xt)
    main, *aux = out if isinstance(out, tuple) else (out,)
    loss = F.cross_entropy(main, yt)
    for head, logits in zip(spec.aux_heads, aux):
        loss = loss + head.loss_weight * F.cross_entropy(logits, yt)
    loss.backward()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(param.grad, alpha=-lr)
    exported = impl.export_weights(model.float())
    return {"loss": float(loss.detach()), "input_grad": xt.grad.numpy(), "weights": exported}


@pytest.mark.parametrize("variant", [pytest.param(v, marks=CPU_KERNELS) if v == "bn-notebook" else v for v in NOISY])
def test_ill_conditioned_step_is_at_the_fp32_noise_floor(variant, problem):
    trainers, spec, weights, x, y = problem(variant, NOISY[variant])
    if "torch" not in trainers:
        pytest.skip("the fp64 reference uses PyTorch")
    exact = _torch_fp64_step(trainers["torch"], spec, weights, x, y)
    out = _steps(trainers, spec, weights, x, y)
    floor_w = _weight_diff(out["torch"]["weights"], exact["weights"])
    floor_g = max_diff(out["torch"]["input_grad"], exact["input_grad"])
    floor_loss = max(TOL, abs(out["torch"]["loss"] - exact["loss"]))
    assert floor_w > TOL, f"{variant} is well-conditioned ({floor_w:.1e}): move it to STRICT"
    for key in trainers:
        assert abs(out[key]["loss"] - exact["loss"]) <= FLOOR_FACTOR * floor_loss, key
        assert _weight_diff(out[key]["weights"], exact["weights"], ("torch", key)) <= FLOOR_FACTOR * floor_w, key
        assert max_diff(out[key]["input_grad"], exact["input_grad"]) <= FLOOR_FACTOR * floor_g, key


@pytest.mark.parametrize("variant", ["googlenet", "cifar"])
def test_bn_running_variance_mapped_or_exactly_bessel(variant, problem):
    spec, before, out = _step_all(problem, variant, CASES[variant], randomise=True)
    if "torch" not in out or len(out) < 2:
        pytest.skip("needs torch and another framework")
    report = shared_spec.analyze(spec)
    for key in out:
        if key == "torch":
            continue
        checked = 0
        for layer in spec.walk():
            if not isinstance(layer, shared_spec.Conv) or layer.norm is None:
                continue
            name = f"{layer.name}.bn.running_var"
            m = layer.norm.momentum
            _, h, w = report.layer(layer.name).out_shape
            n = 2 * h * w
            old = before[name]
            torch_new = out["torch"]["weights"][name] - (1 - m) * old
            other_new = out[key]["weights"][name] - (1 - m) * old
            mask = np.abs(other_new) > 1e-3
            ratio = torch_new[mask] / other_new[mask]
            if n > 1:
                expected = n / (n - 1) if key in BIASED_RUNNING_VAR else 1.0
                np.testing.assert_allclose(ratio, expected, rtol=2e-3,
                                           err_msg=f"{key} {name}: running_var update ratio to PyTorch's")
                checked += 1
        assert checked > 10
