"""Export an :func:`impl_tf.build` model to ONNX with tf2onnx (``tf2onnx.convert.from_function``).

The Keras model is channels-last; the file takes NCHW like every other export: the exported function
transposes ``x`` (N x C x H x W) to NHWC in front of the model. Interface of :mod:`impl_onnx.verify`:
input ``x`` (batch axis dynamic), outputs ``logits`` and, with ``aux=True``, one per aux head in spec
order (eval mode). Needs ``tf2onnx`` (1.17.0 is known to work with TF 2.17 / Keras 3).
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from shared_spec import contract as C


OPSET = 17  # the opset `googlenet-suite export` writes unless --opset says otherwise
OPSETS = range(13, 19)  # tf2onnx 1.17 writes up to 18; 13 is the oldest with Pad and Split taking inputs


output_names = C.onnx_output_names


def export_onnx(model: keras.Model, path: str | os.PathLike, *, opset: int, aux: bool) -> None:
    """Write ``model`` (eval mode, NCHW input) to ``path``; ``aux=True`` needs a model built with aux heads."""
    import tf2onnx

    spec = C.check_export(model, "impl_tf", aux=aux, opset=opset, opsets=OPSETS)
    # every graph output of the functional model (main logits, then the aux heads), whatever its call picks
    plain = keras.Model(model.inputs, model.outputs)
    count = len(output_names(spec, aux))
    signature = [tf.TensorSpec((None, *spec.input_shape), tf.float32, name="x")]

    @tf.function(input_signature=signature)
    def nchw_model(x):
        outputs = plain(tf.transpose(x, (0, 2, 3, 1)), training=False)  # N x C x H x W -> N x H x W x C
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        return [tf.identity(o) for o in outputs[:count]]

    tf2onnx.convert.from_function(nchw_model, input_signature=signature, opset=opset, output_path=os.fspath(path))
