"""Bad input: one line naming the file, the JSON path and what was expected."""

from __future__ import annotations

import pytest

import shared_spec
from shared_spec import SpecError


def _load_error(path, variant="googlenet", **overrides) -> str:
    with pytest.raises(SpecError) as info:
        shared_spec.load(variant, spec_file=path, **overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_malformed_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"format_version": 1,,}')
    message = _load_error(path)
    assert str(path) in message and "line 1 column" in message and "malformed JSON" in message


def test_missing_file(tmp_path):
    message = _load_error(tmp_path / "nope.json")
    assert "nope.json" in message and "cannot read" in message


def test_unknown_key_is_an_error(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][0].update(dilation=2))
    message = _load_error(path)
    assert "$.variants.googlenet.layers[0]" in message and "dilation" in message


def test_unknown_op_is_an_error(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][0].update(op="conv3d"))
    message = _load_error(path)
    assert "$.variants.googlenet.layers[0].op" in message and "unknown op 'conv3d'" in message


def test_schema_type_violation(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][1].update(kernel=0))
    assert "$.variants.googlenet.layers[1].kernel" in _load_error(path)


def test_missing_required_key(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"].pop("init"))
    message = _load_error(path)
    assert "$.variants.googlenet" in message and "'init' is a required property" in message


def test_channel_count_mismatch_names_the_layer(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][6].update({"in": 999}))
    message = _load_error(path)
    assert "$.variants.googlenet.layers[6]" in message
    assert "declares 999 input channels, but the previous layer gives 256" in message


def test_dense_feature_mismatch(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][-1].update({"in": 1000}))
    message = _load_error(path)
    assert "$.variants.googlenet.layers[21]" in message and "declares 1000 input features" in message


def test_table_row_of_wrong_length(write_spec):
    path = write_spec(lambda d: d["tables"]["table1"]["rows"]["inception3a"].pop())
    assert "$.tables.table1.rows.inception3a: has 5 values for 6 columns" in _load_error(path)


def test_branch_spatial_sizes_must_agree(write_spec):
    def mutate(doc):
        doc["blocks"]["inception_3x3"]["layer"]["branches"]["branch2"][1]["padding"] = 0
    message = _load_error(write_spec(mutate))
    assert "$.blocks.inception_3x3.layer (in $.variants.googlenet.layers[5])" in message
    assert "branches end in different spatial sizes" in message


def test_spatial_size_reaching_zero(write_spec):
    def mutate(doc):
        doc["variants"]["googlenet"]["input"]["size"] = [16, 16]
        doc["variants"]["googlenet"]["layers"][1]["stride"] = 3
    message = _load_error(write_spec(mutate))
    assert "too small" in message and "minimum is" in message and "$.variants.googlenet.layers[" in message


def test_pool_padding_more_than_half_kernel(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][1].update(padding=2))
    assert "pads more than half its kernel" in _load_error(path)


def test_duplicate_names(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"].insert(2, {"name": "conv1", "op": "dropout", "rate": 0.1}))
    assert "duplicate layer name 'conv1'" in _load_error(path)


def test_unknown_block_lists_known(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layer_defaults"]["inception"].update(block="v9"))
    message = _load_error(path)
    assert "unknown block 'v9'" in message and "inception_3x3" in message


def test_unknown_reference(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"][-1].update(out="$classes"))
    assert "unknown reference '$classes'" in _load_error(path)


def test_dense_without_flatten(write_spec):
    path = write_spec(lambda d: d["variants"]["googlenet"]["layers"].pop(19))
    assert "add a flatten layer" in _load_error(path)


def test_unknown_variant_lists_known():
    with pytest.raises(SpecError, match="unknown variant 'resnet'; known variants: googlenet, googlenet-paper"):
        shared_spec.load("resnet")


@pytest.mark.parametrize("overrides,fragment", [
    ({"num_classes": 0}, "num_classes=0: expected an integer >= 1"),
    ({"num_classes": 2.5}, "num_classes=2.5"),
    ({"in_channels": -1}, "in_channels=-1"),
    ({"input_size": (0, 10)}, "input_size=(0, 10)"),
    ({"input_size": (8, 8)}, "minimum is 15x15"),
    ({"aux_logits": "yes"}, "aux_logits='yes'"),
    ({"dropout": 1.0}, "expected a rate in [0, 1)"),
    ({"dropout": {"fc": 0.1}}, "no dropout layer named 'fc'"),
    ({"width": 2}, "unknown override 'width'"),
])
def test_bad_overrides(overrides, fragment):
    with pytest.raises(SpecError) as info:
        shared_spec.load("googlenet", **overrides)
    assert fragment in str(info.value)


def test_aux_on_a_variant_without_aux():
    with pytest.raises(SpecError, match="d2l: override aux_logits=True: this variant has no aux heads"):
        shared_spec.load("d2l", aux_logits=True)


# -- weight files ---------------------------------------------------------------------------------------------

import json as _json  # noqa: E402
import os  # noqa: E402
import struct  # noqa: E402

import numpy as np  # noqa: E402

from shared_spec import weights as W  # noqa: E402


def _one_line(exc_info, *fragments):
    message = str(exc_info.value)
    assert "\n" not in message and len(message) <= 300, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def _safetensors(path, tensors: dict, metadata: dict | None):
    """A safetensors file written by hand: any dtype name, any metadata."""
    header, blobs, offset = {}, [], 0
    for key, (dtype, shape, blob) in tensors.items():
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = _json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
    return path


def _d2l_weights():
    spec = shared_spec.load("d2l", num_classes=3, input_size=32)
    return spec, {key: np.zeros(shape, np.float32) for key, shape in spec.weight_shapes().items()}


def test_weights_round_trip_and_mode(tmp_path):
    spec, weights = _d2l_weights()
    path = tmp_path / "w.safetensors"
    old = os.umask(0o027)
    try:
        W.save_weights(path, weights, spec)
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    loaded, meta = W.load_weights(path, spec)
    assert set(loaded) == set(weights) and W.check_metadata(meta) == {"num_classes": 3, "input_size": [32, 32]}


@pytest.mark.parametrize("dtype,name", [("F16", "float16"), ("BF16", "bfloat16"), ("F64", "float64"),
                                        ("I64", "int64"), ("U8", "uint8")])
def test_weights_of_another_dtype(tmp_path, dtype, name):
    size = {"F16": 2, "BF16": 2, "F64": 8, "I64": 8, "U8": 1}[dtype]
    path = _safetensors(tmp_path / "w.safetensors", {"conv1.conv.weight": (dtype, [2, 3], b"\0" * 6 * size)},
                        {"format": W.FORMAT})
    with pytest.raises(W.WeightsError) as info:
        W.load_weights(path)
    _one_line(info, str(path), "'conv1.conv.weight'", f"dtype {name}")


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_check_weights_refuses_other_dtypes(dtype):
    spec, weights = _d2l_weights()
    key = next(iter(weights))
    weights[key] = weights[key].astype(dtype)
    with pytest.raises(W.WeightsError) as info:
        W.check_weights(spec, weights, source="mine")
    _one_line(info, "mine", repr(key), f"dtype {np.dtype(dtype)}")


@pytest.mark.parametrize("damage", ["truncated", "garbage_header", "huge_length", "tiny", "list_header",
                                    "offsets_past_end", "wrong_size"])
def test_damaged_weight_files(tmp_path, damage):
    spec, weights = _d2l_weights()
    path = tmp_path / "w.safetensors"
    W.save_weights(path, weights, spec)
    data = path.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbage_header":
        data = data[:8] + b"\xff" * length + data[8 + length:]
    elif damage == "huge_length":
        data = struct.pack("<Q", 2 ** 62) + data[8:]
    elif damage == "tiny":
        data = data[:5]
    elif damage == "list_header":
        data = struct.pack("<Q", 2) + b"[]"
    if damage in ("offsets_past_end", "wrong_size"):
        key = "conv1.conv.weight"
        shape = list(weights[key].shape)
        blob = b"\0" * 16 if damage == "offsets_past_end" else b""
        entry = ("F32", shape if damage == "wrong_size" else [4, 100], blob or b"\0" * 8)
        _safetensors(path, {key: entry}, {"format": W.FORMAT})
        if damage == "offsets_past_end":
            raw = path.read_bytes()
            path.write_bytes(raw[:-8])  # the declared 1600 bytes are not there
    else:
        path.write_bytes(data)
    with pytest.raises(W.WeightsError) as info:
        W.load_weights(path, spec)
    _one_line(info, str(path), "not a readable safetensors file")


@pytest.mark.parametrize("overrides,fragment", [
    ("{not json", "is not JSON"),
    ("[1, 2]", "is a JSON list, expected an object"),
    ("42", "is a JSON int"),
])
def test_metadata_overrides_must_be_a_json_object(tmp_path, overrides, fragment):
    path = _safetensors(tmp_path / "w.safetensors", {"x": ("F32", [1], b"\0" * 4)},
                        {"format": W.FORMAT, "overrides": overrides})
    with pytest.raises(W.WeightsError) as info:
        W.load_weights(path)
    _one_line(info, str(path), "metadata field 'overrides'", fragment)


def test_metadata_field_of_the_wrong_type(tmp_path):
    path = _safetensors(tmp_path / "w.safetensors", {"x": ("F32", [1], b"\0" * 4)},
                        {"format": W.FORMAT, "variant": ["googlenet"]})
    with pytest.raises(W.WeightsError) as info:
        W.load_weights(path)
    _one_line(info, str(path), "metadata field 'variant'")


def test_not_a_suite_weight_file(tmp_path):
    path = _safetensors(tmp_path / "w.safetensors", {"x": ("F32", [1], b"\0" * 4)}, None)
    with pytest.raises(W.WeightsError) as info:
        W.load_weights(path)
    _one_line(info, str(path), "not a googlenet-suite weight file")


# -- .npy inputs ------------------------------------------------------------------------------------------------

from shared_spec.arrays import ArrayError, read_array  # noqa: E402


def test_read_array_round_trip(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "x.npy", x)
    assert np.array_equal(read_array(tmp_path / "x.npy"), x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    assert np.array_equal(read_array(tmp_path / "f.npy"), x)
    np.save(tmp_path / "i.npy", np.arange(6, dtype=np.uint8))
    assert read_array(tmp_path / "i.npy").dtype == np.uint8


def _npy(tmp_path, array, name="x.npy", **kwargs):
    path = tmp_path / name
    with path.open("wb") as handle:
        np.lib.format.write_array(handle, array, **kwargs)
    return path


@pytest.mark.parametrize("case,fragment", [
    ("npz", "an .npz archive"),
    ("text", "not a readable .npy file"),
    ("claims_more", "the header claims"),
    ("complex", "complex dtype"),
    ("object", "object arrays are refused"),
    ("strings", "non-numeric dtype"),
    ("bool", "non-numeric dtype"),
    ("structured", "non-numeric dtype"),
    ("empty", "zero-size array of shape (1, 0, 4)"),
    ("nan", "non-finite values at index (0, 1)"),
    ("inf", "non-finite values at index (1, 0)"),
    ("header", "damaged header"),
    ("missing", "no such input file"),
    ("too_big", "over the limit of 16"),
])
def test_bad_npy_inputs(tmp_path, case, fragment):
    path = tmp_path / "x.npy"
    kwargs = {}
    if case == "npz":
        np.savez(tmp_path / "x.npz", a=np.zeros(3))
        os.replace(tmp_path / "x.npz", path)
    elif case == "text":
        path.write_text("hello")
    elif case == "claims_more":
        _npy(tmp_path, np.zeros((4, 4), np.float32))
        data = path.read_bytes()
        path.write_bytes(data[:-8])
    elif case == "complex":
        _npy(tmp_path, np.zeros(3, np.complex64))
    elif case == "object":
        _npy(tmp_path, np.array([1, "a"], dtype=object), allow_pickle=True)
    elif case == "strings":
        _npy(tmp_path, np.array(["a", "b"]))
    elif case == "bool":
        _npy(tmp_path, np.array([True]))
    elif case == "structured":
        _npy(tmp_path, np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]))
    elif case == "empty":
        _npy(tmp_path, np.zeros((1, 0, 4), np.float32))
    elif case == "nan":
        _npy(tmp_path, np.array([[0, np.nan], [np.nan, 1]], np.float32))
    elif case == "inf":
        _npy(tmp_path, np.array([[0, 1], [np.inf, 1]], np.float64))
    elif case == "header":
        path.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': <f4, }\n")
    elif case == "missing":
        path = tmp_path / "nope.npy"
    elif case == "too_big":
        _npy(tmp_path, np.zeros(100, np.float32))
        kwargs = {"max_bytes": 16}
    with pytest.raises(ArrayError) as info:
        read_array(path, **kwargs)
    assert isinstance(info.value, SpecError)
    _one_line(info, str(path), fragment)


def test_a_header_claiming_terabytes_is_refused_before_allocating(tmp_path):
    header = {"descr": "<f4", "fortran_order": False, "shape": (10 ** 6, 10 ** 6)}
    path = tmp_path / "x.npy"
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 64)
    with pytest.raises(ArrayError) as info:
        read_array(path)
    _one_line(info, str(path), "the header claims 4000000000000 bytes")


# -- atomic writes ----------------------------------------------------------------------------------------------

from shared_spec.files import atomic_write  # noqa: E402


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_follows_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "out.txt", lambda tmp: open(tmp, "w").write("x"))
    finally:
        os.umask(old)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == mode


def test_atomic_write_keeps_an_existing_files_mode_and_cleans_up(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write(target, lambda tmp: open(tmp, "w").write("new"))
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640

    def fail(tmp):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_variant_name_is_a_name_whatever_it_ends_with(write_spec, tmp_path, monkeypatch):
    """One way to name a spec file, ``spec_file=``: ``"x.json"`` is the variant named so, never a path."""
    monkeypatch.chdir(tmp_path)
    write_spec(name="other.json")  # a real file named like the variant asked for: it must not be read
    mine = write_spec(lambda d: d["variants"].update({"x.json": d["variants"]["d2l"]}), name="mine.json")
    assert shared_spec.load("x.json", spec_file=mine).variant == "x.json"
    message = _load_error(mine, variant="other.json")
    assert "mine.json: unknown variant 'other.json'; known variants: googlenet," in message
    message = _load_error(None, variant="other.json:d2l")  # the FILE:VARIANT form is gone too
    assert "unknown variant 'other.json:d2l'; known variants: googlenet," in message
