"""d2l.ai's GoogLeNet in Keras 3 (Dive into Deep Learning, "Multi-Branch Networks (GoogLeNet)").

The chapter's network as a Keras functional model, using only ``keras.layers``, so it runs on the TensorFlow,
JAX and PyTorch backends alike. Channels-last: input N x 96 x 96 x 1, output N x 10 logits.

One change from d2l's TensorFlow code, and why: d2l writes ``padding='same'`` for the stride-2 layers (the
7x7 convolution and the 3x3 max pools). At stride 2, ``'same'`` pads asymmetrically (for the 7x7 convolution on
96 x 96: 2 pixels before and 3 after; for a 3x3 pool on an even size: 0 before and 1 after), where d2l's PyTorch
and MXNet code pad 3 and 1 on every side. The output sizes match, the values do not: it is another network. So
here every stride-2 layer pads explicitly (``ZeroPadding2D``) and then uses ``'valid'``, as keras-hub does ("the
padding between torch and tensorflow/jax differs when strides > 1"). Zeros are safe before a max pool: its
inputs come out of a ReLU, so they are >= 0. At stride 1, ``'same'`` is symmetric and stays.

    from d2l_keras import net
    model = net()
    model.summary()

``googlenet-suite check d2l --keras examples/d2l_keras.py:net`` proves it is the suite's ``d2l`` variant.
"""
import keras
from keras import layers


def conv(x, filters, kernel_size, name, strides=1, padding="same"):
    """A convolution with bias and ReLU, Xavier-uniform weights (what d2l's ``train_ch6`` uses), zero bias."""
    return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, activation="relu",
                         kernel_initializer="glorot_uniform", name=name)(x)


def max_pool_s2(x, name):
    """PyTorch's ``MaxPool2d(3, stride=2, padding=1)``: pad 1 on every side, then a 'valid' pool."""
    x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)


def inception(x, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, name):
    """Four parallel paths, concatenated on the channel axis; each keeps the height and width."""
    p1 = conv(x, ch1x1, 1, f"{name}_branch1_conv1")
    p2 = conv(conv(x, ch3x3red, 1, f"{name}_branch2_conv1"), ch3x3, 3, f"{name}_branch2_conv2")
    p3 = conv(conv(x, ch5x5red, 1, f"{name}_branch3_conv1"), ch5x5, 5, f"{name}_branch3_conv2")
    p4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_branch4_pool")(x)
    p4 = conv(p4, pool_proj, 1, f"{name}_branch4_conv1")
    return layers.Concatenate(name=name)([p1, p2, p3, p4])


def net(num_classes=10, input_shape=(None, None, 1)):
    """The chapter's GoogLeNet; shapes in the comments are for a 96 x 96 input (any size from 1 x 1 works)."""
    inputs = keras.Input(shape=input_shape)                                     # N x 96 x 96 x 1
    # b1: 'same' here would pad 2 before and 3 after; PyTorch pads 3 on every side
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = conv(x, 64, 7, "conv1", strides=2, padding="valid")                     # N x 48 x 48 x 64
    x = max_pool_s2(x, "maxpool1")                                              # N x 24 x 24 x 64
    # b2
    x = conv(x, 64, 1, "conv2")
    x = conv(x, 192, 3, "conv3")
    x = max_pool_s2(x, "maxpool2")                                              # N x 12 x 12 x 192
    # b3
    x = inception(x, 64, 96, 128, 16, 32, 32, "inception3a")                    # N x 12 x 12 x 256
    x = inception(x, 128, 128, 192, 32, 96, 64, "inception3b")                  # N x 12 x 12 x 480
    x = max_pool_s2(x, "maxpool3")                                              # N x 6 x 6 x 480
    # b4
    x = inception(x, 192, 96, 208, 16, 48, 64, "inception4a")                   # N x 6 x 6 x 512
    x = inception(x, 160, 112, 224, 24, 64, 64, "inception4b")                  # N x 6 x 6 x 512
    x = inception(x, 128, 128, 256, 24, 64, 64, "inception4c")                  # N x 6 x 6 x 512
    x = inception(x, 112, 144, 288, 32, 64, 64, "inception4d")                  # N x 6 x 6 x 528
    x = inception(x, 256, 160, 320, 32, 128, 128, "inception4e")                # N x 6 x 6 x 832
    x = max_pool_s2(x, "maxpool4")                                              # N x 3 x 3 x 832
    # b5
    x = inception(x, 256, 160, 320, 32, 128, 128, "inception5a")                # N x 3 x 3 x 832
    x = inception(x, 384, 192, 384, 48, 128, 128, "inception5b")                # N x 3 x 3 x 1024
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)                        # N x 1024
    outputs = layers.Dense(num_classes, kernel_initializer="glorot_uniform", name="fc")(x)  # N x num_classes
    return keras.Model(inputs, outputs, name="d2l_googlenet")
