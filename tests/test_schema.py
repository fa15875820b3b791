"""schema.json is a valid 2020-12 schema, the built-in spec satisfies it, and the
language is general enough for Inception v3-style blocks without a new builder."""

from __future__ import annotations

import json

import jsonschema
import pytest

import shared_spec


def test_schema_is_valid_2020_12():
    schema = json.loads(shared_spec.SCHEMA_FILE.read_text())
    assert schema["$schema"].endswith("2020-12/schema")
    jsonschema.Draft202012Validator.check_schema(schema)


def test_builtin_spec_validates(builtin_doc):
    schema = json.loads(shared_spec.SCHEMA_FILE.read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(builtin_doc)) == []


def test_table1_is_readable_at_a_glance(builtin_doc):
    table = builtin_doc["tables"]["table1"]
    assert table["columns"] == ["ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj"]
    assert table["rows"]["inception4e"] == [256, 160, 320, 32, 128, 128]
    assert list(table["rows"]) == [f"inception{s}" for s in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]


@pytest.mark.parametrize("op,extra", [
    ("conv", {"out": 8, "kernel": 3, "groups": 2}),
    ("maxpool", {"kernel": 3, "ceil_mode": True}),
    ("dense", {"out": 8, "units": 8}),
    ("dropout", {"rate": 0.1, "p": 0.1}),
])
def test_every_op_rejects_unknown_keys(op, extra):
    schema = json.loads(shared_spec.SCHEMA_FILE.read_text())
    validator = jsonschema.Draft202012Validator({**schema, "$ref": "#/$defs/layer"})
    errors = list(validator.iter_errors({"name": "x", "op": op, **extra}))
    assert errors, f"{op} accepted an unknown key"


V3_STYLE = {
    "format_version": 1,
    "family": "inception-v3-sketch",
    "default_variant": "mini",
    "blocks": {
        "factorized": {
            "params": ["c7"],
            "layer": {"op": "concat", "branches": {
                "branch7x7": [
                    {"name": "conv1", "op": "conv", "out": "$c7", "kernel": 1},
                    {"name": "conv2", "op": "conv", "out": "$c7", "kernel": [1, 7], "padding": [0, 3]},
                    {"name": "conv3", "op": "conv", "out": 32, "kernel": [7, 1], "padding": [3, 0]}],
                "split": [
                    {"name": "conv1", "op": "conv", "out": "$c7", "kernel": 1},
                    {"name": "fork", "op": "concat", "branches": {
                        "a": [{"name": "conv", "op": "conv", "out": 16, "kernel": [1, 3], "padding": [0, 1]}],
                        "b": [{"name": "conv", "op": "conv", "out": 16, "kernel": [3, 1], "padding": [1, 0]}]}}],
                "pool": [{"name": "pool", "op": "avgpool", "kernel": 3, "stride": 1, "padding": 1,
                          "count_include_pad": False}]}}
        },
        "reduction": {
            "params": [],
            "layer": {"op": "concat", "branches": {
                "conv": [{"name": "conv", "op": "conv", "out": 48, "kernel": 3, "stride": 2}],
                "pool": [{"name": "pool", "op": "maxpool", "kernel": 3, "stride": 2}]}}
        }
    },
    "variants": {
        "mini": {
            "description": "a v3-style sketch", "provenance": {"source": "test", "reproduces": "shapes"},
            "input": {"channels": 3, "size": [35, 35]}, "num_classes": 5, "aux_logits": False,
            "init": {"weight": {"type": "xavier_uniform"}, "bias": 0.0},
            "layer_defaults": {"conv": {"bias": False, "norm": {"type": "batchnorm", "eps": 0.001, "momentum": 0.1},
                                        "activation": "relu"},
                               "maxpool": {"rounding": "floor"}, "avgpool": {"rounding": "floor"}},
            "layers": [
                {"name": "stem", "op": "conv", "out": 24, "kernel": 3, "padding": 1},
                {"name": "mixed1", "op": "block", "block": "factorized", "args": {"c7": 12}},
                {"name": "mixed2", "op": "block", "block": "reduction"},
                {"name": "pool", "op": "global_avgpool"},
                {"name": "flatten", "op": "flatten"},
                {"name": "fc", "op": "dense", "out": "$num_classes"}
            ]
        }
    }
}


def test_inception_v3_style_blocks_are_just_json(tmp_path):
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(V3_STYLE))
    spec = shared_spec.load(spec_file=path)
    report = shared_spec.analyze(spec)
    assert report.layer("mixed1").out_shape == (32 + 32 + 24, 35, 35)
    assert report.layer("mixed1.split.fork").out_shape == (32, 35, 35)
    assert spec.layer("mixed1.branch7x7.conv2").kernel == (1, 7)
    assert spec.layer("mixed1.branch7x7.conv2").padding == (0, 0, 3, 3)
    assert report.layer("mixed2").out_shape == (48 + 88, 17, 17)
    assert report.output_shape == (5,)
