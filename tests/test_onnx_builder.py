"""The ONNX builder against the spec, the oracle and the builder contract (docs/builders.md).

Needs only onnx and onnxruntime (no deep-learning framework). Each variant is built once per module at
its own input size, with aux heads off and, where the variant has them, on; tests that change a model
build their own.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

import impl_onnx  # noqa: E402
import shared_spec  # noqa: E402
from impl_onnx import api as A  # noqa: E402
from impl_onnx import builder as B  # noqa: E402
from shared_spec import weights as W  # noqa: E402
from shared_spec.spec import Pool  # noqa: E402

pytestmark = pytest.mark.onnx

VARIANTS = shared_spec.list_variants(shared_spec.BUILTIN_SPEC)  # GoogLeNet (Inception v3: test_inception_v3)
CASES = [(v, False) for v in VARIANTS] + [(v, True) for v in VARIANTS if shared_spec.load(v).has_aux]
BATCH = 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two CPU cores are shared with other test runs: one onnxruntime thread per session."""
    saved, A.THREADS = A.THREADS, 1
    yield
    A.THREADS = saved


@pytest.fixture(scope="module", params=CASES, ids=[f"{v}{'-aux' if a else ''}" for v, a in CASES])
def built(request, input_batch):
    """(spec, model built with seed 0, input batch), built once per case. Do not mutate the model."""
    variant, aux = request.param
    spec = shared_spec.load(variant, **({"aux_logits": True} if aux else {}))
    return spec, impl_onnx.build(spec, device="cpu", seed=0), input_batch(spec, BATCH)


def run_single(build_nodes, x: np.ndarray, out_shape=None) -> np.ndarray:
    """Run a one-op graph written by ``build_nodes(graph, 'in') -> output name``."""
    g = B.GraphBuilder(None, B.OPSET)
    out = build_nodes(g, "in")
    graph = helper.make_graph(g.nodes, "t", [helper.make_tensor_value_info("in", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape or [None] * x.ndim)],
                              initializer=g.constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", B.OPSET)])
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"in": x})[0]


# --------------------------------------------------------------------------- structure


def test_op_table_covers_every_leaf_and_container_op():
    schema = json.loads(shared_spec.SCHEMA_FILE.read_text())
    ops = set(schema["$defs"]["layer_body"]["properties"]["op"]["enum"])
    # transform_input is no layer a spec writes: the loader puts it first when a variant switches it on
    assert set(impl_onnx.OPS) == ops - {"inception", "block"} | {"transform_input"}


def test_model_passes_checker_with_spec_names(built):
    spec, model, _ = built
    proto = impl_onnx.to_model_proto(model)
    onnx.checker.check_model(proto, full_check=True)  # full_check also runs ONNX shape inference
    assert proto.opset_import[0].version == impl_onnx.OPSET
    assert [i.name for i in proto.graph.initializer if i.name in spec.weight_shapes()] == list(spec.weight_shapes())
    tensors = {out for node in proto.graph.node for out in node.output}
    missing = [layer.name for layer in spec.walk() if layer.name not in tensors]
    assert not missing, f"no tensor named after {missing[:5]}"
    assert [o.name for o in proto.graph.output] == ["logits", *(h.name for h in spec.aux_heads)]


def test_metadata_props(built):
    spec, model, _ = built
    props = {p.key: p.value for p in impl_onnx.to_model_proto(model).metadata_props}
    assert props["variant"] == spec.variant
    assert json.loads(props["overrides"]) == dict(spec.overrides)
    assert props["suite_version"] == shared_spec.__version__


def test_counts_match_oracle(built):
    spec, model, _ = built
    report = shared_spec.analyze(spec)
    assert impl_onnx.count_params(model) == (report.params, report.buffers)
    expected = spec.expected.get("params_with_aux" if spec.aux_logits else "params")
    if expected is not None:
        assert report.params == expected


def test_layer_shapes_match_oracle(built):
    spec, model, x = built
    report = shared_spec.analyze(spec)
    outs = impl_onnx.layer_outputs(model, x)
    assert list(outs) == [layer.name for layer in spec.walk()]
    for name, value in outs.items():
        assert value.shape == (BATCH, *report.layer(name).out_shape), name
        assert value.dtype == np.float32 and np.isfinite(value).all(), name
    logits = impl_onnx.forward(model, x)
    assert logits.shape == (BATCH, spec.num_classes)
    np.testing.assert_allclose(logits, outs[spec.layers[-1].name], rtol=0, atol=1e-6)
    for head in spec.aux_heads:
        np.testing.assert_array_equal(outs[head.name], outs[head.layers[-1].name])


def test_weights_round_trip_bit_identical(built, tmp_path):
    spec, model, x = built
    weights = impl_onnx.export_weights(model)
    assert {k: v.shape for k, v in weights.items()} == spec.weight_shapes()
    rng = np.random.default_rng(3)
    changed = {k: (v + rng.normal(0, 0.01, v.shape)).astype(np.float32) if not k.endswith("running_var")
               else v + 0.5 for k, v in weights.items()}
    other = impl_onnx.build(spec, device="cpu", seed=1)
    impl_onnx.import_weights(other, changed)
    back = impl_onnx.export_weights(other)
    for key in changed:
        np.testing.assert_array_equal(back[key], changed[key], err_msg=key)
    impl_onnx.save_weights(other, tmp_path / "w.safetensors")
    third = impl_onnx.build(spec, device="cpu", seed=2)
    impl_onnx.load_weights(third, tmp_path / "w.safetensors")
    for key, value in impl_onnx.export_weights(third).items():
        np.testing.assert_array_equal(value, changed[key], err_msg=key)
    # the session is rebuilt after import: the new weights are the ones that run
    np.testing.assert_array_equal(impl_onnx.forward(third, x), impl_onnx.forward(other, x))
    assert not np.array_equal(impl_onnx.forward(other, x), impl_onnx.forward(model, x))


def test_save_onnx_reloads_with_identical_logits(built, tmp_path):
    spec, model, x = built
    path = tmp_path / f"{spec.variant}.onnx"
    impl_onnx.save_onnx(model, path)
    reloaded = onnx.load(str(path))
    onnx.checker.check_model(reloaded)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x})))
    np.testing.assert_array_equal(outs["logits"], impl_onnx.forward(model, x))
    assert set(outs) == {"logits", *(h.name for h in spec.aux_heads)}


# --------------------------------------------------------------------------- contract


def test_same_seed_same_weights_and_init_rule():
    spec = shared_spec.load("googlenet")  # trunc_normal(0.01, -2, 2)
    a, b = (impl_onnx.export_weights(impl_onnx.build(spec, seed=5)) for _ in range(2))
    c = impl_onnx.export_weights(impl_onnx.build(spec, seed=6))
    key = "conv1.conv.weight"
    np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a[key], c[key])
    assert abs(float(a["inception4a.branch2.conv2.conv.weight"].std()) - 0.01) < 5e-4
    assert (a["conv1.bn.gamma"] == 1).all() and (a["conv1.bn.running_mean"] == 0).all()
    paper = impl_onnx.export_weights(impl_onnx.build(shared_spec.load("googlenet-paper"), seed=0))
    w = paper["conv1.conv.weight"]  # xavier uniform: bound sqrt(6 / (fan_in + fan_out))
    bound = np.sqrt(6 / (3 * 49 + 64 * 49))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert (paper["conv1.conv.bias"] == shared_spec.load("googlenet-paper").init.bias).all()


def test_bad_arguments():
    spec = shared_spec.load("d2l")
    model = impl_onnx.build(spec, seed=0)
    with pytest.raises(ValueError, match=r"Received: x\.shape=\(2, 3, 96, 96\)"):
        impl_onnx.forward(model, np.zeros((2, 3, 96, 96), np.float32))
    with pytest.raises(ValueError, match=r"Received: x\.shape=\(1, 96, 96\)"):
        impl_onnx.layer_outputs(model, np.zeros((1, 96, 96), np.float32))
    with pytest.raises(ValueError, match=r"Received: x\.shape=\(2, 1, 64, 64\)"):
        impl_onnx.forward(model, np.zeros((2, 1, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"Received: x\.dtype="):
        impl_onnx.forward(model, np.zeros((2, 1, 96, 96), np.complex64))
    with pytest.raises(NotImplementedError, match="inference-only"):
        impl_onnx.forward(model, np.zeros((2, 1, 96, 96), np.float32), training=True)
    with pytest.raises(ValueError, match=r"Received: device='gpu'"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            pytest.skip("onnxruntime has CUDA here")
        impl_onnx.build(spec, device="gpu")
    with pytest.raises(ValueError, match=r"Received: device='tpu'"):
        impl_onnx.build(spec, device="tpu")
    with pytest.raises(ValueError, match=r"Received: seed=-1"):
        impl_onnx.build(spec, seed=-1)
    with pytest.raises(ValueError, match=r"Received: opset=99"):
        impl_onnx.to_model_proto(model, opset=99)
    weights = impl_onnx.export_weights(model)
    weights.pop("conv1.conv.weight")
    with pytest.raises(W.WeightsError, match="conv1.conv.weight"):
        impl_onnx.import_weights(model, weights)
    assert impl_onnx.device_of(model) == "cpu"
    assert impl_onnx.framework_version().startswith(f"onnxruntime {ort.__version__} / onnx {onnx.__version__}")


@pytest.mark.parametrize("opset", [13, 18, onnx.defs.onnx_opset_version()])
def test_other_opsets_run_the_same(opset, tmp_path, input_batch):
    """Opset 18 moved ReduceMean's axes to an input (the adaptive pool uses it)."""
    spec = shared_spec.load("googlenet", aux_logits=True, input_size=64)
    model, x = impl_onnx.build(spec, seed=0), input_batch(spec, BATCH)
    path = tmp_path / "m.onnx"
    impl_onnx.save_onnx(model, path, opset=opset)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})
    ref = model.session().run(None, {"x": x})
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- ops against numpy


def _np_pool(x, kernel, stride, pads_tblr, op, count_include_pad=False):
    """Floor pool over explicitly padded x (-inf for max; for avg divide by window or by the in-input part)."""
    (kh, kw), (sh, sw), (t, b, l, r) = kernel, stride, pads_tblr
    fill = -np.inf if op == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
    ones = np.pad(np.ones_like(x), ((0, 0), (0, 0), (t, b), (l, r)))
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.empty((*x.shape[:2], oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            if op == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                n = kh * kw if count_include_pad else ones[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].sum(axis=(2, 3))
                out[:, :, i, j] = win.sum(axis=(2, 3)) / n
    return out


POOL_CASES = [  # (size, kernel, stride, pad): includes cases where a ceil window would start in the padding
    (s, k, st, p) for s in (4, 5, 6, 7, 13, 14, 28) for k, st in ((2, 2), (3, 2), (3, 1), (3, 3)) for p in (0, 1)
    if p <= k // 2
]


@pytest.mark.parametrize("size,kernel,stride,pad", POOL_CASES)
def test_ceil_max_pool_matches_oracle(size, kernel, stride, pad):
    layer = Pool("maxpool", "p", (kernel, kernel), (stride, stride), (pad,) * 4, "ceil", False)
    x = np.random.default_rng(size).standard_normal((1, 2, size, size)).astype(np.float32) - 5  # all negative
    got = run_single(lambda g, i: B.pool(g, layer, i, (2, size, size)), x)
    out = shared_spec.pool_output_size(size, kernel, stride, pad, pad, "ceil")
    assert got.shape == (1, 2, out, out)
    extra = shared_spec.ceil_extra_padding(size, kernel, stride, pad, pad, "ceil")
    ref = _np_pool(x, layer.kernel, layer.stride, (pad, pad + extra, pad, pad + extra), "max")
    np.testing.assert_array_equal(got, ref.astype(np.float32))  # padding never wins: -inf, not 0


def test_onnx_ceil_rule_differs_from_oracle_where_expected():
    """size 5, kernel 2, stride 2, pad 1: ONNX's formula gives 4, the oracle (PyTorch) 3: the builder pads."""
    assert B.onnx_ceil_size(5, 2, 2, 1, 1) == 4
    assert shared_spec.pool_output_size(5, 2, 2, 1, 1, "ceil") == 3
    layer = Pool("maxpool", "p", (2, 2), (2, 2), (1, 1, 1, 1), "ceil", False)
    assert B.pool_plan(layer, 5, 5)[1] == 0  # floor mode over explicit pads
    assert B.pool_plan(Pool("maxpool", "p", (3, 3), (2, 2), (0,) * 4, "ceil", False), 112, 112)[1] == 1


@pytest.mark.parametrize("include", [False, True])
@pytest.mark.parametrize("padding", [(1, 1, 1, 1), (0, 1, 1, 0), (0, 0, 0, 0)])
def test_avg_pool_count_include_pad(include, padding):
    layer = Pool("avgpool", "p", (3, 3), (2, 2), padding, "floor", include)
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 9)).astype(np.float32)
    got = run_single(lambda g, i: B.pool(g, layer, i, (3, 9, 9)), x)
    ref = _np_pool(x, layer.kernel, layer.stride, padding, "avg", include)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size,out", [(14, 4), (5, 4), (3, 4), (7, 7), (9, 2)])
def test_adaptive_avg_pool_windows_exact(size, out):
    layer = shared_spec.AdaptiveAvgPool("adaptive_avgpool", "a", (out, out))
    x = np.random.default_rng(2).standard_normal((2, 3, size, size)).astype(np.float32)
    got = run_single(lambda g, i: B.adaptive_avgpool(g, layer, i, (3, size, size)), x)
    win = B.adaptive_windows(size, out)
    ref = np.stack([np.stack([x[:, :, h0:h1, w0:w1].mean(axis=(2, 3)) for w0, w1 in win], -1) for h0, h1 in win], -2)
    assert got.shape == (2, 3, out, out)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    if size == 14:
        assert win == [(0, 4), (3, 7), (7, 11), (10, 14)]  # PyTorch's overlapping windows


def test_lrn_is_the_pytorch_formula():
    layer = shared_spec.LRN("lrn", "n", 5, 1e-2, 0.75, 2.0)  # a large alpha so a wrong alpha/size shows
    x = np.random.default_rng(4).standard_normal((2, 8, 5, 5)).astype(np.float32) * 3
    got = run_single(lambda g, i: B.lrn(g, layer, i, (8, 5, 5)), x)
    sq = np.pad(x.astype(np.float64) ** 2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    window = sum(sq[:, c:c + 8] for c in range(5))
    ref = x / (layer.k + layer.alpha / layer.size * window) ** layer.beta
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
