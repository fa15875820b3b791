"""torchvision's GoogLeNet (Inception v1) in Keras 3, as a functional model.

The same network as ``googlenet_torch.py``: the Inception block takes the paper's Table 1 columns as named
arguments, one ``conv_bn`` helper (convolution without bias, batch normalisation with eps 1e-3, ReLU) stands for
all 57 convolutions, 6,624,904 parameters at 1000 classes. Only ``keras.layers`` is used, so it runs on the
TensorFlow, JAX and PyTorch backends alike. Channels-last: input N x 224 x 224 x 3, output N x 1000 logits.

Two places where Keras must be told what PyTorch does, written where they happen:

* stride-2 layers pad explicitly (``ZeroPadding2D``) and then use ``'valid'``: ``'same'`` at stride 2 pads
  asymmetrically (2 before and 3 after for the 7x7 convolution on 224), PyTorch pads 3 on every side;
* PyTorch's max pools round up (``ceil_mode=True``); Keras has no ceil mode. At stride 2 rounding up is the
  same as one extra row and column after the input, then rounding down; zeros are safe there, because the
  pools' inputs come out of a ReLU (>= 0) and every window still holds a real value.

    from googlenet_keras import net
    model = net()
    model.summary()

``googlenet-suite check googlenet --keras examples/googlenet_keras.py:net`` proves it is the suite's
``googlenet`` variant.
"""
import keras
from keras import layers

# torchvision draws trunc_normal(std=0.01) cut at +-2, i.e. 200 standard deviations: a plain normal
INIT = keras.initializers.RandomNormal(stddev=0.01)


def conv_bn(x, filters, kernel_size, name, strides=1, padding="same"):
    """conv (no bias: the batch norm's beta is the bias) -> BN (eps 1e-3, PyTorch's momentum 0.1) -> ReLU."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False,
                      kernel_initializer=INIT, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=0.001, momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def max_pool_ceil(x, pool_size, name):
    """PyTorch's ``MaxPool2d(pool_size, stride=2, ceil_mode=True)``: one row and column of zeros after, 'valid'."""
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(pool_size, strides=2, padding="valid", name=name)(x)


def inception(x, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, name):
    """Four parallel branches, concatenated on the channel axis; each keeps the height and width."""
    branch1 = conv_bn(x, ch1x1, 1, f"{name}_branch1_conv1")
    branch2 = conv_bn(x, ch3x3red, 1, f"{name}_branch2_conv1")
    branch2 = conv_bn(branch2, ch3x3, 3, f"{name}_branch2_conv2")
    branch3 = conv_bn(x, ch5x5red, 1, f"{name}_branch3_conv1")
    # kernel 3 instead of the paper's 5: torchvision's known bug, kept for its pretrained weights
    branch3 = conv_bn(branch3, ch5x5, 3, f"{name}_branch3_conv2")
    branch4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_branch4_pool")(x)
    branch4 = conv_bn(branch4, pool_proj, 1, f"{name}_branch4_conv1")
    return layers.Concatenate(name=name)([branch1, branch2, branch3, branch4])


def net(num_classes=1000, input_shape=(None, None, 3), dropout=0.2):
    """torchvision's GoogLeNet without aux heads; shapes in the comments are for a 224 x 224 input."""
    inputs = keras.Input(shape=input_shape)                                     # N x 224 x 224 x 3
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = conv_bn(x, 64, 7, "conv1", strides=2, padding="valid")                  # N x 112 x 112 x 64
    x = max_pool_ceil(x, 3, "maxpool1")                                         # N x 56 x 56 x 64
    x = conv_bn(x, 64, 1, "conv2")                                              # N x 56 x 56 x 64
    x = conv_bn(x, 192, 3, "conv3")                                             # N x 56 x 56 x 192
    x = max_pool_ceil(x, 3, "maxpool2")                                         # N x 28 x 28 x 192
    #               1x1, 3x3red, 3x3, 5x5red, 5x5, pool_proj   (Table 1)
    x = inception(x, 64, 96, 128, 16, 32, 32, "inception3a")                    # N x 28 x 28 x 256
    x = inception(x, 128, 128, 192, 32, 96, 64, "inception3b")                  # N x 28 x 28 x 480
    x = max_pool_ceil(x, 3, "maxpool3")                                         # N x 14 x 14 x 480
    x = inception(x, 192, 96, 208, 16, 48, 64, "inception4a")                   # N x 14 x 14 x 512
    x = inception(x, 160, 112, 224, 24, 64, 64, "inception4b")                  # N x 14 x 14 x 512
    x = inception(x, 128, 128, 256, 24, 64, 64, "inception4c")                  # N x 14 x 14 x 512
    x = inception(x, 112, 144, 288, 32, 64, 64, "inception4d")                  # N x 14 x 14 x 528
    x = inception(x, 256, 160, 320, 32, 128, 128, "inception4e")                # N x 14 x 14 x 832
    x = max_pool_ceil(x, 2, "maxpool4")                                         # N x 7 x 7 x 832
    x = inception(x, 256, 160, 320, 32, 128, 128, "inception5a")                # N x 7 x 7 x 832
    x = inception(x, 384, 192, 384, 48, 128, 128, "inception5b")                # N x 7 x 7 x 1024
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)                        # N x 1024
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, kernel_initializer=INIT, name="fc")(x)  # N x num_classes
    return keras.Model(inputs, outputs, name="googlenet")
