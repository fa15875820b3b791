"""The few layers Keras lacks, written with ``keras.ops`` only (they run on any Keras backend).

Each one reproduces the PyTorch/Caffe definition the spec uses (see
``shared_spec/googlenet.json`` ``conventions``), channels-last.
"""

from __future__ import annotations

import math

import keras
from keras import ops


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _padding(value) -> tuple[tuple[int, int], tuple[int, int]]:
    (top, bottom), (left, right) = value
    return (int(top), int(bottom)), (int(left), int(right))


@keras.saving.register_keras_serializable(package="googlenet_suite")
class ConstantPadding2D(keras.layers.Layer):
    """``ZeroPadding2D`` with any fill value: a max pool pads with ``-inf`` so that padding never wins.

    ``padding`` is ``((top, bottom), (left, right))``.
    """

    def __init__(self, padding, value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.padding = _padding(padding)
        self.value = float(value)

    def call(self, inputs):
        (top, bottom), (left, right) = self.padding
        return ops.pad(inputs, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=self.value)

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.padding
        n, h, w, c = input_shape
        return (n, None if h is None else h + top + bottom, None if w is None else w + left + right, c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}


@keras.saving.register_keras_serializable(package="googlenet_suite")
class ChannelAffine(keras.layers.Layer):
    """``x * scale + shift`` per channel (channels-last), constants without weights: torchvision's
    ``transform_input``."""

    def __init__(self, scale, shift, **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(v) for v in scale]
        self.shift = [float(v) for v in shift]

    def call(self, inputs):
        scale = ops.convert_to_tensor(self.scale, dtype=inputs.dtype)
        shift = ops.convert_to_tensor(self.shift, dtype=inputs.dtype)
        return inputs * scale + shift

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "shift": self.shift}


@keras.saving.register_keras_serializable(package="googlenet_suite")
class ExcludePadAveragePooling2D(keras.layers.Layer):
    """Average pool over zero-padded input that divides by the number of real (unpadded) inputs.

    PyTorch's ``AvgPool2d(count_include_pad=False)``; with ``count_include_pad=True`` the builder
    uses ``ZeroPadding2D`` + ``AveragePooling2D`` instead. ``padding`` is ``((top, bottom), (left, right))``.
    """

    def __init__(self, pool_size, strides, padding, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size)
        self.strides = _pair(strides)
        self.padding = _padding(padding)

    def call(self, inputs):
        (top, bottom), (left, right) = self.padding
        pad = [[0, 0], [top, bottom], [left, right], [0, 0]]
        padded = ops.pad(inputs, pad)
        mean = ops.average_pool(padded, self.pool_size, self.strides, padding="valid")
        # Fraction of each window that lies on the input: pool a padded map of ones.
        ones = ops.pad(ops.ones_like(inputs[:1, :, :, :1]), pad)
        fraction = ops.average_pool(ones, self.pool_size, self.strides, padding="valid")
        return mean / fraction

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        sizes = []
        for size, before_after, k, s in zip((h, w), self.padding, self.pool_size, self.strides):
            sizes.append(None if size is None else (size + sum(before_after) - k) // s + 1)
        return (n, *sizes, c)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}


@keras.saving.register_keras_serializable(package="googlenet_suite")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """PyTorch's ``AdaptiveAvgPool2d``: output cell ``i`` averages rows ``floor(i*H/out)`` to
    ``ceil((i+1)*H/out)`` (exclusive), so windows overlap when ``out`` does not divide ``H``
    (torchvision's aux head: 14x14 -> 4x4 uses rows 0-3, 3-6, 7-10, 10-13).

    The window is a rectangle, so its mean is the mean over columns of the mean over rows:
    rows are pooled first, then columns. Needs a static input size (a functional model has one).
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = _pair(output_size)

    def build(self, input_shape):
        if input_shape[1] is None or input_shape[2] is None:
            raise ValueError(f"{self.name}: needs a static spatial input size. Received: input_shape={input_shape}")

    @staticmethod
    def windows(size: int, out: int) -> list[tuple[int, int]]:
        return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        out_h, out_w = self.output_size
        rows = ops.concatenate([ops.mean(inputs[:, start:end, :, :], axis=1, keepdims=True)
                                for start, end in self.windows(height, out_h)], axis=1)
        return ops.concatenate([ops.mean(rows[:, :, start:end, :], axis=2, keepdims=True)
                                for start, end in self.windows(width, out_w)], axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


@keras.saving.register_keras_serializable(package="googlenet_suite")
class LocalResponseNorm(keras.layers.Layer):
    """Cross-channel LRN, PyTorch/Caffe form: ``b = a / (k + alpha/size * sum(a^2))^beta``, the sum
    over ``size`` channels centred on the channel, zeros beyond the edges (the divisor is always
    ``size``). TensorFlow's ``tf.nn.local_response_normalization`` is the same with
    ``depth_radius = (size - 1) // 2`` and ``alpha / size``.
    """

    def __init__(self, size: int, alpha: float, beta: float, k: float, **kwargs):
        super().__init__(**kwargs)
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def call(self, inputs):
        channels = inputs.shape[-1]
        squares = ops.pad(ops.square(inputs), [[0, 0], [0, 0], [0, 0], [self.size // 2, (self.size - 1) // 2]])
        window_sum = squares[..., 0:channels]
        for shift in range(1, self.size):
            window_sum = window_sum + squares[..., shift:shift + channels]
        return inputs / ops.power(self.k + (self.alpha / self.size) * window_sum, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}


@keras.saving.register_keras_serializable(package="googlenet_suite")
class BatchNorm(keras.layers.BatchNormalization):
    """Keras ``BatchNormalization`` whose moving variance follows PyTorch.

    Both frameworks normalise a training batch with its biased variance, but PyTorch updates
    ``running_var`` with the unbiased one (times ``n / (n - 1)``, ``n`` = values per channel) and
    Keras with the biased one. On small maps (``n`` = batch x H x W, 2 at batch 2 on a 1x1 map) that
    is far outside 1e-4, so training-mode running statistics would not line up with PyTorch.
    Everything else (weights, eval mode, momentum = 1 - PyTorch's momentum) is Keras's.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        # As Keras's own call: bf16/fp16 inputs (a mixed-precision policy) are normalised in float32
        inputs = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = ops.moments(inputs, axes=self._reduction_axes)
        sizes = [inputs.shape[axis] for axis in self._reduction_axes]
        if all(size is not None for size in sizes):  # eager, and traced functions: one Python number
            count = math.prod(sizes)
            update = variance * ((1.0 - self.momentum) * count / max(count - 1, 1))
        else:
            count = ops.cast(ops.size(inputs), inputs.dtype) / inputs.shape[self.axis]
            update = variance * (1.0 - self.momentum) * count / ops.maximum(count - 1.0, 1.0)
        # As Keras's own call: variables read into tensors first (eager arithmetic on a tensor is cheaper).
        moving_mean = ops.cast(self.moving_mean, inputs.dtype)
        moving_variance = ops.cast(self.moving_variance, inputs.dtype)
        self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(moving_variance * self.momentum + update)
        outputs = ops.batch_normalization(inputs, mean, variance, axis=self.axis,
                                          offset=ops.cast(self.beta, inputs.dtype) if self.center else None,
                                          scale=ops.cast(self.gamma, inputs.dtype) if self.scale else None,
                                          epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)
