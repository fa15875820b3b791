"""torchvision-format checkpoints: a plain ``state_dict`` written by ``torch.save``, read back only with
``torch.load(weights_only=True)`` (no code runs on load). numpy in, numpy out: the key mapping to the suite's
names is framework-free (``googlenet_suite/convert/``).

Every bad file is a one-line :class:`shared_spec.weights.WeightsError` naming the file (and the key).
"""

from __future__ import annotations

import os
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from shared_spec.weights import WeightsError

#: where a written state_dict keeps its provenance: ``state_dict._metadata`` (torch's own per-module metadata,
#: which ``load_state_dict`` reads by module prefix; no module has this name, so it changes nothing there)
METADATA_KEY = "googlenet_suite"


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reason(exc: Exception) -> str:
    """The informative part of torch.load's message: the WeightsUnpickler's own words when there are any
    (``Unsupported global: GLOBAL mymodule.Trainer ...``), not the paragraph about the weights_only default."""
    text = " ".join(str(exc).replace("\x1b[1m", "").replace("\x1b[0m", "").split())
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].split(" Check the documentation", 1)[0].split(" Please use", 1)[0]
    return f"{type(exc).__name__}: {text.strip()[:150] or type(exc).__name__}"


def check_archive(path: Path) -> None:
    """A zip checkpoint (torch.save's format since 1.6) whose every member matches its CRC-32: torch.load
    itself does not check, so a flipped bit would reach the weights without a word."""
    try:
        if not zipfile.is_zipfile(path):
            return  # torch's legacy format, or not a checkpoint: torch.load says which
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as exc:  # BadZipFile, struct.error, EOFError, ...: the zip boundary is one guarded call
        raise WeightsError(f"{path}: damaged zip archive: {_reason(exc)}") from None
    if damaged is not None:
        raise WeightsError(f"{path}: damaged zip archive: member {_short(damaged)} does not match its CRC-32 "
                           f"(the file changed after it was written)")


def _array(path: Path, key: str, value: torch.Tensor) -> np.ndarray:
    """One tensor as numpy; a dtype or layout numpy cannot hold (bfloat16, float8, sparse, quantized) is one
    line naming the key (suite weights are float32: no silent cast)."""
    if value.layout != torch.strided or value.is_quantized:
        raise WeightsError(f"{path}: key {_short(key)} is a {str(value.layout).replace('torch.', '')}"
                           f"{' quantized' if value.is_quantized else ''} tensor; expected a dense float32 tensor")
    try:
        return value.detach().cpu().resolve_conj().resolve_neg().numpy()
    except (TypeError, RuntimeError) as exc:
        raise WeightsError(f"{path}: key {_short(key)} has dtype {str(value.dtype).replace('torch.', '')}, which "
                           f"numpy cannot hold; expected float32 (save it with .float())") from None


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(arrays, metadata)`` of a ``torch.save``'d plain state_dict: a mapping of names to tensors."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint file")
    check_archive(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError (a global weights_only refuses), RuntimeError (not a torch file) ...
        raise WeightsError(f"{path}: not a plain state_dict that torch.load(weights_only=True) accepts: "
                           f"{_reason(exc)}") from None
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: not a plain state_dict: the file holds a {type(state).__name__}, "
                           f"expected a mapping of names to tensors")
    arrays = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise WeightsError(f"{path}: not a plain state_dict: key {_short(key)} is not a string")
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: not a plain state_dict: key {_short(key)} holds a {type(value).__name__}, "
                               f"not a tensor (a training checkpoint? save model.state_dict() alone)")
        arrays[key] = _array(path, key, value)
    meta = getattr(state, "_metadata", None) or {}
    found = meta.get(METADATA_KEY) if isinstance(meta, Mapping) else None
    return arrays, {str(k): str(v) for k, v in found.items()} if isinstance(found, Mapping) else {}


def write_state_dict(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> None:
    """``torch.save`` of an ``OrderedDict`` of tensors (int64 stays int64: ``num_batches_tracked``), with
    ``metadata`` in its ``_metadata``; loads with ``load_state_dict(strict=True)`` into torchvision's module."""
    state = OrderedDict((key, torch.from_numpy(np.ascontiguousarray(value)).clone()) for key, value in arrays.items())
    state._metadata = OrderedDict({METADATA_KEY: dict(metadata)})
    torch.save(state, os.fspath(path))
