"""Read a ``.npy`` input array safely: every bad file is a one-line :class:`ArrayError` naming it.

The header is checked against the file's size before anything is allocated; pickles
(object arrays) are never loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from .spec import SpecError

MAX_ARRAY_BYTES = 4 * 1024 ** 3  # a .npy input larger than this is refused before it is read
MAX_HEADER_BYTES = 10_000  # numpy's own default limit on a .npy header


class ArrayError(SpecError):
    """A .npy file that cannot be used as an array input. One line naming the file."""


def read_array(path: str | os.PathLike, *, what: str = "input", max_bytes: int = MAX_ARRAY_BYTES) -> np.ndarray:
    """The array in a ``.npy`` file; numeric (integer or floating), non-empty and finite.

    Refused with :class:`ArrayError`: a missing file, a file over ``max_bytes``, an ``.npz`` archive or any
    other non-.npy file, a damaged header, a header that claims more (or less) data than the file holds,
    object/complex/bool/string/structured dtypes, zero-size arrays and NaN or infinite values.
    """
    path = Path(path)
    label = f"{what} {path}"
    try:
        if not path.is_file():
            raise ArrayError(f"{label}: no such {what} file")
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ArrayError(f"{label}: {size} bytes, over the limit of {max_bytes}")
        with path.open("rb") as handle:
            magic = handle.read(6)
            if magic.startswith(b"PK\x03\x04") or magic.startswith(b"PK\x05\x06"):
                raise ArrayError(f"{label}: an .npz archive (zip), not a .npy array; pass one array saved with np.save")
            if magic != b"\x93NUMPY":
                raise ArrayError(f"{label}: not a readable .npy file (no NUMPY magic)")
            handle.seek(0)
            shape, fortran_order, dtype = _header(handle, label)
            offset = handle.tell()
            count = 1
            for d in shape:
                count *= d
            _check_dtype(dtype, label)
            if count == 0:
                raise ArrayError(f"{label}: zero-size array of shape {shape}")
            need = count * dtype.itemsize
            if offset + need != size:
                raise ArrayError(f"{label}: not a readable .npy file: the header claims {need} bytes of data for "
                                 f"shape {shape} {dtype}, the file holds {size - offset}")
            data = np.fromfile(handle, dtype=dtype, count=count)
    except OSError as exc:
        raise ArrayError(f"{label}: cannot read {what} file: {exc.strerror or exc}") from None
    if data.size != count:
        raise ArrayError(f"{label}: not a readable .npy file: truncated while reading")
    array = data.reshape(shape[::-1]).transpose() if fortran_order else data.reshape(shape)
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ArrayError(f"{label}: non-finite values at index {index} ({int(bad.sum())} of {array.size} "
                             f"values are NaN or infinite)")
    return array


def _header(handle, label: str):
    try:
        version = npy_format.read_magic(handle)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(handle, max_header_size=MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(handle, max_header_size=MAX_HEADER_BYTES)
        else:
            shape, fortran_order, dtype = npy_format._read_array_header(handle, version,
                                                                       max_header_size=MAX_HEADER_BYTES)
    except (ValueError, TypeError, SyntaxError, EOFError, KeyError, MemoryError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArrayError(f"{label}: not a readable .npy file: damaged header: {first}") from None
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ArrayError(f"{label}: not a readable .npy file: damaged header: shape {shape!r}")
    return shape, fortran_order, dtype


def _check_dtype(dtype: np.dtype, label: str) -> None:
    if dtype.hasobject:
        raise ArrayError(f"{label}: object arrays are refused (they would need pickle); save a numeric array")
    if dtype.kind == "c":
        raise ArrayError(f"{label}: complex dtype {dtype} is refused; expected real numbers")
    if dtype.kind not in "iuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise ArrayError(f"{label}: non-numeric dtype {dtype}; expected an integer or floating array")
