"""A hand-written torchvision GoogLeNet as a plain Keras functional model (TensorFlow backend):
``googlenet-suite bench`` times it beside the spec-built model, and the tests use it as an independent
reference. :func:`handwritten` picks the hand-written network of a variant from ``REFERENCES``:
``keras.applications.InceptionV3`` for ``inception-v3-keras``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

import shared_spec  # noqa: E402
from shared_spec.protocol import handwritten_reference  # noqa: E402

from .builder import _resolve_device  # noqa: E402

SEED = 0


def resolve_device(device: str) -> str:
    """``"/GPU:0"`` or ``"/CPU:0"`` by ``shared_spec.contract``'s device rule (as impl_tf.build decides)."""
    return "/GPU:0" if _resolve_device(device) == "gpu" else "/CPU:0"


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


def inception_v3_keras(spec: shared_spec.Spec) -> keras.Model:
    """Keras's own Inception v3 (``keras.applications.InceptionV3``, untrained): the ``inception-v3-keras``
    variant's network (BatchNorm without gamma, ``'same'`` branch pools that do not count the padding). Its
    network differs from torchvision's (``inception-v3``) and pytorch-fid's, so it is no reference for them."""
    return keras.applications.InceptionV3(weights=None, classifier_activation=None, classes=spec.num_classes,
                                          input_shape=(*spec.input_size, spec.in_channels))


#: variant -> its hand-written network, for ``spec``'s classes, channels and input size: what ``bench
#: --handwritten`` pairs with the spec-built model
REFERENCES = {
    "googlenet": lambda spec: googlenet(spec.num_classes, (*spec.input_size, spec.in_channels)),
    "inception-v3-keras": inception_v3_keras,
}


def handwritten(spec: shared_spec.Spec, *, device: str = "auto") -> keras.Model:
    """The hand-written network of ``spec``'s variant (``REFERENCES``) on ``device``; a variant without one is
    refused (``shared_spec.ContractError``, one line)."""
    build = handwritten_reference("Keras", REFERENCES, spec)
    target = resolve_device(device)
    keras.utils.set_random_seed(SEED)
    with tf.device(target):
        return build(spec)
