"""d2l.ai's GoogLeNet in PyTorch (Dive into Deep Learning, "Multi-Branch Networks (GoogLeNet)").

The chapter's network, written the way PyTorch's tutorials write models: an ``Inception`` module with the
paper's Table 1 columns as named arguments, five stages ``b1``..``b5`` in ``nn.Sequential``, and Xavier-uniform
initialisation (what d2l's ``train_ch6`` applies). No batch normalisation: every convolution has a bias and a
ReLU. Input: N x 1 x 96 x 96 (Fashion-MNIST resized), output: N x 10 logits.

    import torch; from d2l_torch import net
    model = net()
    model(torch.rand(1, 1, 96, 96)).shape   # torch.Size([1, 10])

``googlenet-suite check d2l --torch examples/d2l_torch.py:net`` proves it is the suite's ``d2l`` variant.
"""
import torch
from torch import nn
from torch.nn import functional as F


class Inception(nn.Module):
    """Four parallel paths, concatenated on the channel axis; each keeps the height and width."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        # path 1: a 1x1 convolution
        self.p1_1 = nn.Conv2d(in_channels, ch1x1, kernel_size=1)
        # path 2: a 1x1 convolution that reduces the channels, then a 3x3 convolution
        self.p2_1 = nn.Conv2d(in_channels, ch3x3red, kernel_size=1)
        self.p2_2 = nn.Conv2d(ch3x3red, ch3x3, kernel_size=3, padding=1)
        # path 3: a 1x1 reduction, then a 5x5 convolution
        self.p3_1 = nn.Conv2d(in_channels, ch5x5red, kernel_size=1)
        self.p3_2 = nn.Conv2d(ch5x5red, ch5x5, kernel_size=5, padding=2)
        # path 4: a 3x3 max pool, then a 1x1 convolution
        self.p4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = nn.Conv2d(in_channels, pool_proj, kernel_size=1)

    def forward(self, x):
        p1 = F.relu(self.p1_1(x))
        p2 = F.relu(self.p2_2(F.relu(self.p2_1(x))))
        p3 = F.relu(self.p3_2(F.relu(self.p3_1(x))))
        p4 = F.relu(self.p4_2(self.p4_1(x)))
        return torch.cat((p1, p2, p3, p4), dim=1)


def net(num_classes=10, in_channels=1):
    """The chapter's GoogLeNet; shapes in the comments are for a 96 x 96 input."""
    b1 = nn.Sequential(nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))                # N x 64 x 24 x 24
    b2 = nn.Sequential(nn.Conv2d(64, 64, kernel_size=1), nn.ReLU(),
                       nn.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))                # N x 192 x 12 x 12
    b3 = nn.Sequential(Inception(192, 64, 96, 128, 16, 32, 32),                          # N x 256 x 12 x 12
                       Inception(256, 128, 128, 192, 32, 96, 64),                        # N x 480 x 12 x 12
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))                # N x 480 x 6 x 6
    b4 = nn.Sequential(Inception(480, 192, 96, 208, 16, 48, 64),                         # N x 512 x 6 x 6
                       Inception(512, 160, 112, 224, 24, 64, 64),                        # N x 512 x 6 x 6
                       Inception(512, 128, 128, 256, 24, 64, 64),                        # N x 512 x 6 x 6
                       Inception(512, 112, 144, 288, 32, 64, 64),                        # N x 528 x 6 x 6
                       Inception(528, 256, 160, 320, 32, 128, 128),                      # N x 832 x 6 x 6
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))                # N x 832 x 3 x 3
    b5 = nn.Sequential(Inception(832, 256, 160, 320, 32, 128, 128),                      # N x 832 x 3 x 3
                       Inception(832, 384, 192, 384, 48, 128, 128),                      # N x 1024 x 3 x 3
                       nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())                      # N x 1024
    model = nn.Sequential(b1, b2, b3, b4, b5, nn.Linear(1024, num_classes))              # N x num_classes
    # d2l's train_ch6 draws Xavier-uniform weights; the biases start at zero, as the spec's d2l variant has them
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model
