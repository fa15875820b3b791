"""ONNX builder of googlenet-suite: a :class:`shared_spec.Spec` written as an ONNX graph, run by onnxruntime.

Implements docs/builders.md for inference (no ``train_step``); imports no deep-learning framework::

    import shared_spec, impl_onnx
    spec = shared_spec.load("googlenet", num_classes=10)
    model = impl_onnx.build(spec, seed=0)
    logits = impl_onnx.forward(model, x)           # numpy NCHW in, numpy out
    impl_onnx.save_onnx(model, "googlenet.onnx")
"""

from .api import (
                  OnnxModel,
                  build,
                  count_params,
                  device_of,
                  export_weights,
                  forward,
                  framework_version,
                  import_weights,
                  layer_outputs,
                  load_weights,
                  save_onnx,
                  save_weights,
                  to_model_proto,
)
from .builder import OPS, OPSET

__all__ = [
    "OPS", "OPSET", "OnnxModel", "build", "count_params", "device_of", "export_weights", "forward",
    "framework_version", "import_weights", "layer_outputs", "load_weights", "save_onnx", "save_weights",
    "to_model_proto",
]
