"""Each format's files as ``name -> array`` in that format's own names, and back. The framework's own file IO
lives in its package, found through the registry: ``impl_torch.checkpoints`` (``torch.load(weights_only=True)``
/ ``torch.save``), ``impl_mxnet.checkpoints`` (``mx.nd.load`` / ``mx.nd.save``), ``impl_tf.checkpoints`` (Keras's
``load_weights`` / ``save_weights``). safetensors files are read and written with ``safetensors.numpy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

import shared_spec
from shared_spec import InputError
from shared_spec import weights as W

from .. import frameworks as fw_registry
from ..console import write_file
from . import gluoncv, keras, torchvision

DDP_PREFIX = "module."  # torch.nn.parallel.DistributedDataParallel / DataParallel wrap the model as .module
_NOT_NUMPY = {"BF16", "F8_E4M3", "F8_E5M2"}  # safetensors dtypes numpy has no type for


def short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Arrays:
    """A file's arrays with its own names. ``naming`` tells the forms of a format apart (``gluoncv``: parameter
    names; ``gluoncv-blocks``: block paths); ``layout`` is a Keras model's parameters and graph."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, str]
    naming: str
    layout: dict | None = field(default=None, compare=False)


#: naming -> (spec, family, a Keras model's layout) -> suite weight key -> the file's name for it
NAMES: dict[str, Callable[[shared_spec.Spec, str, dict | None], dict[str, str]]] = {
    "suite": lambda spec, family, layout: {key: key for key in spec.weight_shapes()},
    "torchvision": lambda spec, family, layout: torchvision.names(spec, family),
    "gluoncv": lambda spec, family, layout: gluoncv.names(spec, family),
    "gluoncv-blocks": lambda spec, family, layout: gluoncv.block_names(spec, family),
    "keras": lambda spec, family, layout: keras.names(spec, layout),
}


def names(naming: str, spec: shared_spec.Spec, family: str, layout: dict | None = None) -> dict[str, str]:
    """Suite weight key -> the name a file of ``naming`` gives it."""
    return NAMES[naming](spec, family, layout)


def framework(key: str, fmt: str):
    try:
        fw_registry.load(key)
    except fw_registry.FrameworkMissing as exc:
        raise InputError(f"convert: the {fmt} format needs {exc}") from None
    return fw_registry.part(key, "checkpoints")


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    header, _ = W.read_header(path)  # damaged or truncated headers: one line naming the file
    for key, entry in header.items():  # numpy holds no bfloat16 or float8: named here, not a reader's error
        if entry["dtype"] in _NOT_NUMPY or entry["dtype"] not in W.SAFETENSORS_DTYPES:
            name = W.SAFETENSORS_DTYPES.get(entry["dtype"], short(entry["dtype"]))
            raise W.WeightsError(f"{path}: key {short(key)} has dtype {name}; expected float32")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise W.WeightsError(f"{path}: not a readable safetensors file: {first}") from None


def _strip_module_prefix(path, arrays: dict[str, np.ndarray], notes: list[str]) -> dict[str, np.ndarray]:
    """A state_dict of a model wrapped in DistributedDataParallel or DataParallel: every key ``module.``..."""
    if not arrays or not all(key.startswith(DDP_PREFIX) for key in arrays):
        return arrays
    notes.append(f"note: {path}: every key starts with {DDP_PREFIX!r} (the state_dict of a DistributedDataParallel "
                 f"or DataParallel model): read without it")
    return {key[len(DDP_PREFIX):]: value for key, value in arrays.items()}


def _suite(path: Path, spec, family, notes) -> Arrays:
    arrays, meta = W.load_weights(path)
    return Arrays(arrays, meta, "suite")


def _torchvision(path: Path, spec, family, notes) -> Arrays:
    arrays, meta = (_read_safetensors(path) if path.suffix == ".safetensors"
                    else framework("torch", "torchvision").read_state_dict(path))
    return Arrays(_strip_module_prefix(path, arrays, notes), meta, "torchvision")


def _gluoncv(path: Path, spec, family, notes) -> Arrays:
    arrays = framework("mxnet", "gluoncv").read_params(path)
    if arrays and all("." in key for key in arrays):
        return Arrays(gluoncv.dedupe_blocks(path, arrays), {}, "gluoncv-blocks")
    return Arrays(gluoncv.strip_prefix(path, arrays, family), {}, "gluoncv")


def _keras(path: Path, spec, family, notes) -> Arrays:
    values, layout = framework("tf", "keras").read_inception_v3(path, num_classes=spec.num_classes)
    return Arrays(values, {}, "keras", layout)


READERS = {"suite": _suite, "torchvision": _torchvision, "gluoncv": _gluoncv, "keras": _keras}


def read_arrays(fmt: str, path: Path, spec: shared_spec.Spec, family: str, notes: list[str]) -> Arrays:
    """A file of format ``fmt`` with the format's own names (a Keras file as the network ``spec``'s classes)."""
    if not path.is_file():
        raise W.WeightsError(f"{path}: no such file")
    return READERS[fmt](path, spec, family, notes)


# --------------------------------------------------------------------------- writing


def _torchvision_arrays(weights, spec, family) -> dict[str, np.ndarray]:
    mapped = names("torchvision", spec, family)
    arrays = {mapped[key]: np.ascontiguousarray(weights[key], dtype=np.float32) for key in spec.weight_shapes()}
    for counter in torchvision.counters(spec, family):
        arrays[counter] = np.zeros((), dtype=np.int64)
    return {key: arrays[key] for key in torchvision.order(list(arrays), family)}


def write_weights(fmt: str, path: Path, weights: Mapping[str, np.ndarray], spec: shared_spec.Spec, family: str,
                  provenance: Mapping[str, str]) -> None:
    if fmt == "suite":
        W.check_weights(spec, weights)
        write_file(path, lambda tmp: W.save_weights(tmp, weights, spec, extra=provenance))
    elif fmt == "torchvision":
        arrays = _torchvision_arrays(weights, spec, family)
        meta = {**W.metadata(spec), "format": "torchvision state_dict (googlenet-suite convert)", **provenance}
        if path.suffix == ".safetensors":
            from safetensors.numpy import save_file

            write_file(path, lambda tmp: save_file(arrays, tmp, metadata=meta))
        else:
            checkpoints = framework("torch", fmt)
            write_file(path, lambda tmp: checkpoints.write_state_dict(tmp, arrays, meta))
    elif fmt == "keras":
        if not path.name.endswith((".h5", ".hdf5")):
            raise InputError(f"--output {path}: a Keras weights file ends with .weights.h5 (Keras 3's save_weights) "
                             f"or .h5 (the Keras 2 layout keras.applications downloads)")
        checkpoints = framework("tf", fmt)

        def values(layout: dict) -> dict[str, np.ndarray]:
            mapped = names("keras", spec, family, layout)
            return {mapped[key]: np.asarray(weights[key], np.float32) for key in spec.weight_shapes()}

        legacy = not path.name.endswith(".weights.h5")
        write_file(path, lambda tmp: checkpoints.write_inception_v3(tmp, values, num_classes=spec.num_classes,
                                                                    legacy=legacy))
    else:
        mapped = names("gluoncv", spec, family)
        arrays = {mapped[key]: np.ascontiguousarray(weights[key], dtype=np.float32) for key in spec.weight_shapes()}
        checkpoints = framework("mxnet", fmt)
        write_file(path, lambda tmp: checkpoints.write_params(tmp, arrays))
