"""GoogLeNet as a Keras 3 functional model, built from a ``shared_spec.Spec``.

The model is channels-last and uses ``keras.layers`` / ``keras.ops`` only, so it builds and runs
on Keras's TensorFlow (the default), JAX and PyTorch backends (``KERAS_BACKEND``). The backend
appears only in the utilities below (GPU detection, full-fp32 settings, the gradient in
``train_step``), never inside the model. One table, ``OPS``, maps each spec op to a function that
adds its Keras layers; every number comes from the spec.

Keras layer names are the spec's names. A conv unit ``NAME`` becomes ``NAME.pad`` (when it
pads), ``NAME.conv``, ``NAME.bn`` (when it has BN) and ``NAME.relu`` (when it has ReLU); a
padded max pool ``NAME`` becomes ``NAME.pad`` (``-inf``) and ``NAME``.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import importlib  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from shared_spec import (LRN, AdaptiveAvgPool, Aux, Concat, Conv, Dense, Dropout, Flatten, GlobalAvgPool,  # noqa: E402
                         Layer, Pool, Spec, TransformInput, ceil_extra_padding)
from shared_spec import contract as C  # noqa: E402

from .layers import (AdaptiveAveragePooling2D, BatchNorm, ChannelAffine, ConstantPadding2D,  # noqa: E402
                     ExcludePadAveragePooling2D, LocalResponseNorm)

BACKENDS = ("tensorflow", "jax", "torch")
BACKEND = keras.backend.backend()
if BACKEND not in BACKENDS:
    raise ImportError(f"impl_tf runs on Keras's {', '.join(BACKENDS)} backends; Keras is using {BACKEND!r} "
                      f"(set KERAS_BACKEND before importing keras)")
_backend = importlib.import_module(BACKEND)  # tensorflow, jax or torch itself
# Keras's torch backend registers each variable in a torch ParameterDict under its path ('conv1.conv/kernel'),
# and torch refuses '.' in a parameter name: there the dots of spec names become ':' in Keras layer names.
SEP = ":" if BACKEND == "torch" else "."


def keras_name(name: str) -> str:
    """The Keras layer name for a dotted name (``conv1.conv``): the same, but ``conv1:conv`` on torch."""
    return name.replace(".", SEP)


def _layers_by_name(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """The model's layers keyed by dotted name, whatever the backend."""
    return {layer.name.replace(SEP, "."): layer for layer in model.layers}

# torchvision's trunc_normal_(std=0.01, a=-2, b=2) cuts at 200 standard deviations. A normal draw
# lands beyond 8 of them with probability ~1e-15: past that, truncation changes nothing.
NO_TRUNCATION_SIGMAS = 8.0


# --------------------------------------------------------------------------- the model


class GoogLeNet(keras.Model):
    """A functional model (``keras.Model(inputs, outputs)``) that picks its outputs by mode.

    The graph's outputs are the main logits followed by each aux head's logits in spec order.
    Called with ``training=True`` and aux heads on, it returns ``(main, aux1, aux2)``;
    otherwise the main logits only (the aux heads still run in eval mode, and are dropped).
    """

    def __init__(self, inputs, outputs, *, spec: Spec, **kwargs):
        super().__init__(inputs, outputs, **kwargs)
        self.spec = spec

    def _select(self, outputs, training):
        if not isinstance(outputs, (list, tuple)):
            return outputs
        return tuple(outputs) if training else outputs[0]

    def call(self, inputs, training=None, mask=None):
        return self._select(super().call(inputs, training=training, mask=mask), training)

    def compute_output_spec(self, inputs, training=None, mask=None):
        return self._select(super().compute_output_spec(inputs, training=training, mask=mask), training)


@dataclass
class _Context:
    """What the op functions share while one model is built."""

    spec: Spec
    seed: int | None
    aux_outputs: list = field(default_factory=list)

    def seed_for(self, key: str) -> int | None:
        """A seed per weight, from the build seed and the weight's name (not the build order)."""
        if self.seed is None:
            return None
        return int(np.random.SeedSequence([self.seed, zlib.crc32(key.encode())]).generate_state(1)[0] >> 1)

    def kernel_initializer(self, key: str) -> keras.initializers.Initializer:
        init, seed = self.spec.init, self.seed_for(key)
        if init.weight == "xavier_uniform":
            return keras.initializers.GlorotUniform(seed=seed)
        if init.weight == "trunc_normal":
            low, high = init.a / init.std, init.b / init.std
            if low <= -NO_TRUNCATION_SIGMAS and high >= NO_TRUNCATION_SIGMAS:
                # Keras's TruncatedNormal cuts at 2 sigma: wrong here. A plain normal is the same distribution.
                return keras.initializers.RandomNormal(mean=0.0, stddev=init.std, seed=seed)
            if np.isclose(low, -2.0) and np.isclose(high, 2.0):
                return keras.initializers.TruncatedNormal(mean=0.0, stddev=init.std, seed=seed)
            raise C.ContractError(f"{self.spec.variant}: trunc_normal bounds a={init.a}, b={init.b} at std={init.std} "
                             f"have no Keras initializer (only +-2 sigma or beyond {NO_TRUNCATION_SIGMAS:g} sigma)")
        raise C.ContractError(f"{self.spec.variant}: unknown init. Received: init.weight={init.weight!r}")

    def bias_initializer(self) -> keras.initializers.Initializer:
        return keras.initializers.Constant(self.spec.init.bias)


def same_is_exact(kernel, stride, padding) -> bool:
    """Keras ``padding="same"`` pads exactly like the spec: stride 1, odd kernel, (k - 1) / 2 on each side.

    At stride 1 'same' pads k - 1 in total, split evenly for an odd kernel (max pools ignore the padded
    cells, as -inf padding does). At stride 2 it pads by input size and puts the odd cell after: the
    d2l/keras-hub trap, so every other case pads explicitly. Letting the backend pad inside the conv
    saves a separate padding op per layer (~13% of a plain CPU forward; see googlenet-suite bench).
    Max pools use the more general ``keras_same_padding`` test (padding never wins a max).
    """
    (kh, kw), (top, bottom, left, right) = kernel, padding
    return (tuple(stride) == (1, 1) and kh % 2 == 1 and kw % 2 == 1
            and (top, bottom, left, right) == ((kh - 1) // 2, (kh - 1) // 2, (kw - 1) // 2, (kw - 1) // 2))


def keras_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """What Keras/TF ``padding="same"`` pads before and after one spatial axis of ``size``.

    Output ``ceil(size / stride)``; the total padding that needs, split with the odd cell after.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv(layer: Conv, x, ctx: _Context):
    top, bottom, left, right = layer.padding
    same = any(layer.padding) and same_is_exact(layer.kernel, layer.stride, layer.padding)
    if any(layer.padding) and not same:
        x = keras.layers.ZeroPadding2D(((top, bottom), (left, right)), name=keras_name(f"{layer.name}.pad"))(x)
    x = keras.layers.Conv2D(layer.out_channels, layer.kernel, strides=layer.stride,
                            padding="same" if same else "valid",
                            use_bias=layer.bias, kernel_initializer=ctx.kernel_initializer(f"{layer.name}.conv.weight"),
                            bias_initializer=ctx.bias_initializer(), name=keras_name(f"{layer.name}.conv"))(x)
    if layer.norm is not None:
        x = BatchNorm(axis=-1, momentum=1.0 - layer.norm.momentum, epsilon=layer.norm.eps, scale=layer.norm.scale,
                      name=keras_name(f"{layer.name}.bn"))(x)
    if C.check_activation(layer.activation, layer.path) == "relu":
        x = keras.layers.ReLU(name=keras_name(f"{layer.name}.relu"))(x)
    return x


def _pool(layer: Pool, x, ctx: _Context):
    _, height, width, _ = x.shape
    (kh, kw), (sh, sw), (top, bottom, left, right) = layer.kernel, layer.stride, layer.padding
    # Ceil rounding: extra bottom/right padding so that a 'valid' (floor) pool gives the ceil size.
    bottom += ceil_extra_padding(height, kh, sh, top, bottom, layer.rounding)
    right += ceil_extra_padding(width, kw, sw, left, right, layer.rounding)
    padding = ((top, bottom), (left, right))
    name, pad_name = keras_name(layer.name), keras_name(f"{layer.name}.pad")
    if layer.op == "maxpool":
        # A max pool ignores padded cells, as -inf padding does: where 'same' pads exactly what the spec pads
        # (ceil rounding's extra included: torchvision's four stride-2 pools at 224), the pool pads inside
        # the op instead of copying the map into a padded one first (~4% of an eager CPU forward).
        if (top or bottom or left or right) and padding == (keras_same_padding(height, kh, sh),
                                                            keras_same_padding(width, kw, sw)):
            return keras.layers.MaxPooling2D(layer.kernel, strides=layer.stride, padding="same", name=name)(x)
        if top or bottom or left or right:
            x = ConstantPadding2D(padding, value=float("-inf"), name=pad_name)(x)
        return keras.layers.MaxPooling2D(layer.kernel, strides=layer.stride, padding="valid", name=name)(x)
    if (bottom, right) != (layer.padding[1], layer.padding[3]):
        raise C.ContractError(f"{layer.name}: a ceil-mode average pool whose last window hangs over the input "
                         f"is not supported")  # the oracle rejects these specs already
    if not (top or bottom or left or right):
        return keras.layers.AveragePooling2D(layer.kernel, strides=layer.stride, padding="valid", name=name)(x)
    if layer.count_include_pad:
        x = keras.layers.ZeroPadding2D(padding, name=pad_name)(x)
        return keras.layers.AveragePooling2D(layer.kernel, strides=layer.stride, padding="valid", name=name)(x)
    # Keras's own 'same' average pool divides by the cells on the input in every backend (TensorFlow's rule;
    # JAX pools a map of ones; torch passes the padding to avg_pool2d with count_include_pad=False), but only
    # where the padding is symmetric: Keras's torch backend pads an asymmetric 'same' pool with *replicated*
    # edge values and then counts them. So 'same' where it pads the spec's padding on both sides alike
    # (Inception v3's 3/1/1 branch pools, keras.applications' own layer), explicit padding elsewhere.
    same = (keras_same_padding(height, kh, sh), keras_same_padding(width, kw, sw))
    if padding == same and top == bottom and left == right:
        return keras.layers.AveragePooling2D(layer.kernel, strides=layer.stride, padding="same", name=name)(x)
    return ExcludePadAveragePooling2D(layer.kernel, layer.stride, padding, name=name)(x)


def _global_avgpool(layer: GlobalAvgPool, x, ctx: _Context):
    return keras.layers.GlobalAveragePooling2D(keepdims=True, name=keras_name(layer.name))(x)  # N x 1 x 1 x C


def _adaptive_avgpool(layer: AdaptiveAvgPool, x, ctx: _Context):
    return AdaptiveAveragePooling2D(layer.output_size, name=keras_name(layer.name))(x)


def _lrn(layer: LRN, x, ctx: _Context):
    return LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k, name=keras_name(layer.name))(x)


def _transform_input(layer: TransformInput, x, ctx: _Context):
    return ChannelAffine(layer.scale, layer.shift, name=keras_name(layer.name))(x)  # N x H x W x C


def _dropout(layer: Dropout, x, ctx: _Context):
    return keras.layers.Dropout(layer.rate, seed=ctx.seed_for(layer.name), name=keras_name(layer.name))(x)


def _flatten(layer: Flatten, x, ctx: _Context):
    # Flattens N x H x W x C in (h, w, c) order; dense weights are permuted on import/export.
    return keras.layers.Flatten(name=keras_name(layer.name))(x)


def _dense(layer: Dense, x, ctx: _Context):
    return keras.layers.Dense(layer.out_features, activation=C.check_activation(layer.activation, layer.path),
                              use_bias=layer.bias,
                              kernel_initializer=ctx.kernel_initializer(f"{layer.name}.weight"),
                              bias_initializer=ctx.bias_initializer(), name=keras_name(layer.name))(x)


def _concat(layer: Concat, x, ctx: _Context):
    outputs = [_sequence(branch.layers, x, ctx) for branch in layer.branches]
    return keras.layers.Concatenate(axis=-1, name=keras_name(layer.name))(outputs)


def _aux(layer: Aux, x, ctx: _Context):
    ctx.aux_outputs.append(_sequence(layer.layers, x, ctx))
    return x  # the main path goes on with the same tensor


OPS: dict[str, Callable] = {
    "conv": _conv,
    "maxpool": _pool,
    "avgpool": _pool,
    "global_avgpool": _global_avgpool,
    "adaptive_avgpool": _adaptive_avgpool,
    "lrn": _lrn,
    "dropout": _dropout,
    "flatten": _flatten,
    "dense": _dense,
    "concat": _concat,
    "aux": _aux,
    "transform_input": _transform_input,
}


def _sequence(layers: tuple[Layer, ...], x, ctx: _Context):
    for layer in layers:
        op = OPS.get(layer.op)
        if op is None:
            raise C.unknown_op(layer.op, OPS, layer.path)
        x = op(layer, x, ctx)
    return x


# --------------------------------------------------------------------------- devices


def _has_gpu() -> bool:
    if BACKEND == "tensorflow":
        return bool(_backend.config.list_physical_devices("GPU"))
    if BACKEND == "jax":
        return _backend.default_backend() == "gpu"
    return _backend.cuda.is_available()


_GPU_CHECK = {"tensorflow": "tf.config.list_physical_devices('GPU') is empty",
              "jax": "jax.default_backend() is not 'gpu'", "torch": "torch.cuda.is_available() is False"}


def _full_fp32() -> None:
    """TF32 off: TensorFlow, JAX and PyTorch run fp32 matmuls/convolutions in TF32 on Ampere and newer by
    default, which misses the suite's 1e-4 fp32 agreement (the PyTorch builder likewise forces full fp32)."""
    if BACKEND == "tensorflow":
        _backend.config.experimental.enable_tensor_float_32_execution(False)
    elif BACKEND == "jax":
        _backend.config.update("jax_default_matmul_precision", "highest")
    else:
        _backend.backends.cuda.matmul.allow_tf32 = False
        _backend.backends.cudnn.allow_tf32 = False


def _resolve_device(device: str) -> str:
    """``shared_spec.contract``'s device rule, asking Keras's backend for a GPU."""
    device = C.resolve_device(device, has_gpu=_has_gpu,
                              framework=f"Keras's {BACKEND} backend ({_GPU_CHECK[BACKEND]})")
    if device == "gpu":
        _full_fp32()
    return device


def _on(device: str):
    """``keras.device`` scope: tf.device, jax.default_device or torch's device, by backend.

    On torch the name carries no index: Keras moves each new parameter with ``.to(name)``, and
    ``.to("cpu:0")`` of a CPU tensor is a copy, a plain tensor that Keras then fails to track.
    """
    if BACKEND == "torch":
        return keras.device("gpu" if device == "gpu" else "cpu")
    return keras.device("gpu:0" if device == "gpu" else "cpu:0")


def device_of(model: GoogLeNet) -> str:
    """``"gpu"`` or ``"cpu"``: where the model's weights live."""
    value = model.weights[0].value
    # tensorflow: '/job:localhost/.../device:GPU:0'; jax: 'cuda:0' or 'TFRT_CPU_0'; torch: 'cuda:0' or 'cpu'
    where = value.devices() if BACKEND == "jax" else [value.device]
    return "gpu" if any("GPU" in str(d).upper() or "CUDA" in str(d).upper() for d in where) else "cpu"


# --------------------------------------------------------------------------- build


def build(spec: Spec, *, device: str = "auto", seed: int | None = None) -> GoogLeNet:
    """The functional model for ``spec``, input ``(H, W, C)``, initialised by ``spec.init``.

    Same ``seed``, same weights (bit-identical); ``seed=None`` draws from Keras's global RNG.
    """
    C.check_spec(spec)
    C.check_seed(seed)
    resolved = _resolve_device(device)
    ctx = _Context(spec, None if seed is None else int(seed))
    with _on(resolved):
        inputs = keras.Input(shape=(*spec.input_size, spec.in_channels), name="input")  # N x H x W x C
        logits = _sequence(spec.layers, inputs, ctx)
        outputs = [logits, *ctx.aux_outputs] if ctx.aux_outputs else logits
        return GoogLeNet(inputs, outputs, spec=spec, name=spec.variant)
