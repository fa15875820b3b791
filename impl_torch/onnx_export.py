"""Export an :func:`impl_torch.build` model to ONNX with torch's TorchScript exporter (``dynamo=False``).

The file has the suite's ONNX interface (:mod:`impl_onnx.verify`): input ``x`` (N x C x H x W, batch
axis dynamic), outputs ``logits`` and, with ``aux=True``, one per aux head in spec order (eval mode).

That exporter refuses ``nn.AdaptiveAvgPool2d`` where the output size does not divide the input (the
aux heads' 14x14 -> 4x4): the exported copy has each such module swapped for
:class:`ExplicitAdaptiveAvgPool2d`, the same windows written as slices and means. The model itself is
not changed.
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn
from torch.onnx import _constants as onnx_constants

from shared_spec import contract as C


class ExplicitAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d(output_size)`` as slices: PyTorch's windows
    [floor(i * H / oh), ceil((i + 1) * H / oh)), each averaged, concatenated back into oh x ow."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    @staticmethod
    def windows(size: int, out: int) -> list[tuple[int, int]]:
        return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])  # fixed when traced: the graph has one input size
        oh, ow = self.output_size
        rows = [torch.cat([x[:, :, h0:h1, w0:w1].mean(dim=(2, 3), keepdim=True) for w0, w1 in self.windows(w, ow)],
                          dim=3) for h0, h1 in self.windows(h, oh)]
        return torch.cat(rows, dim=2)


def exportable_copy(model: nn.Module) -> nn.Module:
    """A CPU eval-mode copy with every non-global ``nn.AdaptiveAvgPool2d`` made explicit."""
    out = copy.deepcopy(model).cpu().eval()
    for name, module in list(out.named_modules()):
        if isinstance(module, nn.AdaptiveAvgPool2d) and tuple(_pair(module.output_size)) != (1, 1):
            parent_name, _, leaf = name.rpartition(".")
            parent = out.get_submodule(parent_name) if parent_name else out
            parent._modules[leaf] = ExplicitAdaptiveAvgPool2d(_pair(module.output_size))
    return out


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


class _Outputs(nn.Module):
    """Eval-mode main logits, or ``(logits, aux1, aux2, ...)`` with the aux heads."""

    def __init__(self, net: nn.Module, aux: bool):
        super().__init__()
        self.net = net
        self.aux = aux

    def forward(self, x: torch.Tensor):
        return self.net(x, with_aux=self.aux)


OPSET = 17  # the opset `googlenet-suite export` writes unless --opset says otherwise
#: torch.onnx's TorchScript exporter writes up to opset 20; 13 is the oldest the suite's graphs need (Pad and Split
#: taking their sizes as inputs)
OPSETS = range(13, onnx_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET + 1)


output_names = C.onnx_output_names


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int, aux: bool) -> None:
    """Write ``model`` (eval mode) to ``path``; ``aux=True`` needs a model built with ``aux_logits``."""
    spec = C.check_export(model, "impl_torch", aux=aux, opset=opset, opsets=OPSETS)
    wrapper = _Outputs(exportable_copy(model), aux).eval()
    x = torch.zeros((1, *spec.input_shape), dtype=torch.float32)
    names = output_names(spec, aux)
    with torch.no_grad():
        torch.onnx.export(wrapper, (x,), os.fspath(path), dynamo=False, opset_version=opset, input_names=["x"],
                          output_names=names, dynamic_axes={n: {0: "N"} for n in ["x", *names]},
                          do_constant_folding=True)
