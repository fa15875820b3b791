"""PyTorch builder of googlenet-suite: a :class:`shared_spec.Spec` as an ``nn.Module``.

Implements docs/builders.md::

    import shared_spec, impl_torch
    spec = shared_spec.load("googlenet", num_classes=10)
    model = impl_torch.build(spec, seed=0)
    logits = impl_torch.forward(model, x)          # numpy NCHW in, numpy out
"""

from .api import (count_params, device_of, export_weights, forward, framework_version, import_weights,
                  layer_outputs, load_weights, save_weights, train_step)
from .builder import OPS, build

__all__ = [
    "OPS", "build", "count_params", "device_of", "export_weights", "forward", "framework_version",
    "import_weights", "layer_outputs", "load_weights", "save_weights", "train_step",
]
