"""Every registered framework is the same network: same weights in, same numbers out (fp32, 1e-4).

Parametrized over ``googlenet_suite.frameworks.FRAMEWORKS``: a framework gets these tests by being registered
(PyTorch, Keras, MXNet Gluon and the ONNX builder run by onnxruntime today), and one that is not installed
drops out of the comparison or skips with the reason.

- Weights start in each framework in turn, go through the neutral export, and are imported into all the
  others. BN statistics are randomised after export so that the BN mapping (eps, gamma/beta, running
  statistics) is exercised for real. Logits and every layer agree within 1e-4.
- A framework that cannot train (the registry's capabilities; ONNX today) is also run with the harness's own
  weights (``harness.reference_weights``: seeded in the reference, the first framework that can train, with BN
  statistics calibrated from data as ``compare`` makes them, so activations are O(1)), aux heads off and on,
  against the reference: logits within 1e-4, inner layers within 1e-4 relative to the layer's scale above 1,
  as the harness judges them. A framework that trains meets data-like statistics in its training step
  (test_cross_training.py) and is left out here for time (the suite is held to 300 s on two cores).
- The two ops whose ONNX definition differs from PyTorch's in form (LRN's alpha, adaptive pooling), numerically.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

import shared_spec
from googlenet_suite import frameworks, harness

pytestmark = pytest.mark.cross

TOL = 1e-4
KEYS = list(frameworks.FRAMEWORKS)
VARIANTS = shared_spec.list_variants(shared_spec.BUILTIN_SPEC)  # GoogLeNet (Inception v3: test_inception_v3)
# the harness's weights: every variant with aux heads off, and on where it has them
CASES = [(v, False) for v in VARIANTS] + [(v, True) for v in VARIANTS if shared_spec.load(v).has_aux]
#: the harness's reference where every framework is installed: the first registered one that can train
#: (BatchNorm calibration is a training forward)
REFERENCE = frameworks.with_capability("train")[0]


@pytest.fixture(scope="module", autouse=True)
def one_thread(installed):
    """Two CPU cores are shared with other test runs: one onnxruntime thread per session (onnxruntime takes
    every core otherwise; torch and MXNet follow OMP_NUM_THREADS, which conftest sets per worker)."""
    if "onnx" not in installed:
        yield
        return
    from impl_onnx import api

    saved, api.THREADS = api.THREADS, 1
    yield
    api.THREADS = saved


def model_for(cache: dict, mod, key: str, spec: shared_spec.Spec):
    """One model per (framework, spec) in this module, reused with different imported weights."""
    cache_key = ("model", key, spec.variant, tuple(sorted(spec.overrides.items())))
    if cache_key not in cache:
        cache[cache_key] = mod.build(spec, device="cpu", seed=1)
    return cache[cache_key]


def randomise_bn(weights, seed=0):
    """Non-trivial BN parameters and statistics, so a wrong eps or mapping shows."""
    rng = np.random.default_rng(seed)
    out = dict(weights)
    for key, value in weights.items():
        if key.endswith(".bn.gamma"):
            out[key] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
        elif key.endswith(".bn.beta") or key.endswith(".bn.running_mean"):
            out[key] = rng.normal(0, 0.1, value.shape).astype(np.float32)
        elif key.endswith(".bn.running_var"):
            out[key] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
    return out


def max_diff(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.max(np.abs(a - b)))


def two_or_skip(installed: dict) -> list[str]:
    if len(installed) < 2:
        pytest.skip(f"needs at least two frameworks, have {list(installed)}")
    return list(installed)


# --------------------------------------------------------------------------- weights made in each framework


@pytest.mark.parametrize("source", KEYS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_agree_from_each_framework(variant, source, builder, installed, cache, input_batch):
    """Initialise in `source`, export, import into every framework: eval logits agree pairwise."""
    src = builder(source)
    two_or_skip(installed)
    spec = shared_spec.load(variant)
    weights = randomise_bn(src.export_weights(src.build(spec, device="cpu", seed=7)), seed=3)
    x = input_batch(spec)
    logits = {}
    for key, mod in installed.items():
        model = model_for(cache, mod, key, spec)
        mod.import_weights(model, weights)
        logits[key] = mod.forward(model, x, training=False)
    scale = float(np.abs(logits[source]).max())
    assert scale > 1e-2, f"{variant}: logits of {scale:.1e} would make a 1e-4 comparison vacuous"
    for a, b in itertools.permutations(logits, 2):
        assert max_diff(logits[a], logits[b]) <= TOL, f"{variant}: {a} vs {b} from {source} weights"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_layer_agrees(variant, installed, cache, input_batch):
    """Every named layer's activation agrees; on failure the first diverging layer is named."""
    available = two_or_skip(installed)
    overrides = {"aux_logits": True} if shared_spec.load(variant).has_aux else {}
    spec = shared_spec.load(variant, **overrides)
    first = available[0]
    weights = randomise_bn(installed[first].export_weights(model_for(cache, installed[first], first, spec)), seed=5)
    x = input_batch(spec, seed=1)
    acts = {}
    for key in available:
        mod = installed[key]
        model = model_for(cache, mod, key, spec)
        mod.import_weights(model, weights)
        acts[key] = mod.layer_outputs(model, x)
    names = [layer.name for layer in spec.walk()]
    for key in available:
        assert list(acts[key]) == names, f"{key}: layers {list(acts[key])[:5]}... are not the spec's, in its order"
    for key in available[1:]:
        for name in names:
            diff = max_diff(acts[key][name], acts[first][name])
            assert diff <= TOL, f"{variant}: {key} first diverges from {first} at {name} ({diff:.2e})"


# --------------------------------------------------------------------------- the harness's weights


@dataclass(frozen=True, slots=True)
class HarnessCase:
    spec: shared_spec.Spec
    reference: str
    weights: dict
    x: np.ndarray
    logits: np.ndarray
    layers: dict


@pytest.fixture(scope="module", params=CASES, ids=[f"{v}{'-aux' if a else ''}" for v, a in CASES])
def case(request, installed, cache, input_batch) -> HarnessCase:
    """The harness's weights for one case, and the reference's outputs with them, made once per case."""
    variant, aux = request.param
    reference = next((key for key in installed if frameworks.FRAMEWORKS[key].can("train")), None)
    if reference is None:
        pytest.skip("no installed framework can train (BatchNorm calibration is a training forward)")
    spec = shared_spec.load(variant, **({"aux_logits": True} if aux else {}))
    weights = harness.reference_weights(spec, reference, seed=3)
    mod = installed[reference]
    model = model_for(cache, mod, reference, spec)
    mod.import_weights(model, weights)
    x = input_batch(spec, seed=1)
    return HarnessCase(spec, reference, weights, x, mod.forward(model, x), mod.layer_outputs(model, x))


def against_reference(case: HarnessCase, key: str, builder, cache):
    """``key``'s model of the case's spec with the harness's weights."""
    mod = builder(key)
    model = model_for(cache, mod, key, case.spec)
    mod.import_weights(model, case.weights)
    return mod, model


INFERENCE_ONLY = [pytest.param(key, marks=getattr(pytest.mark, key))
                  for key in KEYS if not frameworks.FRAMEWORKS[key].can("train")]


@getattr(pytest.mark, REFERENCE)
@pytest.mark.parametrize("key", INFERENCE_ONLY)
def test_harness_weights_logits_agree(case, key, builder, cache):
    mod, model = against_reference(case, key, builder, cache)
    spec, ref = case.spec, case.logits
    scale = float(np.abs(ref).max())
    assert scale > 1e-2, f"{spec.variant}: logits of {scale:.1e} would make a 1e-4 comparison vacuous"
    diff = max_diff(mod.forward(model, case.x), ref)
    print(f"{spec.variant} aux={spec.aux_logits} {key}: logits max abs diff {diff:.2e} (scale {scale:.2f})")
    assert diff <= TOL, f"{spec.variant}: {key} logits differ from {case.reference}'s by {diff:.2e}"


@getattr(pytest.mark, REFERENCE)
@pytest.mark.parametrize("key", INFERENCE_ONLY)
def test_harness_weights_every_layer_agrees(case, key, builder, cache):
    mod, model = against_reference(case, key, builder, cache)
    spec, ref = case.spec, case.layers
    got = mod.layer_outputs(model, case.x)
    assert list(got) == list(ref)
    worst = (0.0, None, 0.0)
    for name in ref:
        diff = max_diff(got[name], ref[name])
        scale = float(np.abs(ref[name]).max())
        assert diff <= TOL * max(1.0, scale), \
            f"{spec.variant}: {key} first diverges from {case.reference} at {name} ({diff:.2e})"
        worst = max(worst, (diff / max(1.0, scale), name, diff), key=lambda t: t[0])
    print(f"{spec.variant} aux={spec.aux_logits} {key}: worst layer {worst[1]}: {worst[2]:.2e} abs, "
          f"{worst[0]:.2e} of its scale")


# --------------------------------------------------------------------------- ONNX's ops against PyTorch's


@pytest.mark.onnx
@pytest.mark.torch
def test_lrn_matches_torch(builder):
    """ONNX LRN's alpha/size is PyTorch's: numerically, against torch.nn.LocalResponseNorm."""
    for key in ("onnx", "torch"):
        builder(key)
    import torch
    from impl_onnx import builder as B

    from test_onnx_builder import run_single

    layer = shared_spec.LRN("lrn", "n", 5, 1e-2, 0.75, 2.0)
    # one op's own input (8 channels for a size-5 window), scaled so that the alpha term matters
    x = np.random.default_rng(4).standard_normal((2, 8, 5, 5)).astype(np.float32) * 3
    got = run_single(lambda g, i: B.lrn(g, layer, i, (8, 5, 5)), x)
    ref = torch.nn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


@pytest.mark.onnx
@pytest.mark.torch
@pytest.mark.parametrize("size", [14, 5, 3])
def test_adaptive_pool_matches_torch(size, builder):
    for key in ("onnx", "torch"):
        builder(key)
    import torch
    from impl_onnx import builder as B

    from test_onnx_builder import run_single

    layer = shared_spec.AdaptiveAvgPool("adaptive_avgpool", "a", (4, 4))
    # one op's own input: maps larger, smaller and not a multiple of the 4x4 output
    x = np.random.default_rng(2).standard_normal((2, 3, size, size)).astype(np.float32)
    got = run_single(lambda g, i: B.adaptive_avgpool(g, layer, i, (3, size, size)), x)
    ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), (4, 4)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
