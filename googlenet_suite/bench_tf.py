"""``googlenet-suite bench`` for Keras 3 (TensorFlow): the runner, and a hand-written GoogLeNet.

The runner protocol is in :mod:`googlenet_suite.bench`. Both sources go through the same
runner code, so spec-built / hand-written time measures the models only. The models are
channels-last (N x H x W x C), as Keras prefers; inputs are made in that layout.

- plain: eager calls (``model(x, training=...)``, ``tf.GradientTape``, a Python loop of
  ``assign_sub`` for plain SGD), as a beginner writes it.
- fast: the same forward and the same training step inside ``tf.function(jit_compile=True)``
  (XLA). Tracing and compilation happen while the runner is created (``setup_s``), never in
  the timed calls.

Each call synchronises: the result is fetched with ``.numpy()``, and on a GPU
``tf.test.experimental.sync_devices()`` waits for everything queued (the SGD updates too).
"""

from __future__ import annotations

import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

import shared_spec  # noqa: E402

from .bench import DEVICES, check_handwritten, check_options, compile_now  # noqa: E402

LR = 0.01
SEED = 0


# --------------------------------------------------------------------------- the hand-written model
# torchvision's GoogLeNet (no aux heads) as a Keras functional model. Padding follows torch:
# stride-1 convolutions and pools with padding k // 2 are Keras's padding="same" (symmetric there,
# and a max pool's "same" padding never wins); conv1 (7x7, stride 2, padding 3) pads explicitly,
# because "same" at stride 2 would pad 2 before and 3 after.


def basic_conv2d(x, filters: int, kernel_size: int, *, name: str, strides: int = 1, padding: str = "valid"):
    """conv (no bias) -> BN (eps 1e-3, torch's momentum 0.1) -> ReLU."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False,
                      kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=0.001, momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def inception(x, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int, *, name: str):
    """The paper's Table 1 columns as arguments."""
    branch1 = basic_conv2d(x, ch1x1, 1, name=f"{name}_branch1")
    branch2 = basic_conv2d(x, ch3x3red, 1, name=f"{name}_branch2a")
    branch2 = basic_conv2d(branch2, ch3x3, 3, padding="same", name=f"{name}_branch2b")
    branch3 = basic_conv2d(x, ch5x5red, 1, name=f"{name}_branch3a")
    # kernel 3 instead of 5: torchvision's known bug, kept for weight compatibility
    branch3 = basic_conv2d(branch3, ch5x5, 3, padding="same", name=f"{name}_branch3b")
    branch4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_branch4_pool")(x)
    branch4 = basic_conv2d(branch4, pool_proj, 1, name=f"{name}_branch4")
    return layers.Concatenate(name=name)([branch1, branch2, branch3, branch4])


def max_pool_ceil(x, pool_size: int, strides: int, *, name: str):
    """torch's ``MaxPool2d(pool_size, strides, ceil_mode=True)`` (no padding); Keras has no ceil mode.

    The ceil size needs ``extra`` rows (columns) after the input. Where that is at most one and
    ``padding="same"`` gives the same size, "same" is this pool (it pads after first, and never picks
    the padding): all four pools at 224x224. Otherwise pad explicitly: zeros are safe, the inputs are
    ReLU outputs (>= 0) and every window holds a real value.
    """
    extra = []
    for size in x.shape[1:3]:
        out = -(-(size - pool_size) // strides) + 1
        extra.append(((out - 1) * strides + pool_size - size, out == -(-size // strides)))
    if all(pad <= 1 and same_size for pad, same_size in extra):
        return layers.MaxPooling2D(pool_size, strides=strides, padding="same", name=name)(x)
    (bottom, _), (right, _) = extra
    if bottom or right:
        x = layers.ZeroPadding2D(((0, bottom), (0, right)), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(pool_size, strides=strides, name=name)(x)


def googlenet(num_classes: int = 1000, input_shape=(224, 224, 3), dropout: float = 0.2) -> keras.Model:
    inputs = keras.Input(shape=input_shape)                                  # N x 224 x 224 x 3
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = basic_conv2d(x, 64, 7, strides=2, name="conv1")                      # N x 112 x 112 x 64
    x = max_pool_ceil(x, 3, 2, name="maxpool1")                              # N x 56 x 56 x 64
    x = basic_conv2d(x, 64, 1, name="conv2")                                 # N x 56 x 56 x 64
    x = basic_conv2d(x, 192, 3, padding="same", name="conv3")                # N x 56 x 56 x 192
    x = max_pool_ceil(x, 3, 2, name="maxpool2")                              # N x 28 x 28 x 192

    x = inception(x, 64, 96, 128, 16, 32, 32, name="inception3a")            # N x 28 x 28 x 256
    x = inception(x, 128, 128, 192, 32, 96, 64, name="inception3b")          # N x 28 x 28 x 480
    x = max_pool_ceil(x, 3, 2, name="maxpool3")                              # N x 14 x 14 x 480

    x = inception(x, 192, 96, 208, 16, 48, 64, name="inception4a")          # N x 14 x 14 x 512
    x = inception(x, 160, 112, 224, 24, 64, 64, name="inception4b")         # N x 14 x 14 x 512
    x = inception(x, 128, 128, 256, 24, 64, 64, name="inception4c")         # N x 14 x 14 x 512
    x = inception(x, 112, 144, 288, 32, 64, 64, name="inception4d")         # N x 14 x 14 x 528
    x = inception(x, 256, 160, 320, 32, 128, 128, name="inception4e")       # N x 14 x 14 x 832
    x = max_pool_ceil(x, 2, 2, name="maxpool4")                              # N x 7 x 7 x 832

    x = inception(x, 256, 160, 320, 32, 128, 128, name="inception5a")       # N x 7 x 7 x 832
    x = inception(x, 384, 192, 384, 48, 128, 128, name="inception5b")       # N x 7 x 7 x 1024

    x = layers.GlobalAveragePooling2D(name="avgpool")(x)                     # N x 1024
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                           name="fc")(x)                                     # N x num_classes
    return keras.Model(inputs, outputs, name="googlenet_handwritten")


def handwritten(spec: shared_spec.Spec, *, device: str = "auto") -> keras.Model:
    """The hand-written GoogLeNet for ``spec``'s classes, channels and input size, on ``device``."""
    target = resolve_device(device)
    keras.utils.set_random_seed(SEED)
    with tf.device(target):
        return googlenet(spec.num_classes, (*spec.input_size, spec.in_channels))


# --------------------------------------------------------------------------- the runner


def resolve_device(device: str) -> str:
    """``"/GPU:0"`` or ``"/CPU:0"``; ``"auto"`` is the GPU when TensorFlow sees one (as impl_tf.build does)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}. Received: device={device!r}")
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    if device == "gpu" and not has_gpu:
        raise ValueError(f"device='gpu' but TensorFlow sees no GPU. Received: device={device!r}")
    return "/GPU:0" if device == "gpu" or (device == "auto" and has_gpu) else "/CPU:0"


def trainable_params(model: keras.Model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


class Runner:
    def __init__(self, model: keras.Model, spec: shared_spec.Spec, *, target: str, mode: str, batch: int,
                 train: bool, aux_weights: tuple[float, ...] = ()):
        self.model = model
        self._target = target
        self.device = "gpu" if "GPU" in target else "cpu"
        rng = np.random.default_rng(SEED)
        x = rng.standard_normal((batch, *spec.input_shape), dtype=np.float32).transpose(0, 2, 3, 1)  # NHWC
        y = rng.integers(0, spec.num_classes, size=batch)
        with tf.device(target):
            self._x = tf.constant(np.ascontiguousarray(x))
            self._y = tf.constant(y, dtype=tf.int64)
        variables = model.trainable_variables
        cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)  # mean over the batch

        def predict(x):
            return model(x, training=False)

        def step(x, y):
            with tf.GradientTape() as tape:
                out = model(x, training=True)
                main, *aux = out if isinstance(out, (tuple, list)) else (out,)
                loss = cross_entropy(y, main)
                for weight, logits in zip(aux_weights, aux, strict=True):
                    loss = loss + weight * cross_entropy(y, logits)
            grads = tape.gradient(loss, variables)
            for variable, grad in zip(variables, grads, strict=True):
                variable.assign_sub(LR * grad)
            return loss

        if mode == "plain":
            self._predict, self._step = predict, step
            self.notes = "eager, fp32, NHWC"
            return
        self._predict = tf.function(predict, jit_compile=True)
        self._step = tf.function(step, jit_compile=True)
        self.notes = "tf.function(jit_compile=True) (XLA)"
        compile_now(self, train, "tf.function(jit_compile=True)")

    def _sync(self, result) -> None:
        result.numpy()
        if self.device == "gpu":
            tf.test.experimental.sync_devices()

    def forward(self) -> None:
        with tf.device(self._target):
            self._sync(self._predict(self._x))

    def train_step(self) -> None:
        with tf.device(self._target):
            self._sync(self._step(self._x, self._y))

    def peak_gpu_bytes(self) -> int | None:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] if self.device == "gpu" else None


def runner(spec: shared_spec.Spec, *, source: str, mode: str, device: str, batch: int, train: bool) -> Runner:
    check_options(source, mode, batch)
    target = resolve_device(device)
    keras.backend.clear_session()  # drop the previous runners' models and traced functions
    gc.collect()
    if "GPU" in target:
        # impl_tf.build turns TF32 off (process-wide) for fp32 agreement; the same for both sources,
        # whichever runs first.
        tf.config.experimental.enable_tensor_float_32_execution(False)
        tf.config.experimental.reset_memory_stats("GPU:0")
    if source == "spec":
        import impl_tf

        model = impl_tf.build(spec, device=device, seed=SEED)
        aux_weights = tuple(head.loss_weight for head in spec.aux_heads)
    else:
        model = handwritten(spec, device=device)
        check_handwritten(spec, trainable_params(model))
        aux_weights = ()
    return Runner(model, spec, target=target, mode=mode, batch=batch, train=train, aux_weights=aux_weights)
