"""A hand-written torchvision Inception v3 in plain PyTorch, and pytorch-fid's FID variant of it.

Written the way torchvision's ``models/inception.py`` and pytorch-fid's ``inception.py`` write it (their module
names, so ``state_dict()`` has their keys: ``Mixed_6e.branch7x7dbl_5.conv.weight``, ``AuxLogits.fc.bias``), but
not built from the spec. It is the independent reference the suite holds its ``inception-v3`` and
``inception-v3-fid`` variants to: ``convert`` reads its state_dicts, ``check`` maps it with no ``--map``, and
``bench`` times it beside the spec-built model (``impl_torch.references`` picks it by variant).

The two networks differ only in their branch pools:

- torchvision: every branch average pool is ``F.avg_pool2d(x, 3, 1, 1)``, which counts the zero padding;
- pytorch-fid (TensorFlow's FID graph): ``Mixed_5b``-``Mixed_7b`` pool with ``count_include_pad=False``, and
  ``Mixed_7c``'s pool branch is a 3x3/1/1 max pool; 1008 classes, no aux head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .handwritten import BasicConv2d, init_as_torchvision, transform_input

SEED = 0


def branch_pool(x: torch.Tensor, pool: str) -> torch.Tensor:
    """The pool in front of a block's pool branch: ``"avg"`` (torchvision: counts the padding), ``"avg-exclude-pad"``
    (pytorch-fid) or ``"max"`` (pytorch-fid's ``Mixed_7c``)."""
    if pool == "max":
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=pool == "avg")


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | pool -> 1x1."""

    def __init__(self, in_channels: int, pool_features: int, pool: str = "avg"):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pooled = self.branch_pool(branch_pool(x, self.pool))
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, pooled], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17: 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool 3x3/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([branch3x3, branch3x3dbl, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with 7x7 factorised into 1x7 and 7x1."""

    def __init__(self, in_channels: int, channels_7x7: int, pool: str = "avg"):
        super().__init__()
        c7 = channels_7x7
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        pooled = self.branch_pool(branch_pool(x, self.pool))
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, pooled], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max pool 3x3/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = conv(branch7x7x3)
        return torch.cat([branch3x3, branch7x7x3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block whose 3x3 branches split into a 1x3 and a 3x1 and concatenate again."""

    def __init__(self, in_channels: int, pool: str = "avg"):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        pooled = self.branch_pool(branch_pool(x, self.pool))
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, pooled], 1)


class InceptionAux(nn.Module):
    """On ``Mixed_6e`` (17x17x768): avg pool 5x5/3, 1x1 conv 128, 5x5 conv 768, global pool, fc."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.conv1.stddev = 0.01
        self.fc = nn.Linear(768, num_classes)
        self.fc.stddev = 0.001

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, kernel_size=5, stride=3)  # N x 768 x 5 x 5
        x = self.conv1(self.conv0(x))  # N x 768 x 1 x 1
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.fc(x)


class Inception3(nn.Module):
    """torchvision's ``Inception3`` (``fid=False``) or pytorch-fid's ``FIDInceptionA/C/E_1/E_2`` network
    (``fid=True``: 1008 classes by default, no aux head)."""

    def __init__(self, num_classes: int | None = None, *, aux_logits: bool = False, transform_input: bool = False,
                 dropout: float = 0.5, fid: bool = False, seed: int = SEED):
        super().__init__()
        num_classes = num_classes or (1008 if fid else 1000)
        pool = "avg-exclude-pad" if fid else "avg"
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32, pool=pool)
        self.Mixed_5c = InceptionA(256, pool_features=64, pool=pool)
        self.Mixed_5d = InceptionA(288, pool_features=64, pool=pool)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128, pool=pool)
        self.Mixed_6c = InceptionC(768, channels_7x7=160, pool=pool)
        self.Mixed_6d = InceptionC(768, channels_7x7=160, pool=pool)
        self.Mixed_6e = InceptionC(768, channels_7x7=192, pool=pool)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool=pool)
        self.Mixed_7c = InceptionE(2048, pool="max" if fid else "avg")
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)

        init_as_torchvision(self, std=0.1, seed=seed)

    def forward(self, x: torch.Tensor, *, with_aux: bool | None = None):
        """Logits; with the aux head, ``(logits, aux)`` as torchvision's ``InceptionOutputs`` (in training mode
        by default, or whenever ``with_aux=True``)."""
        with_aux = self.aux_logits and (self.training if with_aux is None else with_aux)
        x = transform_input(x) if self.transform_input else x
        # N x 3 x 299 x 299
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        # N x 64 x 147 x 147
        x = self.maxpool1(x)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        # N x 192 x 71 x 71
        x = self.maxpool2(x)
        # N x 192 x 35 x 35
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        # N x 288 x 35 x 35
        x = self.Mixed_6a(x)
        # N x 768 x 17 x 17
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        aux = self.AuxLogits(x) if with_aux else None
        x = self.Mixed_7a(x)
        # N x 1280 x 8 x 8
        x = self.Mixed_7c(self.Mixed_7b(x))
        # N x 2048 x 8 x 8
        x = torch.flatten(self.avgpool(x), 1)
        x = self.fc(self.dropout(x))
        return (x, aux) if with_aux else x

