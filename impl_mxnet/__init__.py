"""GoogLeNet in MXNet Gluon from a ``shared_spec.Spec``: the builder contract (docs/builders.md).

::

    import shared_spec, impl_mxnet
    model = impl_mxnet.build(shared_spec.load("googlenet"), seed=0)
    logits = impl_mxnet.forward(model, x)  # x: float32 NCHW numpy
"""

from .builder import OPS, GoogLeNet, build, named_blocks, named_parameters, pool_plan
from .api import (count_params, device_of, export_weights, forward, framework_version, import_weights,
                      layer_outputs, load_weights, save_weights, train_step)

__all__ = [
    "OPS", "GoogLeNet", "build", "count_params", "device_of", "export_weights", "forward", "framework_version",
    "import_weights", "layer_outputs", "load_weights", "named_blocks", "named_parameters", "pool_plan",
    "save_weights", "train_step",
]
