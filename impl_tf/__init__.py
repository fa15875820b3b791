"""GoogLeNet in Keras 3, built from a ``shared_spec.Spec``: TensorFlow backend by default, and the
same model on Keras's JAX and torch backends (set ``KERAS_BACKEND`` before importing).

The builder contract (``docs/builders.md``)::

    import shared_spec, impl_tf
    model = impl_tf.build(shared_spec.load("googlenet"), seed=0)   # a functional keras.Model, NHWC
    logits = impl_tf.forward(model, x_nchw)                        # numpy in, numpy out
"""

from .api import (count_params, export_weights, flattened_maps, forward, framework_version, import_weights,
                  layer_outputs, load_weights, loss_of, output_layer_name, save_weights, train_step)
from .builder import BACKEND, OPS, GoogLeNet, build, device_of, keras_name
from .layers import (AdaptiveAveragePooling2D, BatchNorm, ConstantPadding2D, ExcludePadAveragePooling2D,
                     LocalResponseNorm)

__all__ = [
    "AdaptiveAveragePooling2D", "BACKEND", "BatchNorm", "ConstantPadding2D", "ExcludePadAveragePooling2D", "GoogLeNet",
    "LocalResponseNorm", "OPS", "build", "count_params", "device_of", "export_weights", "flattened_maps", "forward",
    "framework_version", "import_weights", "keras_name", "layer_outputs", "load_weights", "loss_of",
    "output_layer_name", "save_weights", "train_step",
]
