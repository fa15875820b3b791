"""The ONNX builder is the PyTorch builder's network: same weights in, same numbers out (fp32, 1e-4).

Weights are initialised in impl_torch and given data BN statistics the way the harness does
(``googlenet_suite.harness.calibrated_weights``: one momentum-1 training forward), then imported
into impl_onnx. Logits must agree within 1e-4; inner layers within 1e-4 relative to the layer's
scale above 1, as the harness judges them.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

import impl_onnx  # noqa: E402
import impl_torch  # noqa: E402
import shared_spec  # noqa: E402
from googlenet_suite.harness import calibrated_weights  # noqa: E402
from impl_onnx import api as A  # noqa: E402

pytestmark = [pytest.mark.onnx, pytest.mark.cross, pytest.mark.torch]

TOL = 1e-4
VARIANTS = shared_spec.list_variants(shared_spec.BUILTIN_SPEC)  # GoogLeNet (Inception v3: test_inception_v3)
CASES = [(v, False) for v in VARIANTS] + [(v, True) for v in VARIANTS if shared_spec.load(v).has_aux]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads, saved = torch.get_num_threads(), A.THREADS
    torch.set_num_threads(1)
    A.THREADS = 1
    yield
    torch.set_num_threads(threads)
    A.THREADS = saved


def batch(spec, n, seed):
    return np.random.default_rng(seed).standard_normal((n, *spec.input_shape)).astype(np.float32)


@pytest.fixture(scope="module", params=CASES, ids=[f"{v}{'-aux' if a else ''}" for v, a in CASES])
def pair(request):
    """(spec, torch model, onnx model, x) with the same calibrated weights, once per case."""
    variant, aux = request.param
    spec = shared_spec.load(variant, **({"aux_logits": True} if aux else {}))
    weights = calibrated_weights(impl_torch, spec, batch(spec, 8, seed=11), seed=3, device="cpu")
    tmodel = impl_torch.build(spec, device="cpu", seed=0)
    impl_torch.import_weights(tmodel, weights)
    omodel = impl_onnx.build(spec, device="cpu", seed=0)
    impl_onnx.import_weights(omodel, weights)
    return spec, tmodel, omodel, batch(spec, 2, seed=1)


def test_logits_agree(pair):
    spec, tmodel, omodel, x = pair
    ref, got = impl_torch.forward(tmodel, x), impl_onnx.forward(omodel, x)
    scale = float(np.abs(ref).max())
    assert scale > 1e-2, f"{spec.variant}: logits of {scale:.1e} would make a 1e-4 comparison vacuous"
    diff = float(np.abs(got - ref).max())
    print(f"{spec.variant} aux={spec.aux_logits}: logits max abs diff {diff:.2e} (scale {scale:.2f})")
    assert diff <= TOL


def test_every_layer_agrees(pair):
    spec, tmodel, omodel, x = pair
    ref, got = impl_torch.layer_outputs(tmodel, x), impl_onnx.layer_outputs(omodel, x)
    assert list(got) == list(ref)
    worst = (0.0, None, 0.0)
    for name in ref:
        assert got[name].shape == ref[name].shape, name
        diff = float(np.abs(got[name] - ref[name]).max())
        scale = float(np.abs(ref[name]).max())
        assert diff <= TOL * max(1.0, scale), f"{spec.variant}: onnx first diverges from torch at {name} ({diff:.2e})"
        worst = max(worst, (diff / max(1.0, scale), name, diff), key=lambda t: t[0])
    print(f"{spec.variant} aux={spec.aux_logits}: worst layer {worst[1]}: {worst[2]:.2e} abs, {worst[0]:.2e} of its scale")


def test_lrn_matches_torch():
    """ONNX LRN's alpha/size is PyTorch's: numerically, against torch.nn.LocalResponseNorm."""
    from impl_onnx import builder as B

    from test_onnx_builder import run_single

    layer = shared_spec.LRN("lrn", "n", 5, 1e-2, 0.75, 2.0)
    x = np.random.default_rng(4).standard_normal((2, 8, 5, 5)).astype(np.float32) * 3
    got = run_single(lambda g, i: B.lrn(g, layer, i, (8, 5, 5)), x)
    ref = torch.nn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [14, 5, 3])
def test_adaptive_pool_matches_torch(size):
    from impl_onnx import builder as B

    from test_onnx_builder import run_single

    layer = shared_spec.AdaptiveAvgPool("adaptive_avgpool", "a", (4, 4))
    x = np.random.default_rng(2).standard_normal((2, 3, size, size)).astype(np.float32)
    got = run_single(lambda g, i: B.adaptive_avgpool(g, layer, i, (3, size, size)), x)
    ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), (4, 4)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
