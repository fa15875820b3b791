"""Keras weight files of ``keras.applications.InceptionV3``, read and written through Keras itself: the network
is built (``weights=None``) and ``load_weights`` / ``save_weights`` do the file, so every file Keras reads is read
as Keras reads it. numpy in, numpy out, in the neutral layout (OIHW kernels, dense ``(out, in)``); the map to the
suite's names, through the model's data flow, is framework-free (``googlenet_suite/convert/keras.py``).

Two files, both what Keras itself reads:

- ``*.weights.h5``: Keras 3's ``model.save_weights``;
- any other ``*.h5``: the Keras 2 layout ``keras.applications`` downloads
  (``inception_v3_weights_tf_dim_ordering_tf_kernels.h5``: root attribute ``layer_names``, each layer's
  ``weight_names``), which Keras 3 loads layer by layer in order; written with Keras's own legacy writer.

Every bad file is a one-line :class:`shared_spec.weights.WeightsError` naming the file.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Mapping

import h5py
import numpy as np

import keras
from shared_spec.weights import WeightsError

from . import check as adapter

KERAS3_SUFFIX = ".weights.h5"
LEGACY_SUFFIXES = (".h5", ".hdf5")


def application(num_classes: int):
    """``keras.applications.InceptionV3`` as the suite's ``inception-v3-keras`` is: logits, ``num_classes``."""
    return keras.applications.InceptionV3(weights=None, classifier_activation=None, classes=num_classes)


def layout(model) -> dict:
    """The model's parameters (``name``, ``module``, ``role``, neutral ``shape``) and its data flow (``edges``,
    ``outputs``), as ``check`` reads a functional Keras model."""
    params = [{k: v for k, v in p.items() if k != "_var"} for p in adapter.parameters(model)]
    return {"params": params, "flow": adapter.flow(model)}


def _neutral(role: str, value: np.ndarray) -> np.ndarray:
    if role == "conv.weight":
        return np.ascontiguousarray(value.transpose(3, 2, 0, 1))  # HWIO -> OIHW
    if role == "dense.weight":
        return np.ascontiguousarray(value.T)
    return value


def _reason(exc: Exception) -> str:
    """Keras's message in one line (its first two: 'A total of 1 objects could not be loaded. Example error
    message for object <Conv2D ...>:' and the example itself)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {' '.join(lines[:2])[:240]}" if lines else type(exc).__name__


def read_inception_v3(path: str | os.PathLike, *, num_classes: int) -> tuple[dict[str, np.ndarray], dict]:
    """``(values by parameter name, layout)`` of a weight file of ``InceptionV3(classes=num_classes)``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such Keras weights file")
    if not path.name.endswith(LEGACY_SUFFIXES):
        raise WeightsError(f"{path}: a Keras weights file ends with {KERAS3_SUFFIX} (Keras 3) or .h5 (Keras 2)")
    if not h5py.is_hdf5(path):
        raise WeightsError(f"{path}: not an HDF5 file (Keras weights files are HDF5)")
    model = application(num_classes)
    try:
        with warnings.catch_warnings():  # Keras warns about each part it skips, then raises: the error says it
            warnings.simplefilter("ignore")
            model.load_weights(path)
    except Exception as exc:  # ValueError (counts, shapes), KeyError/OSError (layout): one line, the file named
        raise WeightsError(f"{path}: not keras.applications.InceptionV3's weights ({num_classes} classes, "
                           f"include_top): {_reason(exc)}") from None
    values = {p["name"]: _neutral(p["role"], keras.ops.convert_to_numpy(p["_var"]))
              for p in adapter.parameters(model)}
    return values, layout(model)


def write_inception_v3(path: str | os.PathLike, values: Callable[[dict], Mapping[str, np.ndarray]], *,
                       num_classes: int, legacy: bool) -> None:
    """Write ``InceptionV3(classes=num_classes)``'s weights, ``values(layout)`` by parameter name in the neutral
    layout (the caller maps them through the layout of the model built here): Keras 3's ``save_weights``, or with
    ``legacy`` the Keras 2 layout Keras's legacy writer makes."""
    model = application(num_classes)
    adapter.load(model, dict(values(layout(model))))
    path = Path(path)
    if legacy:
        from keras.src.legacy.saving import legacy_h5_format  # Keras 3 writes the Keras 2 layout only here

        with h5py.File(path, "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, model)
        return
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:  # save_weights insists on the .weights.h5 name
        staged = Path(tmp) / f"model{KERAS3_SUFFIX}"
        model.save_weights(staged)
        os.replace(staged, path)
