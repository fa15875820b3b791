"""The three builders are the same network: same weights in, same numbers out (fp32, 1e-4).

Weights start in each framework in turn, go through the neutral export, and are
imported into the other two. BN statistics are randomised after export so that
the BN mapping (eps, gamma/beta, running statistics) is exercised for real.
"""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest

import shared_spec

pytestmark = pytest.mark.cross

TOL = 1e-4
KEYS = ("torch", "tf", "mxnet")
MODULES = {"torch": ("torch", "impl_torch"), "tf": ("keras", "impl_tf"), "mxnet": ("mxnet", "impl_mxnet")}
VARIANTS = shared_spec.list_variants(shared_spec.BUILTIN_SPEC)  # GoogLeNet (Inception v3: test_inception_v3)


def _module(key):
    framework, impl = MODULES[key]
    pytest.importorskip(framework, reason=f"{key} is not installed")
    return importlib.import_module(impl)


_MODELS: dict = {}


def model_for(key, variant, **overrides):
    """One model per (framework, variant, overrides), reused with different imported weights."""
    cache_key = (key, variant, tuple(sorted(overrides.items())))
    if cache_key not in _MODELS:
        spec = shared_spec.load(variant, **overrides)
        _MODELS[cache_key] = _module(key).build(spec, device="cpu", seed=1)
    return _MODELS[cache_key]


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


def batch(spec, n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *spec.input_shape)).astype(np.float32)


def max_diff(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.max(np.abs(a - b)))


@pytest.mark.parametrize("source", KEYS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_agree_from_each_framework(variant, source):
    """Initialise in `source`, export, import into every framework: eval logits agree pairwise."""
    src = _module(source)
    spec = shared_spec.load(variant)
    weights = randomise_bn(src.export_weights(src.build(spec, device="cpu", seed=7)), seed=3)
    x = batch(spec)
    logits = {}
    for key in KEYS:
        try:
            mod = _module(key)
        except pytest.skip.Exception:
            continue
        model = model_for(key, variant)
        mod.import_weights(model, weights)
        logits[key] = mod.forward(model, x, training=False)
    if len(logits) < 2:
        pytest.skip("needs at least two frameworks")
    scale = float(np.abs(logits[source if source in logits else next(iter(logits))]).max())
    assert scale > 1e-2, f"{variant}: logits of {scale:.1e} would make a 1e-4 comparison vacuous"
    for a, b in itertools.permutations(logits, 2):
        assert max_diff(logits[a], logits[b]) <= TOL, f"{variant}: {a} vs {b} from {source} weights"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_layer_agrees(variant):
    """Every named layer's activation agrees; on failure the first diverging layer is named."""
    available = [k for k in KEYS if _try(k)]
    if len(available) < 2:
        pytest.skip("needs at least two frameworks")
    overrides = {"aux_logits": True} if shared_spec.load(variant).has_aux else {}
    spec = shared_spec.load(variant, **overrides)
    ref = _module(available[0])
    weights = randomise_bn(ref.export_weights(model_for(available[0], variant, **overrides)), seed=5)
    x = batch(spec, seed=1)
    acts = {}
    for key in available:
        mod = _module(key)
        model = model_for(key, variant, **overrides)
        mod.import_weights(model, weights)
        acts[key] = mod.layer_outputs(model, x)
    names = [layer.name for layer in spec.walk()]
    for key in available[1:]:
        assert set(acts[key]) >= set(names), f"{key} misses layers {sorted(set(names) - set(acts[key]))[:5]}"
        for name in names:
            diff = max_diff(acts[key][name], acts[available[0]][name])
            assert diff <= TOL, f"{variant}: {key} first diverges from {available[0]} at {name} ({diff:.2e})"


def _try(key):
    try:
        _module(key)
        return True
    except pytest.skip.Exception:
        return False


def available_or_skip(n=2):
    keys = [k for k in KEYS if _try(k)]
    if len(keys) < n:
        pytest.skip(f"needs {n} frameworks, have {keys}")
    return keys
