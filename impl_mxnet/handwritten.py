"""A hand-written torchvision GoogLeNet in plain Gluon: ``googlenet-suite bench`` times it beside the
spec-built model, and the tests use it as an independent reference. :func:`handwritten` picks the hand-written
network of a variant from ``REFERENCES``: MXNet's model-zoo ``inception_v3`` for ``inception-v3-gluon``.
"""

from __future__ import annotations

import mxnet as mx
from mxnet.gluon import nn

import shared_spec
from shared_spec.protocol import handwritten_reference

from .builder import context as resolve_device

SEED = 0

# --------------------------------------------------------------------------- the hand-written model
# torchvision's GoogLeNet (no aux heads) in Gluon. ceil_mode=True is Gluon's pooling_convention="full",
# which gives torch's ceil sizes here: the stride-2 pools have no padding, and at stride 1 ceil and
# floor agree.


class BasicConv2d(nn.HybridBlock):
    """conv (no bias) -> BN (eps 1e-3, torch's momentum 0.1) -> ReLU."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, strides: int = 1, padding: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = nn.Conv2D(channels, kernel_size, strides=strides, padding=padding, use_bias=False,
                                  in_channels=in_channels)
            self.bn = nn.BatchNorm(momentum=0.9, epsilon=0.001, in_channels=channels)
            self.relu = nn.Activation("relu")

    def hybrid_forward(self, F, x):
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.HybridBlock):
    """The paper's Table 1 columns as arguments."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
            self.branch2 = nn.HybridSequential()
            self.branch2.add(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                             BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
            self.branch3 = nn.HybridSequential()
            # kernel 3 instead of 5: torchvision's known bug, kept for weight compatibility
            self.branch3.add(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                             BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
            self.branch4 = nn.HybridSequential()
            self.branch4.add(nn.MaxPool2D(pool_size=3, strides=1, padding=1, ceil_mode=True),
                             BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def hybrid_forward(self, F, x):
        return F.concat(self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x), dim=1)


class GoogLeNet(nn.HybridBlock):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, strides=2, padding=3)
            self.maxpool1 = nn.MaxPool2D(pool_size=3, strides=2, ceil_mode=True)
            self.conv2 = BasicConv2d(64, 64, kernel_size=1)
            self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
            self.maxpool2 = nn.MaxPool2D(pool_size=3, strides=2, ceil_mode=True)

            self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
            self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
            self.maxpool3 = nn.MaxPool2D(pool_size=3, strides=2, ceil_mode=True)

            self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
            self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
            self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
            self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
            self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
            self.maxpool4 = nn.MaxPool2D(pool_size=2, strides=2, ceil_mode=True)

            self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
            self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)

            self.avgpool = nn.GlobalAvgPool2D()
            self.flatten = nn.Flatten()
            self.dropout = nn.Dropout(dropout)
            self.fc = nn.Dense(num_classes, in_units=1024)

    def hybrid_forward(self, F, x):
        # N x 3 x 224 x 224
        x = self.maxpool1(self.conv1(x))                      # N x 64 x 56 x 56
        x = self.maxpool2(self.conv3(self.conv2(x)))          # N x 192 x 28 x 28
        x = self.inception3a(x)                               # N x 256 x 28 x 28
        x = self.maxpool3(self.inception3b(x))                # N x 480 x 14 x 14
        x = self.inception4a(x)                               # N x 512 x 14 x 14
        x = self.inception4b(x)                               # N x 512 x 14 x 14
        x = self.inception4c(x)                               # N x 512 x 14 x 14
        x = self.inception4d(x)                               # N x 528 x 14 x 14
        x = self.maxpool4(self.inception4e(x))                # N x 832 x 7 x 7
        x = self.inception5a(x)                               # N x 832 x 7 x 7
        x = self.inception5b(x)                               # N x 1024 x 7 x 7
        x = self.flatten(self.avgpool(x))                     # N x 1024
        return self.fc(self.dropout(x))                       # N x num_classes


def inception_v3_gluon(spec: shared_spec.Spec) -> nn.HybridBlock:
    """MXNet's model-zoo Inception v3 (``mxnet.gluon.model_zoo.vision.inception_v3``, untrained): the
    ``inception-v3-gluon`` variant's network. Its head is a fixed 8x8 average pool, so it needs 299x299 (the
    variant's minimum); its convolutions infer their input channels at the first call."""
    from mxnet.gluon.model_zoo import vision

    return vision.inception_v3(classes=spec.num_classes)


#: variant -> its hand-written network, for ``spec``'s classes (and input channels): what ``bench --handwritten``
#: pairs with the spec-built model
REFERENCES = {
    "googlenet": lambda spec: GoogLeNet(num_classes=spec.num_classes, in_channels=spec.in_channels),
    "inception-v3-gluon": inception_v3_gluon,
}


def handwritten(spec: shared_spec.Spec, *, device: str = "auto") -> nn.HybridBlock:
    """The hand-written network of ``spec``'s variant (``REFERENCES``), initialised on ``device``: normal(0, 0.01)
    weights (torchvision's trunc_normal at +-200 std), zero biases, BN 1/0/0/1, every shape known (one call on
    zeros where a layer infers its input channels); a variant without one is refused
    (``shared_spec.ContractError``, one line)."""
    build = handwritten_reference("MXNet", REFERENCES, spec)
    ctx = resolve_device(device)
    net = build(spec)
    mx.random.seed(SEED)
    net.initialize(mx.init.Normal(0.01), ctx=ctx)
    if any(0 in p.shape for p in net.collect_params().values()):  # deferred: the shapes come with a first call
        net(mx.nd.zeros((1, *spec.input_shape), ctx=ctx)).wait_to_read()
    return net
