"""Framework-neutral weights: one safetensors layout for all three builders.

Keys are the spec's names (see :meth:`Spec.weight_shapes`): conv weights OIHW,
dense weights (out, in) with ``in`` in channels-first (NCHW) flatten order, BN
``gamma``/``beta``/``running_mean``/``running_var``. Files are written with
``safetensors.numpy`` (no pickle, nothing executes on load) and carry a small
metadata header: format, variant, overrides, suite version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import numpy as np

from .files import atomic_write
from .spec import Spec, SpecError

FORMAT = "googlenet-suite/weights-v1"
LAYOUT = "conv OIHW; dense (out, in), in = channels-first flatten order; bn gamma, beta, running_mean, running_var"


MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on the JSON header

# safetensors dtype names -> what a message calls them; only F32 is a suite weight file's dtype
SAFETENSORS_DTYPES = {
    "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
    "F8_E4M3": "float8_e4m3", "F8_E5M2": "float8_e5m2",
    "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64",
    "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
}
_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "I16": 2, "I32": 4,
             "I64": 8, "U8": 1, "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}

METADATA_SCHEMA = {
    "type": "object",
    "properties": {
        "format": {"type": "string", "maxLength": 200},
        "layout": {"type": "string"},
        "variant": {"type": "string", "minLength": 1, "maxLength": 200},
        "overrides": {"type": "string", "maxLength": 100_000},
        "suite_version": {"type": "string", "maxLength": 100},
    },
    "additionalProperties": {"type": "string"},
}


class WeightsError(SpecError):
    """Weights that do not fit a spec, or a weight file that cannot be read. One line."""


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_header(path: str | os.PathLike) -> tuple[dict[str, dict], dict[str, str]]:
    """A safetensors file's tensor table and metadata, read and checked without loading any tensor.

    Raises :class:`WeightsError` (one line, naming the file) for a truncated file, a header length
    past the end of the file, a header that is not a JSON object, or tensor entries whose dtype,
    shape or offsets do not describe the data that follows.
    """
    path = Path(path)
    try:
        size = os.path.getsize(path)
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise WeightsError(f"{path}: not a readable safetensors file: {size} bytes, too short for a header")
            length = int.from_bytes(head, "little")
            if length > size - 8:
                raise WeightsError(f"{path}: not a readable safetensors file: header length {length} is larger "
                                   f"than the file ({size} bytes); truncated?")
            if length > MAX_HEADER_BYTES:
                raise WeightsError(f"{path}: safetensors header of {length} bytes is over the limit of "
                                   f"{MAX_HEADER_BYTES}")
            raw = handle.read(length)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read weight file: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WeightsError(f"{path}: not a readable safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a readable safetensors file: its header is a JSON {type(header).__name__}, "
                           f"not an object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise WeightsError(f"{path}: not a readable safetensors file: __metadata__ is not an object")
    data_size = size - 8 - length
    for key, entry in header.items():
        where = f"{path}: key {_short(key)}"
        if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
                and isinstance(entry.get("shape"), list) and isinstance(entry.get("data_offsets"), list)):
            raise WeightsError(f"{where}: not a readable safetensors file: damaged entry "
                               f"(expected dtype, shape and data_offsets)")
        shape, offsets = entry["shape"], entry["data_offsets"]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise WeightsError(f"{where}: not a readable safetensors file: damaged entry: shape {_short(shape)}")
        if (len(offsets) != 2 or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_size):
            raise WeightsError(f"{where}: not a readable safetensors file: data_offsets {_short(offsets)} "
                               f"outside the {data_size} bytes of data; truncated?")
        itemsize = _ITEMSIZE.get(entry["dtype"])
        if itemsize is not None:
            count = 1
            for d in shape:
                count *= d
            if count * itemsize != offsets[1] - offsets[0]:
                raise WeightsError(f"{where}: not a readable safetensors file: shape {_short(shape)} of "
                                   f"{entry['dtype']} needs {count * itemsize} bytes, data_offsets give "
                                   f"{offsets[1] - offsets[0]}")
    return header, meta


def _check_dtypes(path: Path, header: Mapping[str, dict]) -> None:
    for key, entry in header.items():
        if entry["dtype"] != "F32":
            name = SAFETENSORS_DTYPES.get(entry["dtype"], _short(entry["dtype"]))
            raise WeightsError(f"{path}: key {_short(key)} has dtype {name}; suite weight files are float32 "
                               f"(convert it first)")


def check_metadata(meta: Mapping[str, Any], *, source: str = "weights") -> dict[str, Any]:
    """Validate a weight file's metadata (``METADATA_SCHEMA``) and return its ``overrides`` as a dict."""
    errors = list(jsonschema.Draft202012Validator(METADATA_SCHEMA).iter_errors(dict(meta)))
    if errors:
        error = min(errors, key=lambda e: len(e.absolute_path))
        field = error.absolute_path[0] if error.absolute_path else None
        what = f"metadata field {field!r}" if field is not None else "metadata"
        raise WeightsError(f"{source}: {what}: {_short(error.instance)} is not valid ({error.validator})")
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{source}: not a googlenet-suite weight file (metadata format={_short(meta.get('format'))}, "
                           f"expected {FORMAT!r})")
    text = meta.get("overrides")
    if text is None:
        return {}
    try:
        overrides = json.loads(text)
    except (ValueError, RecursionError):
        raise WeightsError(f"{source}: metadata field 'overrides' is not JSON: {_short(text)}") from None
    if not isinstance(overrides, dict):
        raise WeightsError(f"{source}: metadata field 'overrides' is a JSON {type(overrides).__name__}, "
                           f"expected an object: {_short(text)}")
    return overrides


def check_weights(spec: Spec, weights: Mapping[str, np.ndarray], *, source: str = "weights") -> None:
    """Raise :class:`WeightsError` naming the first missing, extra or mis-shaped key."""
    expected = spec.weight_shapes()
    for key, shape in expected.items():
        if key not in weights:
            raise WeightsError(f"{source}: missing key {key!r} (expected shape {shape}) for variant {spec.variant!r}")
        got = tuple(np.shape(weights[key]))
        if got != shape:
            raise WeightsError(f"{source}: key {key!r} has shape {got}, expected {shape}")
        dtype = getattr(weights[key], "dtype", None)
        if isinstance(weights[key], (np.ndarray, np.generic)) and dtype != np.float32:
            raise WeightsError(f"{source}: key {key!r} has dtype {dtype}; weights are float32")
    extra = [key for key in weights if key not in expected]
    if extra:
        raise WeightsError(f"{source}: unexpected key {extra[0]!r}"
                           f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''} for variant {spec.variant!r}")


def metadata(spec: Spec) -> dict[str, str]:
    from . import __version__

    return {
        "format": FORMAT,
        "layout": LAYOUT,
        "variant": spec.variant,
        "overrides": json.dumps(dict(spec.overrides), sort_keys=True, default=list),
        "suite_version": __version__,
    }


def save_weights(path: str | os.PathLike, weights: Mapping[str, np.ndarray], spec: Spec, *,
                 extra: Mapping[str, str] | None = None) -> None:
    """Check and write ``weights`` atomically: a failed write leaves no partial file. ``extra``: more metadata
    fields (strings), e.g. where converted weights came from."""
    from safetensors.numpy import save_file

    check_weights(spec, weights)
    path = Path(path)
    arrays = {key: np.ascontiguousarray(np.asarray(value, dtype=np.float32)) for key, value in weights.items()}
    meta = {**{str(k): str(v) for k, v in (extra or {}).items()}, **metadata(spec)}
    atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata=meta))


def load_weights(path: str | os.PathLike, spec: Spec | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a weight file; with ``spec``, also check keys and shapes against it.

    Every failure is a one-line :class:`WeightsError` naming the file: damaged or truncated files
    (:func:`read_header`), tensors that are not float32 (naming the key and the dtype), metadata that
    does not fit ``METADATA_SCHEMA`` or whose ``overrides`` is not a JSON object (:func:`check_metadata`).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weight file")
    header, raw_meta = read_header(path)
    _check_dtypes(path, header)
    check_metadata(raw_meta, source=str(path))
    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = dict(handle.metadata() or {})
            weights = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: not a readable safetensors file: {first}") from None
    if spec is not None:
        if meta.get("variant") not in (None, spec.variant):
            raise WeightsError(f"{path}: weights are for variant {meta['variant']!r}, not {spec.variant!r}")
        check_weights(spec, weights, source=str(path))
    return weights, meta
