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
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from .spec import Spec, SpecError

FORMAT = "googlenet-suite/weights-v1"
LAYOUT = "conv OIHW; dense (out, in), in = channels-first flatten order; bn gamma, beta, running_mean, running_var"


class WeightsError(SpecError):
    """Weights that do not fit a spec, or a weight file that cannot be read. One line."""


def check_weights(spec: Spec, weights: Mapping[str, np.ndarray], *, source: str = "weights") -> None:
    """Raise :class:`WeightsError` naming the first missing, extra or mis-shaped key."""
    expected = spec.weight_shapes()
    for key, shape in expected.items():
        if key not in weights:
            raise WeightsError(f"{source}: missing key {key!r} (expected shape {shape}) for variant {spec.variant!r}")
        got = tuple(np.shape(weights[key]))
        if got != shape:
            raise WeightsError(f"{source}: key {key!r} has shape {got}, expected {shape}")
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


def save_weights(path: str | os.PathLike, weights: Mapping[str, np.ndarray], spec: Spec) -> None:
    """Check and write ``weights`` atomically: a failed write leaves no partial file."""
    from safetensors.numpy import save_file

    check_weights(spec, weights)
    path = Path(path)
    arrays = {key: np.ascontiguousarray(np.asarray(value, dtype=np.float32)) for key, value in weights.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        save_file(arrays, tmp, metadata=metadata(spec))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(path: str | os.PathLike, spec: Spec | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a weight file; with ``spec``, also check keys and shapes against it."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weight file")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = dict(handle.metadata() or {})
            weights = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file: {str(exc).splitlines()[0]}") from None
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a googlenet-suite weight file (metadata format={meta.get('format')!r}, "
                           f"expected {FORMAT!r})")
    if spec is not None:
        if meta.get("variant") not in (None, spec.variant):
            raise WeightsError(f"{path}: weights are for variant {meta['variant']!r}, not {spec.variant!r}")
        check_weights(spec, weights, source=str(path))
    return weights, meta
