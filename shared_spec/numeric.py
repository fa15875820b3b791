"""A numpy forward of single spec layers, with the knobs the well-known traps turn.

The oracle (``oracle.py``) computes shapes; this computes values, one layer at a time, in float64, channels-first,
from the neutral weights (``Spec.weight_shapes()`` keys). ``googlenet-suite check`` uses it to re-run the layer
where a user's model first diverges with each trap applied (``'same'`` padding at stride 2, floor vs ceil, zero
pool padding, LRN's alpha and window, BN eps, flatten order, fixed vs adaptive pooling, a missing ReLU) and to name
the one that reproduces the user's output. Every keyword's default is the spec's own semantics (PyTorch's).

No deep-learning framework is imported here.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .oracle import ceil_extra_padding, pool_output_size
from .spec import AdaptiveAvgPool, Conv, Dense, Dropout, Flatten, GlobalAvgPool, LRN, Pool

Padding = tuple[int, int, int, int]  # top, bottom, left, right


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/Keras ``padding='same'``: (before, after) along one axis; the odd cell goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def keras_same(layer, hw: tuple[int, int]) -> Padding:
    """What Keras's ``'same'`` pads for ``layer`` (conv or pool) on an ``hw`` map, per side."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    top, bottom = same_padding(hw[0], kh, sh)
    left, right = same_padding(hw[1], kw, sw)
    return top, bottom, left, right


def _windows(x: np.ndarray, kernel, stride) -> np.ndarray:
    """(N, C, OH, OW, kh, kw) view of the (already padded) ``x``."""
    view = sliding_window_view(x, kernel, axis=(2, 3))
    return view[:, :, ::stride[0], ::stride[1]]


def conv(layer: Conv, x: np.ndarray, weights: Mapping[str, np.ndarray], *, padding: Padding | None = None,
         eps: float | None = None, activation: bool = True) -> np.ndarray:
    """A conv unit: convolution (zero padding per side), BatchNorm in eval mode, ReLU."""
    top, bottom, left, right = layer.padding if padding is None else padding
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    w = np.asarray(weights[f"{layer.name}.conv.weight"], np.float64)
    out = np.einsum("nchwij,ocij->nohw", _windows(xp, layer.kernel, layer.stride), w, optimize=True)
    if layer.bias:
        out = out + np.asarray(weights[f"{layer.name}.conv.bias"], np.float64)[None, :, None, None]
    if layer.norm is not None:
        b, m, v = (np.asarray(weights[f"{layer.name}.bn.{key}"], np.float64)[None, :, None, None]
                   for key in ("beta", "running_mean", "running_var"))
        g = np.asarray(weights[f"{layer.name}.bn.gamma"], np.float64)[None, :, None, None] if layer.norm.scale else 1.0
        out = (out - m) / np.sqrt(v + (layer.norm.eps if eps is None else eps)) * g + b
    if activation and layer.activation == "relu":
        out = np.maximum(out, 0.0)
    return out


def pool(layer: Pool, x: np.ndarray, *, padding: Padding | None = None, rounding: str | None = None,
         pad_value: float | None = None, count_include_pad: bool | None = None) -> np.ndarray:
    """Max or average pool with PyTorch's semantics: padding never wins a max (``pad_value=None``: -inf), an
    average counts the declared padding when ``count_include_pad`` but never the ceil mode's extra cells."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    top, bottom, left, right = layer.padding if padding is None else padding
    rounding = layer.rounding if rounding is None else rounding
    include = layer.count_include_pad if count_include_pad is None else count_include_pad
    extra_h = ceil_extra_padding(h, kh, sh, top, bottom, rounding)
    extra_w = ceil_extra_padding(w, kw, sw, left, right, rounding)
    oh = pool_output_size(h, kh, sh, top, bottom, rounding)
    ow = pool_output_size(w, kw, sw, left, right, rounding)
    pads = ((0, 0), (0, 0), (top, bottom + extra_h), (left, right + extra_w))
    if layer.op == "maxpool":
        fill = -np.inf if pad_value is None else pad_value
        view = _windows(np.pad(x, pads, constant_values=fill), (kh, kw), (sh, sw))
        return view.max(axis=(-2, -1))[:, :, :oh, :ow]
    fill = 0.0 if pad_value is None else pad_value
    sums = _windows(np.pad(x, pads, constant_values=fill), (kh, kw), (sh, sw)).sum(axis=(-2, -1))[:, :, :oh, :ow]
    mask = np.zeros((1, 1, h + top + bottom + extra_h, w + left + right + extra_w))
    if include:
        mask[:, :, : h + top + bottom, : w + left + right] = 1.0
    else:
        mask[:, :, top: top + h, left: left + w] = 1.0
    counts = _windows(mask, (kh, kw), (sh, sw)).sum(axis=(-2, -1))[:, :, :oh, :ow]
    return sums / counts


def adaptive_avgpool(x: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """PyTorch's adaptive average pool: window i covers [floor(i*H/out), ceil((i+1)*H/out))."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    out = np.empty((n, c, *output_size))
    for i in range(output_size[0]):
        rows = slice(i * h // output_size[0], -(-(i + 1) * h // output_size[0]))
        for j in range(output_size[1]):
            cols = slice(j * w // output_size[1], -(-(j + 1) * w // output_size[1]))
            out[:, :, i, j] = x[:, :, rows, cols].mean(axis=(2, 3))
    return out


def fixed_avgpool(x: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """A plain (non-overlapping-rule) average pool that gives ``output_size``: stride floor(H/out), kernel
    H - (out-1)*stride (14 -> 4: the paper's 5/3), no padding."""
    x = np.asarray(x, np.float64)
    h, w = x.shape[2:]
    sh, sw = max(h // output_size[0], 1), max(w // output_size[1], 1)
    kh, kw = h - (output_size[0] - 1) * sh, w - (output_size[1] - 1) * sw
    return _windows(x, (kh, kw), (sh, sw)).mean(axis=(-2, -1))


def lrn(layer: LRN, x: np.ndarray, *, alpha_per_size: bool = True, window: int | None = None) -> np.ndarray:
    """PyTorch/Caffe LRN: b = a / (k + alpha/size * sum of a^2 over ``size`` channels centred on a)^beta.
    ``alpha_per_size=False``: alpha not divided by the size (TF's form read as PyTorch's); ``window``: channels
    summed (TF's ``depth_radius=size`` read as a size gives 2*size+1)."""
    x = np.asarray(x, np.float64)
    size = layer.size if window is None else window
    before, after = size // 2, (size - 1) // 2
    squares = np.pad(x ** 2, ((0, 0), (before, after), (0, 0), (0, 0)))
    total = sum(squares[:, i: i + x.shape[1]] for i in range(size))
    alpha = layer.alpha / layer.size if alpha_per_size else layer.alpha
    return x / (layer.k + alpha * total) ** layer.beta


def flatten(x: np.ndarray, *, channels_last: bool = False) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if channels_last and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    return x.reshape(x.shape[0], -1)


def dense(layer: Dense, x: np.ndarray, weights: Mapping[str, np.ndarray], *, activation: bool = True,
          source_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``x @ W.T + b``; with ``source_shape`` (C, H, W), ``x`` is first re-ordered as an NHWC flatten of that map
    would order it (the weights stay in the spec's channels-first order): the flatten-order trap."""
    x = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    if source_shape is not None and len(source_shape) == 3:
        x = x.reshape(x.shape[0], *source_shape).transpose(0, 2, 3, 1).reshape(x.shape[0], -1)
    out = x @ np.asarray(weights[f"{layer.name}.weight"], np.float64).T
    if layer.bias:
        out = out + np.asarray(weights[f"{layer.name}.bias"], np.float64)
    if activation and layer.activation == "relu":
        out = np.maximum(out, 0.0)
    return out


def forward(layer, x: np.ndarray, weights: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """One leaf layer with the spec's semantics (eval mode); None for an op without a leaf rule."""
    if isinstance(layer, Conv):
        return conv(layer, x, weights)
    if isinstance(layer, Pool):
        return pool(layer, x)
    if isinstance(layer, GlobalAvgPool):
        return np.asarray(x, np.float64).mean(axis=(2, 3), keepdims=True)
    if isinstance(layer, AdaptiveAvgPool):
        return adaptive_avgpool(x, layer.output_size)
    if isinstance(layer, LRN):
        return lrn(layer, x)
    if isinstance(layer, Dropout):
        return np.asarray(x, np.float64)
    if isinstance(layer, Flatten):
        return flatten(x)
    if isinstance(layer, Dense):
        return dense(layer, x, weights)
    return None
