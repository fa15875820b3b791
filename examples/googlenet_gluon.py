"""torchvision's GoogLeNet (Inception v1) in MXNet Gluon, written as Gluon's tutorials write models.

The same network as ``googlenet_torch.py``: ``HybridBlock`` subclasses (hybridized into one symbolic graph), an
``Inception`` block with the paper's Table 1 columns as named arguments, one ``BasicConv2d`` helper
(convolution without bias, batch normalisation with eps 1e-3, ReLU) for all 57 convolutions, 6,624,904
parameters at 1000 classes. PyTorch's ``ceil_mode=True`` is Gluon's ``ceil_mode=True`` too (MXNet's
``pooling_convention="full"``). Input: N x 3 x 224 x 224, output: N x 1000 logits.

    import mxnet as mx; from googlenet_gluon import net
    model = net()
    model(mx.nd.random.uniform(shape=(1, 3, 224, 224))).shape   # (1, 1000)

``googlenet-suite check googlenet --gluon examples/googlenet_gluon.py:net`` proves it is the suite's
``googlenet`` variant.
"""
import mxnet as mx
from mxnet import init
from mxnet.gluon import nn


class BasicConv2d(nn.HybridBlock):
    """conv (no bias: the batch norm's beta is the bias) -> BN (eps 1e-3, PyTorch's momentum 0.1) -> ReLU."""

    def __init__(self, channels, kernel_size, strides=1, padding=0, **kwargs):
        super().__init__(**kwargs)
        self.conv = nn.Conv2D(channels, kernel_size, strides=strides, padding=padding, use_bias=False)
        self.bn = nn.BatchNorm(momentum=0.9, epsilon=0.001)

    def hybrid_forward(self, F, x):
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.HybridBlock):
    """Four parallel branches, concatenated on the channel axis; each keeps the height and width."""

    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, **kwargs):
        super().__init__(**kwargs)
        self.branch1 = BasicConv2d(ch1x1, kernel_size=1)
        self.branch2 = nn.HybridSequential()
        self.branch2.add(BasicConv2d(ch3x3red, kernel_size=1),
                         BasicConv2d(ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.HybridSequential()
        # kernel 3 instead of the paper's 5: torchvision's known bug, kept for its pretrained weights
        self.branch3.add(BasicConv2d(ch5x5red, kernel_size=1),
                         BasicConv2d(ch5x5, kernel_size=3, padding=1))
        self.branch4 = nn.HybridSequential()
        self.branch4.add(nn.MaxPool2D(pool_size=3, strides=1, padding=1, ceil_mode=True),
                         BasicConv2d(pool_proj, kernel_size=1))

    def hybrid_forward(self, F, x):
        return F.concat(self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x), dim=1)


class GoogLeNet(nn.HybridBlock):
    def __init__(self, num_classes=1000, dropout=0.2, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = BasicConv2d(64, kernel_size=7, strides=2, padding=3)
        self.maxpool1 = nn.MaxPool2D(pool_size=3, strides=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, kernel_size=1)
        self.conv3 = BasicConv2d(192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2D(pool_size=3, strides=2, ceil_mode=True)
        #                          1x1, 3x3red, 3x3, 5x5red, 5x5, pool_proj   (Table 1)
        self.inception3a = Inception(64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2D(pool_size=3, strides=2, ceil_mode=True)
        self.inception4a = Inception(192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2D(pool_size=2, strides=2, ceil_mode=True)
        self.inception5a = Inception(256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(384, 192, 384, 48, 128, 128)
        self.avgpool = nn.GlobalAvgPool2D()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Dense(num_classes)

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
        x = F.flatten(self.avgpool(x))                        # N x 1024
        return self.fc(self.dropout(x))                       # N x num_classes


def net(num_classes=1000, ctx=mx.cpu()):
    """torchvision's GoogLeNet without aux heads, initialised and hybridized: normal(0, 0.01) weights
    (torchvision's trunc_normal cut at +-200 standard deviations), zero biases, BN gamma 1 and beta 0."""
    model = GoogLeNet(num_classes=num_classes)
    model.initialize(init.Normal(0.01), ctx=ctx)  # shapes are inferred at the first forward
    model.hybridize()
    return model
