"""GluonCV-format parameter files: ``mx.nd.save`` / ``mx.nd.load`` of a dict of names to NDArrays (what
``net.save_parameters`` of an MXNet 1.x model zoo network writes in its legacy, name-keyed form). numpy in,
numpy out: the key mapping is framework-free (``googlenet_suite/convert.py``).

Every bad file is a one-line :class:`shared_spec.weights.WeightsError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import mxnet as mx
import numpy as np

from shared_spec.weights import WeightsError


def read_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such parameter file")
    try:
        loaded = mx.nd.load(str(path))
    except Exception as exc:  # MXNetError for anything that is not an NDArray file
        # its message carries the C++ frame ("Traceback ... ndarray.cc, line 1858"): keep its last line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise WeightsError(f"{path}: not an MXNet parameter file (mx.nd.load): {lines[-1][:150]}") from None
    if not isinstance(loaded, dict):
        raise WeightsError(f"{path}: the MXNet file holds a list of {len(loaded)} arrays without names; "
                           f"expected a name -> array dict (net.save_parameters)")
    return {str(key): value.asnumpy() for key, value in loaded.items()}


def write_params(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    mx.nd.save(os.fspath(path), {key: mx.nd.array(np.asarray(value), dtype=np.asarray(value).dtype)
                                 for key, value in arrays.items()})
