"""Hostile spec files and overrides: each is a one-line SpecError naming the file and the JSON path
(or the option), raised before anything large is parsed, validated or allocated."""

from __future__ import annotations

import json
import time

import pytest

import shared_spec
from shared_spec import SpecError
from shared_spec.spec import MAX_MESSAGE


def _error(path, variant="googlenet", **overrides) -> str:
    with pytest.raises(SpecError) as info:
        shared_spec.load(variant, spec_file=path, **overrides)
    message = str(info.value)
    assert "\n" not in message and len(message) <= MAX_MESSAGE
    if path is not None:
        assert str(path) in message
    return message


# -- block templates that use themselves ---------------------------------------------------------------


def _block_user(doc, block):
    layers = doc["variants"]["googlenet"]["layers"]
    layers[5] = {"name": "inception3a", "op": "block", "block": block}


def test_block_using_itself(write_spec):
    def mutate(doc):
        doc["blocks"]["loop"] = {"params": [], "layer": {"op": "concat", "branches": {
            "a": [{"name": "again", "op": "block", "block": "loop"}]}}}
        _block_user(doc, "loop")
    path = write_spec(mutate)
    message = _error(path)
    assert "$.blocks.loop.layer.branches.a[0]" in message and "block 'loop' uses itself: loop -> loop" in message


def test_blocks_using_each_other(write_spec):
    def mutate(doc):
        doc["blocks"]["ping"] = {"params": [], "layer": {"op": "concat", "branches": {
            "a": [{"name": "x", "op": "block", "block": "pong"}]}}}
        doc["blocks"]["pong"] = {"params": [], "layer": {"op": "concat", "branches": {
            "b": [{"name": "y", "op": "block", "block": "ping"}]}}}
        _block_user(doc, "ping")
    message = _error(write_spec(mutate))
    assert "$.blocks.pong.layer.branches.b[0]" in message and "ping -> pong -> ping" in message


def test_block_chain_deeper_than_the_limit(write_spec):
    def mutate(doc):
        for i in range(80):
            doc["blocks"][f"b{i}"] = {"params": [], "layer": {"op": "concat", "branches": {
                "a": [{"name": "x", "op": "block", "block": f"b{i + 1}"}]}}}
        doc["blocks"]["b80"] = {"params": [], "layer": {"op": "maxpool", "kernel": 1}}
        _block_user(doc, "b0")
    message = _error(write_spec(mutate))
    assert "$.blocks.b" in message and f"nested deeper than {shared_spec.MAX_DEPTH}" in message


def test_block_expansion_that_explodes(write_spec):
    def mutate(doc):
        for i in range(20):
            doc["blocks"][f"b{i}"] = {"params": [], "layer": {"op": "concat", "branches": {
                k: [{"name": "x", "op": "block", "block": f"b{i + 1}"}] for k in "abcd"}}}
        doc["blocks"]["b20"] = {"params": [], "layer": {"op": "maxpool", "kernel": 1}}
        _block_user(doc, "b0")
    start = time.monotonic()
    message = _error(write_spec(mutate))
    assert f"more than {shared_spec.MAX_LAYERS} layers" in message and "$.blocks.b" in message
    assert time.monotonic() - start < 10


# -- nesting, size, encoding ---------------------------------------------------------------------------


def test_json_nested_10000_levels(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"variants": ' + "[" * 10_000 + "]" * 10_000 + "}")
    message = _error(path)
    assert f"nested deeper than {shared_spec.MAX_DEPTH} levels" in message and "$.variants[0][0]" in message


def test_150_nested_concats(write_spec):
    def mutate(doc):
        layer = {"name": "leaf", "op": "maxpool", "kernel": 1}
        for i in range(150):
            layer = {"name": f"c{i}", "op": "concat", "branches": {"a": [layer]}}
        doc["variants"]["googlenet"]["layers"][5] = {**layer, "name": "inception3a"}
    message = _error(write_spec(mutate))
    assert "nested deeper than" in message and "$.variants.googlenet.layers[5].branches.a[0]" in message


def test_nesting_just_under_the_limit_is_validated_normally(write_spec):
    # 20 nested concats are 60 more JSON levels: under the limit, and the schema validator must cope
    def mutate(doc):
        layer = {"name": "leaf", "op": "maxpool", "kernel": 1, "stride": 1}
        for i in range(19):
            layer = {"name": f"c{i}", "op": "concat", "branches": {"a": [layer]}}
        doc["variants"]["googlenet"]["layers"].insert(5, {**layer, "name": "deep"})
    spec = shared_spec.load("googlenet", spec_file=write_spec(mutate))
    assert spec.layer("deep.a.c17.a.c16.a.c15").op == "concat"


def test_brackets_inside_strings_do_not_count(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"].update(description="[" * 500 + "{" * 500))
    assert shared_spec.load("googlenet", spec_file=path).description.startswith("[[[")


def test_a_50_mb_spec_fails_fast(tmp_path):
    path = tmp_path / "huge.json"
    with path.open("w") as handle:
        handle.write('{"family": "')
        handle.write("x" * (50 * 1024 * 1024))
        handle.write('"}')
    start = time.monotonic()
    message = _error(path)
    assert time.monotonic() - start < 1.0
    assert "the limit is" in message and "MiB" in message


def test_long_values_are_quoted_short(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][0].update(op="conv" * 10_000))
    message = _error(path)
    assert "$.variants.googlenet.layers[0].op" in message and "…" in message


def test_not_utf8(tmp_path, builtin_doc):
    path = tmp_path / "latin1.json"
    data = json.dumps(builtin_doc).encode()
    path.write_bytes(data.replace(b'"family": "googlenet"', b'"family": "caf\xe9"', 1))
    message = _error(path)
    assert "not UTF-8" in message and "byte 0xe9" in message


def test_utf16_with_bom(tmp_path, builtin_doc):
    path = tmp_path / "utf16.json"
    path.write_bytes(json.dumps(builtin_doc).encode("utf-16"))  # with a byte-order mark
    message = _error(path)
    assert "UTF-16" in message and "save it as UTF-8" in message


def test_utf8_with_bom_is_fine(tmp_path, builtin_doc):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(builtin_doc).encode())
    assert shared_spec.load("googlenet", spec_file=path).variant == "googlenet"


def test_a_directory_is_not_a_spec(tmp_path):
    assert "cannot read spec file" in _error(tmp_path)


# -- numbers ---------------------------------------------------------------------------------------------


def test_float_literal_where_an_integer_is_expected(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][0].update(out=1e12))
    message = _error(path)
    assert "$.variants.googlenet.layers[0].out" in message


def test_float_literal_with_no_fraction_in_the_text(tmp_path, builtin_doc):
    text = json.dumps(builtin_doc).replace('"num_classes": 1000', '"num_classes": 1000.0', 1)
    path = tmp_path / "float.json"
    path.write_text(text)
    message = _error(path)
    assert "$.variants.googlenet.num_classes" in message and "not an integer" in message


@pytest.mark.parametrize("where,value", [
    (("variants", "googlenet", "input", "channels"), 70_000),
    (("variants", "googlenet", "num_classes"), 10 ** 7),
    (("variants", "googlenet", "input", "size"), [20_000, 20_000]),
    (("variants", "googlenet", "layers", 0, "kernel"), 5000),
])
def test_upper_bounds(write_spec, where, value):
    def mutate(doc):
        node = doc
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
    message = _error(write_spec(mutate))
    assert "$." + ".".join(map(str, where)).replace(".0.", "[0].") in message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", [
    ("variants", "googlenet", "init", "weight", "std"),
    ("variants", "googlenet", "layers", 20, "rate"),
    ("variants", "bn-notebook", "layer_defaults", "conv", "norm", "eps"),
])
def test_non_finite_numbers(write_spec, value, where):
    def mutate(doc):
        node = doc
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value  # json.dumps writes NaN, Infinity, -Infinity
    message = _error(write_spec(mutate))
    assert "$." + ".".join(map(str, where)).replace(".20.", "[20].") in message
    assert "is not a finite number" in message


def test_overflowing_float_literal(tmp_path, builtin_doc):
    text = json.dumps(builtin_doc)
    path = tmp_path / "big.json"
    path.write_text(text.replace('"std": 0.01', '"std": 1e999', 1))
    message = _error(path)
    assert "$.variants.googlenet.init.weight.std: 1e999 is not a finite number" in message


def test_non_finite_in_other_variants_and_lrn(tmp_path, builtin_doc):
    text = json.dumps(builtin_doc)
    assert '"alpha": 0.0001' in text
    path = tmp_path / "lrn.json"
    path.write_text(text.replace('"alpha": 0.0001', '"alpha": NaN', 1))
    message = _error(path)
    assert ".alpha" in message and "$.variants." in message and "NaN" in message


def test_truncation_bounds_out_of_order(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["init"]["weight"].update(a=2.0, b=-2.0))
    message = _error(path)
    assert "$.variants.googlenet.init.weight" in message and "expected a < b" in message


# -- aux_logits: the spec's own value is not an override -----------------------------------------------


def test_spec_sets_aux_logits_on_a_variant_without_aux(write_spec):
    path = write_spec(lambda d: d["variants"]["d2l"].update(aux_logits=True))
    message = _error(path, "d2l")
    assert "$.variants.d2l.aux_logits" in message and "override" not in message


# -- memory ------------------------------------------------------------------------------------------------


def test_memory_estimate_of_the_builtin():
    spec = shared_spec.load("googlenet")
    estimate = shared_spec.memory_estimate(spec)
    report = shared_spec.analyze(spec)
    assert estimate.params == report.params + report.buffers
    assert 20 * 2 ** 20 < estimate.bytes < 200 * 2 ** 20
    assert estimate.first_over(shared_spec.MAX_MEMORY_BYTES) is None
    assert shared_spec.memory_estimate(spec, batch=8).activations == 8 * estimate.activations


def test_huge_num_classes_override():
    start = time.monotonic()
    message = _error(None, num_classes=10 ** 12)
    assert time.monotonic() - start < 5
    assert "num_classes=1000000000000" in message and "over the limit of 16 GiB" in message
    assert "$.variants.googlenet.layers[21]" in message and "'fc'" in message


def test_huge_input_size_override():
    message = _error(None, input_size=(16384, 16384))
    assert "input_size=(16384, 16384)" in message and "over the limit" in message and "crosses it" in message


def test_check_memory_with_a_lower_limit():
    spec = shared_spec.load("d2l")
    with pytest.raises(SpecError, match=r"\$\.variants\.d2l\.layers\[0\].*layer 'conv1' crosses it"):
        shared_spec.check_memory(spec, limit=1024)


@pytest.mark.parametrize("size", [0, -3, (1, 1, 0, 0), (0, 0), (10, -1), (2.5, 3), "224", (True, 3)])
def test_input_size_override_names_the_option(size):
    message = _error(None, input_size=size)
    assert "override input_size=" in message and "expected two integers H W >= 1" in message


def test_in_channels_upper_bound():
    assert "in_channels=100000: expected at most 65536" in _error(None, in_channels=100_000)


def test_override_value_is_quoted_short():
    message = _error(None, aux_logits="x" * 5000)
    assert "…" in message and "aux_logits=" in message
