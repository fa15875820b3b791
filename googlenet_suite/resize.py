"""Images to the model's input: ``preprocess`` scales uint8 images to [0, 1] floats and resizes them bilinearly
(as the frameworks' own resize layers do), in chunks so that its temporaries stay bounded."""

from __future__ import annotations

import numpy as np

_RESIZE_CHUNK = 256  # images per step of ``preprocess``: bounds its temporaries


def preprocess(x: np.ndarray, *, resize: int | None) -> np.ndarray:
    """Images N x C x H x W to float32 in [0, 1], resized to ``resize`` x ``resize`` (``None``: kept as they are).

    uint8 is divided by 255; a float array is taken to be in [0, 1] already. The resize is bilinear with
    half-pixel centres and no antialiasing, as ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` (within 1e-5: torch computes the source coordinates in float32, this in
    float64), computed here in numpy so every framework gets the same numbers. It runs
    ``_RESIZE_CHUNK`` images at a time into one preallocated output."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"preprocess: expected images N x C x H x W. Received: shape {x.shape}")
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"preprocess: expected uint8 or float images. Received: dtype {x.dtype}")
    if resize is not None and (not isinstance(resize, (int, np.integer)) or resize < 1):
        raise ValueError(f"preprocess: resize must be an integer >= 1 or None. Received: resize={resize!r}")
    n, c, h, w = x.shape
    size = (h, w) if resize is None else (resize, resize)
    out = np.empty((n, c, *size), dtype=np.float32)  # N x C x resize x resize
    for start in range(0, n, _RESIZE_CHUNK):
        chunk = x[start:start + _RESIZE_CHUNK]
        chunk = chunk.astype(np.float32) / np.float32(255) if chunk.dtype == np.uint8 else chunk.astype(np.float32)
        out[start:start + len(chunk)] = chunk if size == (h, w) else resize_bilinear(chunk, resize)
    return out


def resize_bilinear(x: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes of a float32 array to ``size`` x ``size`` (or ``(H, W)``), one axis at
    a time."""
    height, width = (size, size) if isinstance(size, (int, np.integer)) else size
    return _resize_axis(_resize_axis(x, height, axis=-2), width, axis=-1)


def _resize_axis(x: np.ndarray, size: int, *, axis: int) -> np.ndarray:
    n_in = x.shape[axis]
    if n_in == size:
        return x
    lo, hi, frac = _bilinear_taps(n_in, size)
    a, b = np.take(x, lo, axis=axis), np.take(x, hi, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = size
    return a + (b - a) * frac.reshape(shape)  # exact where a == b: a constant image stays constant


def _bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output position: the two input positions it lies between and its weight on the second.

    Half-pixel centres: output i samples input coordinate (i + 0.5) * n_in / n_out - 0.5, clamped to
    [0, n_in - 1] (the edges repeat)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)
