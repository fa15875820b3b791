"""The builder contract (docs/builders.md) for the Keras models of :func:`impl_tf.build`.

numpy in, numpy out, channels-first at the boundary: inputs arrive NCHW and are transposed to the
model's NHWC; activations and weights leave in the neutral layout (conv OIHW, dense inputs in
channels-first flatten order). The gradient of ``train_step`` is the backend's own.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import keras
import numpy as np

import shared_spec
from shared_spec import Aux, Concat, Conv, Dense, Flatten, Layer, Spec
from shared_spec import contract as C
from shared_spec.spec import BN_KEYS
from shared_spec.weights import check_weights

from .builder import BACKEND, GoogLeNet, _backend, _layers_by_name, _on, device_of


# --------------------------------------------------------------------------- names and layouts


def output_layer_name(layer: Layer) -> str:
    """The Keras layer whose output is the spec layer's output (a conv unit: its last layer)."""
    if isinstance(layer, Conv):
        if layer.activation == "relu":
            return f"{layer.name}.relu"
        return f"{layer.name}.bn" if layer.norm is not None else f"{layer.name}.conv"
    if isinstance(layer, Aux):
        return output_layer_name(layer.layers[-1])
    return layer.name


def flattened_maps(spec: Spec) -> dict[str, tuple[int, int, int]]:
    """Layers that see a flattened spatial map, with that map's ``(C, H, W)``.

    Keras flattens ``N x H x W x C`` in ``(h, w, c)`` order, the neutral layout in ``(c, h, w)``
    order. Listed: each flatten of a spatial map, the layers after it (dropout) whose output is
    still that vector, and the dense layer that consumes it (its weight's input axis is permuted).
    """
    analysis = shared_spec.analyze(spec)
    found: dict[str, tuple[int, int, int]] = {}

    def visit(layers):
        pending = None
        for layer in layers:
            if isinstance(layer, Flatten):
                shape = analysis.layer(layer.name).in_shape
                pending = shape if len(shape) == 3 else None
            if isinstance(layer, Concat):
                for branch in layer.branches:
                    visit(branch.layers)
            elif isinstance(layer, Aux):
                visit(layer.layers)
            elif pending is not None:
                found[layer.name] = pending
                if isinstance(layer, Dense):
                    pending = None

    visit(spec.layers)
    return found


def _hwc_to_chw_order(flat: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """A batch of vectors flattened in (h, w, c) order -> the same in (c, h, w) order."""
    c, h, w = chw
    return flat.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(flat.shape)


def _chw_to_hwc_order(flat: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    c, h, w = chw
    return flat.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(flat.shape)


def _dense_to_neutral(kernel: np.ndarray, chw: tuple[int, int, int] | None) -> np.ndarray:
    """Keras kernel (in, out), ``in`` in (h, w, c) order -> neutral (out, in), ``in`` in (c, h, w) order."""
    weight = kernel.T
    return weight if chw is None else _hwc_to_chw_order(weight, chw)


def _dense_from_neutral(weight: np.ndarray, chw: tuple[int, int, int] | None) -> np.ndarray:
    return (weight if chw is None else _chw_to_hwc_order(weight, chw)).T


def _variables(model: GoogLeNet) -> dict[str, tuple[keras.Variable, Callable, Callable]]:
    """Neutral key -> (Keras variable, to_neutral, from_neutral), in ``spec.weight_shapes()`` order."""
    C.check_model_spec(model, "impl_tf")
    layers = _layers_by_name(model)
    maps = flattened_maps(model.spec)
    same = (lambda a: a, lambda a: a)
    out = {}
    for layer in model.spec.walk():
        if isinstance(layer, Conv):
            conv = layers[f"{layer.name}.conv"]
            # HWIO <-> OIHW
            out[f"{layer.name}.conv.weight"] = (conv.kernel, lambda a: a.transpose(3, 2, 0, 1),
                                                lambda a: a.transpose(2, 3, 1, 0))
            if layer.bias:
                out[f"{layer.name}.conv.bias"] = (conv.bias, *same)
            if layer.norm is not None:
                bn = layers[f"{layer.name}.bn"]
                variables = dict(zip(BN_KEYS, (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)))
                for key in layer.norm.keys:  # no gamma where the spec's BN has no scale (bn.gamma is None)
                    out[f"{layer.name}.bn.{key}"] = (variables[key], *same)
        elif isinstance(layer, Dense):
            dense, chw = layers[layer.name], maps.get(layer.name)  # chw: fed by a flatten of that map
            out[f"{layer.name}.weight"] = (dense.kernel, lambda a, chw=chw: _dense_to_neutral(a, chw),
                                           lambda a, chw=chw: _dense_from_neutral(a, chw))
            if layer.bias:
                out[f"{layer.name}.bias"] = (dense.bias, *same)
    return out


# --------------------------------------------------------------------------- weights


def export_weights(model: GoogLeNet) -> dict[str, np.ndarray]:
    """Every weight and BN statistic in the neutral layout (keys and shapes: ``spec.weight_shapes()``)."""
    return {key: np.ascontiguousarray(to_neutral(np.asarray(variable.numpy(), dtype=np.float32)))
            for key, (variable, to_neutral, _) in _variables(model).items()}


def import_weights(model: GoogLeNet, weights) -> None:
    """Set every weight from the neutral layout, after ``check_weights`` (``WeightsError`` names the key)."""
    check_weights(model.spec, weights)
    for key, (variable, _, from_neutral) in _variables(model).items():
        variable.assign(np.ascontiguousarray(from_neutral(np.asarray(weights[key], dtype=np.float32))))


def save_weights(model: GoogLeNet, path) -> None:
    shared_spec.weights.save_weights(path, export_weights(model), model.spec)


def load_weights(model: GoogLeNet, path) -> dict[str, str]:
    """Load a safetensors weight file into ``model``; returns the file's metadata."""
    weights, meta = shared_spec.weights.load_weights(path, model.spec)
    import_weights(model, weights)
    return meta


def count_params(model: GoogLeNet) -> tuple[int, int]:
    """(trainable, buffers): Keras's trainable and non-trainable weights (BN moving mean and variance)."""
    def size(variables):
        return sum(int(np.prod(v.shape)) for v in variables)

    return size(model.trainable_weights), size(model.non_trainable_weights)


def framework_version() -> str:
    return f"keras {keras.__version__} ({BACKEND} {_backend.__version__})"


# --------------------------------------------------------------------------- running


def _check_input(model: GoogLeNet, x) -> np.ndarray:
    spec = C.check_model_spec(model, "impl_tf")
    return np.ascontiguousarray(C.check_input(spec, x).transpose(0, 2, 3, 1))  # N x H x W x C


def _to_numpy(tensor) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def forward(model: GoogLeNet, x, *, training: bool = False):
    """Logits for an NCHW numpy batch; ``(main, aux1, aux2)`` in training mode with aux heads on."""
    training = C.check_training(training)
    nhwc = _check_input(model, x)
    with _on(device_of(model)):
        outputs = model(nhwc, training=training)
    if isinstance(outputs, (tuple, list)):
        return tuple(_to_numpy(out) for out in outputs)
    return _to_numpy(outputs)


def layer_outputs(model: GoogLeNet, x) -> dict[str, np.ndarray]:
    """Eval-mode output of every layer in ``spec.walk()``, channels-first (N x C x H x W)."""
    nhwc = _check_input(model, x)
    names = {layer.name: output_layer_name(layer) for layer in model.spec.walk()}
    layers = _layers_by_name(model)
    probe = keras.Model(model.input, {name: layers[kname].output for name, kname in names.items()})
    with _on(device_of(model)):
        outputs = probe(nhwc, training=False)
    flat = flattened_maps(model.spec)
    result = {}
    for name, layer in ((layer.name, layer) for layer in model.spec.walk()):
        value = _to_numpy(outputs[name])
        if value.ndim == 4:
            value = value.transpose(0, 3, 1, 2)
        elif name in flat and not isinstance(layer, Dense):
            value = _hwc_to_chw_order(value, flat[name])
        result[name] = value
    return result


def loss_of(spec: Spec, outputs, y):
    """``mean CE(main) + sum(aux.loss_weight * mean CE(aux_i))``; ``outputs`` as the model returns in training."""
    def cross_entropy(logits):
        return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))

    if not isinstance(outputs, (tuple, list)):
        return cross_entropy(outputs)
    main, *aux = outputs
    loss = cross_entropy(main)
    for head, logits in zip(spec.aux_heads, aux, strict=True):
        loss = loss + head.loss_weight * cross_entropy(logits)
    return loss


def train_step(model: GoogLeNet, x, y, *, lr: float = 0.01) -> dict:
    """One training-mode step of plain SGD; returns the loss, d loss / d x (NCHW) and the new weights.

    The gradient is the backend's own: ``tf.GradientTape``, ``jax.value_and_grad`` over
    ``model.stateless_call``, or ``torch.autograd.grad``. The update is ``w - lr * grad`` in all three.
    """
    lr = C.check_lr(lr)
    nhwc = _check_input(model, x)
    labels = C.check_labels(model.spec, y, len(nhwc))
    variables = model.trainable_variables
    with _on(device_of(model)):
        loss, input_grad, grads = _GRADIENTS[BACKEND](model, nhwc, labels)
        with _backend.no_grad() if BACKEND == "torch" else contextlib.nullcontext():
            for variable, grad in zip(variables, grads, strict=True):
                variable.assign(variable.value - lr * grad)
    return {"loss": float(loss), "input_grad": _to_numpy(input_grad).transpose(0, 3, 1, 2),
            "weights": export_weights(model)}


def _gradients_tensorflow(model: GoogLeNet, nhwc: np.ndarray, labels: np.ndarray):
    tf = _backend
    inputs = tf.convert_to_tensor(nhwc)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = loss_of(model.spec, model(inputs, training=True), tf.convert_to_tensor(labels))
    input_grad, *grads = tape.gradient(loss, [inputs, *model.trainable_variables])
    return loss, input_grad, grads


def _gradients_jax(model: GoogLeNet, nhwc: np.ndarray, labels: np.ndarray):
    jax = _backend
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_fn(trainable, inputs):
        outputs, updated = model.stateless_call(trainable, non_trainable, inputs, training=True)
        return loss_of(model.spec, outputs, labels), updated

    (loss, updated), (grads, input_grad) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
        trainable, jax.numpy.asarray(nhwc))
    for variable, value in zip(model.non_trainable_variables, updated, strict=True):
        variable.assign(value)  # BN running statistics (and dropout seed state)
    return loss, input_grad, grads


def _gradients_torch(model: GoogLeNet, nhwc: np.ndarray, labels: np.ndarray):
    torch = _backend
    inputs = keras.ops.convert_to_tensor(nhwc).requires_grad_(True)
    loss = loss_of(model.spec, model(inputs, training=True), keras.ops.convert_to_tensor(labels))
    input_grad, *grads = torch.autograd.grad(loss, [inputs, *(v.value for v in model.trainable_variables)])
    return loss.detach(), input_grad, grads


_GRADIENTS = {"tensorflow": _gradients_tensorflow, "jax": _gradients_jax, "torch": _gradients_torch}
