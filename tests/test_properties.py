"""Property-based: mutated spec files, weight files and .npy inputs either load or raise the
suite's own one-line error, never another exception (bounded: derandomized, 60 examples each)."""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import shared_spec  # noqa: E402
from shared_spec import SpecError  # noqa: E402
from shared_spec import weights as W  # noqa: E402
from shared_spec.arrays import ArrayError, read_array  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BUILTIN = json.loads(shared_spec.BUILTIN_SPEC.read_text())

ODD_VALUES = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e12, 10 ** 12, -1, 0, 0.5, True, None, "", "$num_classes",
                     "x" * 500, [], {}, [1, 2], {"op": "conv"}, 2 ** 63, 1e-300]),
    st.integers(-10, 10 ** 6), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
)


def _children(node):
    if isinstance(node, dict):
        return list(node)
    if isinstance(node, list):
        return list(range(len(node)))
    return []


@st.composite
def mutated_docs(draw):
    doc = copy.deepcopy(BUILTIN)
    for _ in range(draw(st.integers(1, 3))):
        # walk down a random path, then change what is there
        parent, key, node = None, None, doc
        for _ in range(draw(st.integers(1, 9))):
            keys = _children(node)
            if not keys:
                break
            parent, key = node, draw(st.sampled_from(keys))
            node = node[key]
        if parent is None:
            continue
        kind = draw(st.sampled_from(["value", "delete", "wrap", "duplicate", "swap_type"]))
        if kind == "value":
            parent[key] = draw(ODD_VALUES)
        elif kind == "delete":
            del parent[key]
        elif kind == "wrap":
            parent[key] = [node]
        elif kind == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(node))
        else:
            parent[key] = str(node) if not isinstance(node, str) else 7
    return doc


def _assert_spec_error(exc: SpecError, path: Path):
    message = str(exc)
    assert "\n" not in message and len(message) <= 300
    assert str(path) in message and "$" in message, message


@SETTINGS
@given(mutated_docs())
def test_mutated_specs_load_or_raise_spec_error(doc):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(doc))  # NaN and Infinity come out as JSON's NaN/Infinity literals
        try:
            variant = doc.get("default_variant") if isinstance(doc.get("default_variant"), str) else None
            spec = shared_spec.load(None, spec_file=path)
        except SpecError as exc:
            _assert_spec_error(exc, path)
        else:
            assert isinstance(spec, shared_spec.Spec) and (variant is None or spec.variant == variant)
            assert shared_spec.memory_estimate(spec).bytes <= shared_spec.MAX_MEMORY_BYTES


@SETTINGS
@given(st.binary(max_size=64), st.integers(0, len(json.dumps(BUILTIN))))
def test_spliced_bytes_load_or_raise_spec_error(junk, at):
    text = json.dumps(BUILTIN).encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.json"
        path.write_bytes(text[:at] + junk + text[at + len(junk) // 2:])
        try:
            shared_spec.load(None, spec_file=path)
        except SpecError as exc:
            message = str(exc)
            assert "\n" not in message and len(message) <= 300 and str(path) in message


TINY_SPEC = {
    "format_version": 1, "family": "tiny", "default_variant": "tiny",
    "variants": {"tiny": {
        "description": "tiny", "provenance": {"source": "test", "reproduces": "nothing"},
        "input": {"channels": 3, "size": [8, 8]}, "num_classes": 2, "aux_logits": False,
        "init": {"weight": {"type": "xavier_uniform"}, "bias": 0.0},
        "layers": [
            {"name": "conv1", "op": "conv", "out": 4, "kernel": 3, "bias": True, "activation": "relu",
             "norm": {"type": "batchnorm", "eps": 0.001, "momentum": 0.1}},
            {"name": "pool", "op": "global_avgpool"},
            {"name": "flatten", "op": "flatten"},
            {"name": "fc", "op": "dense", "out": "$num_classes"},
        ]}},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, input_batch):
    root = tmp_path_factory.mktemp("tiny")
    (root / "tiny.json").write_text(json.dumps(TINY_SPEC))
    spec = shared_spec.load(None, spec_file=root / "tiny.json")
    rng = np.random.default_rng(0)
    weights = {key: rng.standard_normal(shape).astype(np.float32) for key, shape in spec.weight_shapes().items()}
    W.save_weights(root / "w.safetensors", weights, spec)
    np.save(root / "x.npy", input_batch(spec, 1))
    return spec, (root / "w.safetensors").read_bytes(), (root / "x.npy").read_bytes()


def _damage(data: bytes, flips, cut):
    out = bytearray(data)
    for position, value in flips:
        out[position % len(out)] = value
    return bytes(out[: cut]) if cut is not None else bytes(out)


def _damages(size_hint: int):
    return (st.lists(st.tuples(st.one_of(st.integers(0, 200), st.integers(0, size_hint)), st.integers(0, 255)),
                     max_size=4),
            st.one_of(st.none(), st.integers(0, size_hint)))


@SETTINGS
@given(st.data())
def test_damaged_weight_files_load_or_raise_weights_error(tiny, data):
    spec, good, _ = tiny
    flips, cut = data.draw(_damages(len(good))[0]), data.draw(_damages(len(good))[1])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        path.write_bytes(_damage(good, flips, cut))
        try:
            W.load_weights(path, spec)
        except W.WeightsError as exc:
            message = str(exc)
            assert "\n" not in message and len(message) <= 300 and str(path) in message


@SETTINGS
@given(st.data())
def test_damaged_npy_files_load_or_raise_array_error(tiny, data):
    _, _, good = tiny
    flips, cut = data.draw(_damages(len(good))[0]), data.draw(_damages(len(good))[1])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        path.write_bytes(_damage(good, flips, cut))
        try:
            array = read_array(path)
        except ArrayError as exc:
            message = str(exc)
            assert "\n" not in message and len(message) <= 300 and str(path) in message
        else:
            assert array.size > 0 and np.isfinite(array).all()
