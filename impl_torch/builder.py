"""GoogLeNet from a :class:`shared_spec.Spec`, as idiomatic PyTorch modules.

One table, :data:`OPS`, maps each spec op to a module factory; every number
(channels, kernels, padding, rates) comes from the spec's resolved records.
Module paths are the spec's layer names: ``inception3a.branch2.conv1`` is
``model.inception3a.branch2.conv1`` (a :class:`ConvUnit` with children
``conv`` and ``bn``), so ``state_dict`` keys line up with
``spec.weight_shapes()`` once ``bn.weight``/``bn.bias`` are read as
``bn.gamma``/``bn.beta``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

import shared_spec
from shared_spec import contract as C
from shared_spec import spec as S

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": lambda: nn.ReLU(inplace=True)}


def _activation(name: str | None, where: str) -> nn.Module | None:
    if C.check_activation(name, where) is None:
        return None
    return ACTIVATIONS[name]()


def _leaf(name: str) -> str:
    """A child's own name: the last part of its spec name (``inception3a.branch2`` -> ``branch2``)."""
    return name.rpartition(".")[2]


def _symmetric(padding: tuple[int, int, int, int]) -> bool:
    top, bottom, left, right = padding
    return top == bottom and left == right


# --------------------------------------------------------------------------- modules


class ShiftOnlyBatchNorm(nn.BatchNorm2d):
    """BatchNorm with beta but no gamma: Keras's ``BatchNormalization(scale=False)``.

    torch has no such switch (``affine=False`` drops both), so this is ``affine=False`` with a ``bias``
    parameter put back: ``_BatchNorm.forward`` passes ``weight=None, bias=self.bias`` to ``F.batch_norm``,
    which then shifts without scaling. The state_dict holds ``bias``, ``running_mean``, ``running_var``.
    """

    def __init__(self, channels: int, *, eps: float, momentum: float):
        super().__init__(channels, eps=eps, momentum=momentum, affine=False)
        self.bias = nn.Parameter(torch.zeros(channels))


def _batchnorm(norm: S.BatchNorm, channels: int) -> nn.BatchNorm2d:
    if norm.scale:
        return nn.BatchNorm2d(channels, eps=norm.eps, momentum=norm.momentum)
    return ShiftOnlyBatchNorm(channels, eps=norm.eps, momentum=norm.momentum)


class ConvUnit(nn.Module):
    """conv -> optional BN -> optional ReLU, like torchvision's ``BasicConv2d``.

    Children are named ``conv`` and ``bn`` (the neutral weight keys). Per-side
    padding that is not symmetric goes through an explicit ``pad`` child.
    """

    def __init__(self, layer: S.Conv):
        super().__init__()
        top, bottom, left, right = layer.padding
        symmetric = _symmetric(layer.padding)
        self.pad = None if symmetric else nn.ZeroPad2d((left, right, top, bottom))
        self.conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, layer.stride,
                              padding=(top, left) if symmetric else 0, bias=layer.bias)
        self.bn = _batchnorm(layer.norm, layer.out_channels) if layer.norm is not None else None
        self.relu = _activation(layer.activation, layer.path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x C_in x H x W -> N x C_out x H' x W'
        if self.pad is not None:
            x = self.pad(x)
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class PaddedPool(nn.Module):
    """A pool with per-side padding (top, bottom, left, right), which torch's symmetric ``padding`` cannot say.

    Pads explicitly (``-inf`` for max, zeros for average) and pools unpadded. Ceil rounding becomes
    extra bottom/right padding from ``shared_spec.ceil_extra_padding``, which keeps the oracle's rule
    (a last window may not start in the padding). Without ``count_include_pad`` an average is divided
    by the share of its window that lies on the input.
    """

    def __init__(self, layer: S.Pool):
        super().__init__()
        self.op = layer.op
        self.kernel_size = layer.kernel
        self.stride = layer.stride
        self.padding = layer.padding
        self.rounding = layer.rounding
        self.count_include_pad = layer.count_include_pad

    def extra_repr(self) -> str:
        return (f"{self.op}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding} "
                f"(top, bottom, left, right), rounding={self.rounding}, count_include_pad={self.count_include_pad}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        (kh, kw), (sh, sw), (top, bottom, left, right) = self.kernel_size, self.stride, self.padding
        bottom += shared_spec.ceil_extra_padding(h, kh, sh, top, bottom, self.rounding)
        right += shared_spec.ceil_extra_padding(w, kw, sw, left, right, self.rounding)
        pad = (left, right, top, bottom)
        if self.op == "maxpool":
            return F.max_pool2d(F.pad(x, pad, value=-math.inf), self.kernel_size, self.stride)
        out = F.avg_pool2d(F.pad(x, pad), self.kernel_size, self.stride)
        if not self.count_include_pad:
            inside = F.avg_pool2d(F.pad(x.new_ones((1, 1, h, w)), pad), self.kernel_size, self.stride)
            out = out / inside
        return out


class TransformInput(nn.Module):
    """torchvision's ``GoogLeNet._transform_input``: each channel ``x[:, c] * scale[c] + shift[c]``.

    The constants stay Python floats (no buffer, so no extra state_dict key), multiplied channel by channel
    as torchvision does, which gives its float32 numbers bit for bit.
    """

    def __init__(self, layer: S.TransformInput):
        super().__init__()
        self.scale, self.shift = layer.scale, layer.shift

    def extra_repr(self) -> str:
        return f"scale={self.scale}, shift={self.shift}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x C x H x W -> N x C x H x W
        return torch.cat([x[:, c:c + 1] * scale + shift for c, (scale, shift) in enumerate(zip(self.scale, self.shift))],
                         dim=1)


class Dense(nn.Linear):
    """``nn.Linear`` with the spec's optional activation; weights stay at ``NAME.weight``/``NAME.bias``."""

    def __init__(self, layer: S.Dense):
        super().__init__(layer.in_features, layer.out_features, bias=layer.bias)
        self.relu = _activation(layer.activation, layer.path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x in_features -> N x out_features
        x = super().forward(x)
        return self.relu(x) if self.relu is not None else x


class Concat(nn.ModuleDict):
    """Parallel branches on the same input (an Inception module); children are the branches."""

    def __init__(self, layer: S.Concat):
        super().__init__()
        for branch in layer.branches:
            _add(self, _leaf(branch.name), _sequential(nn.Sequential(), branch.layers), layer.path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x (sum of the branches' channels) x H x W
        return torch.cat([branch(x) for branch in self.values()], dim=1)


class Aux(nn.Sequential):
    """An auxiliary classifier: a side head on the current tensor, weighted by ``loss_weight`` in training."""

    def __init__(self, layer: S.Aux):
        super().__init__()
        self.loss_weight = layer.loss_weight
        _sequential(self, layer.layers)


class GoogLeNet(nn.Module):
    """The spec's top-level layers in order; aux heads branch off and the main path goes on unchanged.

    ``forward`` returns the main logits, or ``(main, aux1, aux2, ...)`` in spec order when the aux heads
    run: by default in training mode only, as in torchvision; ``with_aux=True`` runs them in eval too.
    """

    def __init__(self, spec: S.Spec):
        super().__init__()
        self.spec = spec
        _sequential(self, spec.layers)

    def forward(self, x: torch.Tensor, *, with_aux: bool | None = None):
        with_aux = self.training if with_aux is None else with_aux
        aux = []
        for module in self.children():
            if isinstance(module, Aux):
                if with_aux:
                    aux.append(module(x))  # N x num_classes; x goes on unchanged
                continue
            x = module(x)
        return (x, *aux) if aux else x  # N x num_classes


# --------------------------------------------------------------------------- the op table


def _pool(layer: S.Pool) -> nn.Module:
    if not _symmetric(layer.padding):
        return PaddedPool(layer)
    top, _, left, _ = layer.padding
    ceil_mode = layer.rounding == "ceil"  # torch's ceil rule is the oracle's
    if layer.op == "maxpool":
        return nn.MaxPool2d(layer.kernel, layer.stride, padding=(top, left), ceil_mode=ceil_mode)
    return nn.AvgPool2d(layer.kernel, layer.stride, padding=(top, left), ceil_mode=ceil_mode,
                        count_include_pad=layer.count_include_pad)


OPS: dict[str, Callable[[S.Layer], nn.Module]] = {
    "conv": ConvUnit,
    "maxpool": _pool,
    "avgpool": _pool,
    "global_avgpool": lambda layer: nn.AdaptiveAvgPool2d((1, 1)),  # N x C x 1 x 1
    "adaptive_avgpool": lambda layer: nn.AdaptiveAvgPool2d(layer.output_size),
    "lrn": lambda layer: nn.LocalResponseNorm(layer.size, alpha=layer.alpha, beta=layer.beta, k=layer.k),
    "dropout": lambda layer: nn.Dropout(layer.rate),
    "flatten": lambda layer: nn.Flatten(),  # N x (C * H * W), channels-first order
    "dense": Dense,
    "concat": Concat,
    "aux": Aux,
    "transform_input": TransformInput,
}


def make_layer(layer: S.Layer) -> nn.Module:
    factory = OPS.get(layer.op)
    if factory is None:
        raise C.unknown_op(layer.op, OPS, layer.path)
    return factory(layer)


def _add(parent: nn.Module, name: str, module: nn.Module, where: str) -> None:
    try:
        parent.add_module(name, module)
    except KeyError:  # the name is already an attribute of the container (``eval``, ``keys``, ``spec``...)
        raise C.ContractError(f"{where}: layer name {name!r} clashes with an attribute of torch's "
                         f"{type(parent).__name__}. Received: name={name!r}") from None


def _sequential(parent: nn.Module, layers: tuple[S.Layer, ...]) -> nn.Module:
    for layer in layers:
        _add(parent, _leaf(layer.name), make_layer(layer), layer.path)
    return parent


# --------------------------------------------------------------------------- init and build


def _trunc_normal(weight: torch.Tensor, init: S.Init, generator: torch.Generator | None) -> None:
    # a and b are absolute bounds, as in torchvision (at std 0.01, +-2 is 200 standard deviations)
    nn.init.trunc_normal_(weight, mean=0.0, std=init.std, a=init.a, b=init.b, generator=generator)


def _xavier_uniform(weight: torch.Tensor, init: S.Init, generator: torch.Generator | None) -> None:
    nn.init.xavier_uniform_(weight, generator=generator)


INITS: dict[str, Callable[[torch.Tensor, S.Init, torch.Generator | None], None]] = {
    "trunc_normal": _trunc_normal,
    "xavier_uniform": _xavier_uniform,
}


def init_weights(model: nn.Module, init: S.Init, generator: torch.Generator | None = None) -> None:
    """Initialise every conv and dense layer by ``init``, in module (= spec) order; BN gamma 1, beta 0."""
    if init.weight not in INITS:
        raise C.ContractError(f"unknown init; expected one of {', '.join(INITS)}. Received: init.weight={init.weight!r}")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                INITS[init.weight](module.weight, init, generator)
                if module.bias is not None:
                    nn.init.constant_(module.bias, init.bias)
            elif isinstance(module, nn.BatchNorm2d):
                if module.weight is not None:  # a ShiftOnlyBatchNorm has none
                    nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
                module.reset_running_stats()


def resolve_device(device: str) -> torch.device:
    """``shared_spec.contract``'s device rule, with CUDA as torch's GPU."""
    chosen = C.resolve_device(device, has_gpu=torch.cuda.is_available, framework="torch")
    return torch.device("cuda" if chosen == "gpu" else "cpu")


def build(spec: S.Spec, *, device: str = "auto", seed: int | None = None) -> GoogLeNet:
    """The spec's network as an ``nn.Module``, initialised by ``spec.init`` and kept as ``model.spec``.

    ``seed`` seeds a private ``torch.Generator`` (the global RNG is left alone), so the same seed gives
    bit-identical weights; weights are drawn on the CPU, then moved, so they do not depend on the device.
    ``seed=None`` draws from torch's global RNG.
    """
    C.check_spec(spec)
    C.check_seed(seed)
    target = resolve_device(device)
    if seed is None:
        model = GoogLeNet(spec)
        init_weights(model, spec.init)
    else:
        # torch's own default init in the module constructors draws from the global RNG: fork it
        with torch.random.fork_rng(devices=[]):
            model = GoogLeNet(spec)
        init_weights(model, spec.init, torch.Generator().manual_seed(seed))
    return model.to(target)
