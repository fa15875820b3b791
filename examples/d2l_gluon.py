"""d2l.ai's GoogLeNet in MXNet Gluon (Dive into Deep Learning, "Multi-Branch Networks (GoogLeNet)").

The chapter's network, written the way Gluon's tutorials write models: ``HybridBlock`` subclasses (so the
network can be hybridized into one symbolic graph), an ``Inception`` block with the paper's Table 1 columns as
named arguments, five stages in ``HybridSequential``, Xavier initialisation (what d2l's ``train_ch6`` uses).
Input: N x 1 x 96 x 96, output: N x 10 logits.

    import mxnet as mx; from d2l_gluon import net
    model = net()
    model(mx.nd.random.uniform(shape=(1, 1, 96, 96))).shape   # (1, 10)

``googlenet-suite check d2l --gluon examples/d2l_gluon.py:net`` proves it is the suite's ``d2l`` variant.
"""
import mxnet as mx
from mxnet import init
from mxnet.gluon import nn


class Inception(nn.HybridBlock):
    """Four parallel paths, concatenated on the channel axis; each keeps the height and width."""

    def __init__(self, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, **kwargs):
        super().__init__(**kwargs)
        # path 1: a 1x1 convolution
        self.p1_1 = nn.Conv2D(ch1x1, kernel_size=1, activation="relu")
        # path 2: a 1x1 convolution that reduces the channels, then a 3x3 convolution
        self.p2_1 = nn.Conv2D(ch3x3red, kernel_size=1, activation="relu")
        self.p2_2 = nn.Conv2D(ch3x3, kernel_size=3, padding=1, activation="relu")
        # path 3: a 1x1 reduction, then a 5x5 convolution
        self.p3_1 = nn.Conv2D(ch5x5red, kernel_size=1, activation="relu")
        self.p3_2 = nn.Conv2D(ch5x5, kernel_size=5, padding=2, activation="relu")
        # path 4: a 3x3 max pool, then a 1x1 convolution
        self.p4_1 = nn.MaxPool2D(pool_size=3, strides=1, padding=1)
        self.p4_2 = nn.Conv2D(pool_proj, kernel_size=1, activation="relu")

    def hybrid_forward(self, F, x):
        p1 = self.p1_1(x)
        p2 = self.p2_2(self.p2_1(x))
        p3 = self.p3_2(self.p3_1(x))
        p4 = self.p4_2(self.p4_1(x))
        return F.concat(p1, p2, p3, p4, dim=1)


def net(num_classes=10, ctx=mx.cpu()):
    """The chapter's GoogLeNet, initialised and hybridized; shapes in the comments are for a 96 x 96 input."""
    b1 = nn.HybridSequential()
    b1.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3, activation="relu"),        # N x 64 x 48 x 48
           nn.MaxPool2D(pool_size=3, strides=2, padding=1))                               # N x 64 x 24 x 24
    b2 = nn.HybridSequential()
    b2.add(nn.Conv2D(64, kernel_size=1, activation="relu"),
           nn.Conv2D(192, kernel_size=3, padding=1, activation="relu"),
           nn.MaxPool2D(pool_size=3, strides=2, padding=1))                               # N x 192 x 12 x 12
    b3 = nn.HybridSequential()
    b3.add(Inception(64, 96, 128, 16, 32, 32),                                             # N x 256 x 12 x 12
           Inception(128, 128, 192, 32, 96, 64),                                           # N x 480 x 12 x 12
           nn.MaxPool2D(pool_size=3, strides=2, padding=1))                               # N x 480 x 6 x 6
    b4 = nn.HybridSequential()
    b4.add(Inception(192, 96, 208, 16, 48, 64),                                            # N x 512 x 6 x 6
           Inception(160, 112, 224, 24, 64, 64),                                           # N x 512 x 6 x 6
           Inception(128, 128, 256, 24, 64, 64),                                           # N x 512 x 6 x 6
           Inception(112, 144, 288, 32, 64, 64),                                           # N x 528 x 6 x 6
           Inception(256, 160, 320, 32, 128, 128),                                         # N x 832 x 6 x 6
           nn.MaxPool2D(pool_size=3, strides=2, padding=1))                               # N x 832 x 3 x 3
    b5 = nn.HybridSequential()
    b5.add(Inception(256, 160, 320, 32, 128, 128),                                         # N x 832 x 3 x 3
           Inception(384, 192, 384, 48, 128, 128),                                         # N x 1024 x 3 x 3
           nn.GlobalAvgPool2D())                                                           # N x 1024 x 1 x 1
    model = nn.HybridSequential()
    model.add(b1, b2, b3, b4, b5, nn.Dense(num_classes))                                   # N x num_classes
    model.initialize(init.Xavier(), ctx=ctx)  # shapes are inferred at the first forward
    model.hybridize()
    return model
