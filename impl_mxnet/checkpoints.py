"""GluonCV-format parameter files: ``mx.nd.save`` / ``mx.nd.load`` of a dict of names to NDArrays (what
``net.save_parameters`` of an MXNet 1.x model zoo network writes in its legacy, name-keyed form). numpy in,
numpy out: the key mapping is framework-free (``googlenet_suite/convert/``).

Every bad file is a one-line :class:`shared_spec.weights.WeightsError` naming the file (and the key). The file's
layout is read and checked in Python before MXNet sees it (:func:`read_layout`): MXNet's own loader trusts
the counts and shapes it reads, and a sparse array whose indices are out of range loads, then aborts the
process when it is made dense. Parameter files hold dense arrays; sparse storage is refused by name.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Mapping

import mxnet as mx
import numpy as np

from shared_spec.weights import WeightsError

LIST_MAGIC = 0x112  # kMXAPINDArrayListMagic: the head of an mx.nd.save file
NDARRAY_MAGICS = {0xF993FAC9: "v2", 0xF993FACA: "v3"}  # NDARRAY_V2_MAGIC (MXNet 1.x), V3 (numpy shapes)
STORAGE = {0: "default", 1: "row_sparse", 2: "csr"}  # storage type -> its aux arrays: row_sparse 1, csr 2
AUX_COUNT = {"default": 0, "row_sparse": 1, "csr": 2}
#: mshadow type flags -> (numpy name, item size)
TYPE_FLAGS = {0: ("float32", 4), 1: ("float64", 8), 2: ("float16", 2), 3: ("uint8", 1), 4: ("int32", 4),
              5: ("int8", 1), 6: ("int64", 8), 7: ("bool", 1), 8: ("int16", 2), 9: ("uint16", 2),
              10: ("uint32", 4), 11: ("uint64", 8), 12: ("bfloat16", 2)}
MAX_NDIM = 32
DEVICE_TYPES = {1: "cpu", 2: "gpu", 3: "cpu_pinned", 5: "cpu_shared"}  # Context::DeviceType


@dataclass(frozen=True, slots=True)
class Entry:
    """One array as the file describes it, before anything is allocated."""

    storage: str
    shape: tuple[int, ...]
    dtype: str


class _Reader:
    """Little-endian fields from a file, never past its end."""

    def __init__(self, handle: BinaryIO, size: int, path: Path):
        self.handle, self.size, self.path = handle, size, path

    def left(self) -> int:
        return self.size - self.handle.tell()

    def take(self, fmt: str, what: str):
        need = struct.calcsize(fmt)
        if self.left() < need:
            raise WeightsError(f"{self.path}: not an MXNet parameter file: truncated in {what}")
        return struct.unpack(fmt, self.handle.read(need))

    def skip(self, count: int, what: str) -> None:
        if count > self.left():
            raise WeightsError(f"{self.path}: not an MXNet parameter file: {what} needs {count} bytes, "
                               f"{self.left()} are left; truncated?")
        self.handle.seek(count, os.SEEK_CUR)

    def shape(self, what: str, version: str) -> tuple[int, ...] | None:
        (ndim,) = self.take("<i", what)
        if ndim == -1 and version == "v3" or ndim == 0 and version == "v2":
            return None  # an array of unknown shape (MXNet writes nothing more for it)
        if not 0 <= ndim <= MAX_NDIM:
            raise WeightsError(f"{self.path}: not an MXNet parameter file: {what} has {ndim} dimensions")
        dims = self.take(f"<{ndim}q", what)
        if any(d < 0 for d in dims):
            raise WeightsError(f"{self.path}: not an MXNet parameter file: {what} has shape {dims}")
        return tuple(dims)


def _entry(read: _Reader, index: int) -> Entry | None:
    what = f"array #{index}"
    (magic,) = read.take("<I", what)
    version = NDARRAY_MAGICS.get(magic)
    if version is None:
        raise WeightsError(f"{read.path}: not an MXNet 1.x parameter file: {what} has magic {magic:#x} "
                           f"(expected NDArray v2 or v3; files of MXNet before 1.0 are not read)")
    (code,) = read.take("<i", what)
    storage = STORAGE.get(code)
    if storage is None:
        raise WeightsError(f"{read.path}: not an MXNet parameter file: {what} has storage type {code}")
    stored = read.shape(f"{what}'s storage shape", version) if AUX_COUNT[storage] else None
    shape = read.shape(f"{what}'s shape", version)
    if shape is None:
        return None
    (device, _) = read.take("<ii", f"{what}'s context")
    if device not in DEVICE_TYPES:
        raise WeightsError(f"{read.path}: not an MXNet parameter file: {what} has device type {device}")
    (flag,) = read.take("<i", f"{what}'s dtype")
    if flag not in TYPE_FLAGS:
        raise WeightsError(f"{read.path}: not an MXNet parameter file: {what} has dtype code {flag}")
    dtype, itemsize = TYPE_FLAGS[flag]
    aux = []
    for _ in range(AUX_COUNT[storage]):
        (aux_flag,) = read.take("<i", f"{what}'s index type")
        aux.append((TYPE_FLAGS.get(aux_flag, ("?", 8))[1], read.shape(f"{what}'s index shape", version) or ()))
    read.skip(int(np.prod(stored if stored is not None else shape, dtype=object)) * itemsize, f"{what}'s data")
    for size, aux_shape in aux:
        read.skip(int(np.prod(aux_shape, dtype=object)) * size, f"{what}'s indices")
    return Entry(storage, shape, dtype)


def read_layout(path: str | os.PathLike) -> dict[str, Entry | None] | list[Entry | None]:
    """The names and arrays an ``mx.nd.save`` file holds, read from its layout without allocating any array:
    every count, shape and size is checked against the bytes that are there."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            read = _Reader(handle, size, path)
            if read.left() < 24 or read.take("<Q", "the header")[0] != LIST_MAGIC:
                raise WeightsError(f"{path}: not an MXNet parameter file (mx.nd.save): no NDArray list magic "
                                   f"(Invalid NDArray file format)")
            read.take("<Q", "the header")
            (count,) = read.take("<Q", "the array count")
            if count * 12 > read.left():  # each array takes at least its magic, storage type and ndim
                raise WeightsError(f"{path}: not an MXNet parameter file: {count} arrays cannot fit in "
                                   f"{read.left()} bytes; truncated?")
            entries = [_entry(read, i) for i in range(count)]
            (names,) = read.take("<Q", "the name count")
            if names not in (0, count):
                raise WeightsError(f"{path}: not an MXNet parameter file: {names} names for {count} arrays")
            keys = []
            for i in range(names):
                (length,) = read.take("<Q", f"name #{i}")
                if length > read.left():
                    raise WeightsError(f"{path}: not an MXNet parameter file: name #{i} is {length} bytes long, "
                                       f"{read.left()} are left; truncated?")
                keys.append(handle.read(length).decode("utf-8", errors="replace"))
            if read.left():
                raise WeightsError(f"{path}: not an MXNet parameter file: {read.left()} bytes after the last name")
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read parameter file: {exc.strerror or exc}") from None
    return dict(zip(keys, entries)) if names else entries


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such parameter file")
    layout = read_layout(path)
    if not isinstance(layout, dict):
        raise WeightsError(f"{path}: the MXNet file holds a list of {len(layout)} arrays without names; "
                           f"expected a name -> array dict (net.save_parameters)")
    for key, entry in layout.items():
        if entry is None:
            raise WeightsError(f"{path}: key {_short(key)} is an array without a shape (never initialised?)")
        if entry.storage != "default":  # refused before MXNet makes it dense (out-of-range indices abort)
            raise WeightsError(f"{path}: key {_short(key)} is stored {entry.storage} (sparse); a parameter file "
                               f"holds dense arrays")
    try:
        loaded = mx.nd.load(str(path))
        return {str(key): value.asnumpy() for key, value in loaded.items()}
    except Exception as exc:  # MXNetError (its message carries the C++ frame: keep its last line), MemoryError
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise WeightsError(f"{path}: not an MXNet parameter file (mx.nd.load): {lines[-1][:150]}") from None


def write_params(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    mx.nd.save(os.fspath(path), {key: mx.nd.array(np.asarray(value), dtype=np.asarray(value).dtype)
                                 for key, value in arrays.items()})
