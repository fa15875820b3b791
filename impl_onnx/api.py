"""The builder contract (docs/builders.md) for ONNX models made by :func:`impl_onnx.build`, run by onnxruntime.

Inference only: there is no training mode and no ``train_step``. Weights are held as numpy in the
neutral layout (``spec.weight_shapes()``) and written into the graph as initializers whenever an
onnxruntime session is made (lazily, and again after ``import_weights``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
import onnxruntime as ort

from shared_spec import contract as C
from shared_spec import spec as S
from shared_spec import weights as W

from . import builder as B

# onnxruntime's intra-op threads for new sessions; 0 lets onnxruntime choose (tests on shared cores set 1)
THREADS = 0


class OnnxModel:
    """A spec, its weights (numpy, neutral layout) and cached onnxruntime sessions."""

    def __init__(self, spec: S.Spec, weights: dict[str, np.ndarray], providers: list[str]):
        self.spec = spec
        self.weights = weights
        self.providers = providers
        self._sessions: dict[bool, ort.InferenceSession] = {}

    def __repr__(self) -> str:
        return f"OnnxModel(variant={self.spec.variant!r}, providers={self.providers})"

    def proto(self, *, opset: int = B.OPSET, all_layers: bool = False) -> onnx.ModelProto:
        return B.build_proto(self.spec, self.weights, opset=opset, all_layers=all_layers)

    def session(self, *, all_layers: bool = False) -> ort.InferenceSession:
        if all_layers not in self._sessions:
            options = ort.SessionOptions()
            if THREADS:
                options.intra_op_num_threads = THREADS
                options.inter_op_num_threads = 1
            self._sessions[all_layers] = ort.InferenceSession(
                self.proto(all_layers=all_layers).SerializeToString(), options, providers=self.providers)
        return self._sessions[all_layers]

    def invalidate(self) -> None:
        self._sessions.clear()


def resolve_providers(device: str) -> list[str]:
    """``shared_spec.contract``'s device rule; onnxruntime's GPU is its CUDA execution provider."""
    chosen = C.resolve_device(device, has_gpu=lambda: "CUDAExecutionProvider" in ort.get_available_providers(),
                              framework=f"onnxruntime (providers: {', '.join(ort.get_available_providers())})")
    if chosen == "gpu":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def build(spec: S.Spec, *, device: str = "auto", seed: int | None = None) -> OnnxModel:
    """The spec's network as an :class:`OnnxModel`, initialised by ``spec.init`` from a numpy Generator
    seeded by ``seed`` (same seed: bit-identical weights); the model keeps its spec as ``model.spec``."""
    C.check_spec(spec)
    C.check_seed(seed)
    providers = resolve_providers(device)
    model = OnnxModel(spec, B.init_weights(spec, seed), providers)
    onnx.checker.check_model(model.proto())  # structure only; cheap next to a session
    return model


def _model(model) -> OnnxModel:
    if not isinstance(model, OnnxModel):
        raise C.ContractError(f"model must come from impl_onnx.build. Received: model={type(model).__name__}")
    return model


def _input(model: OnnxModel, x) -> np.ndarray:
    return C.check_input(model.spec, x)  # the ONNX graph has the spec's fixed input size


def forward(model: OnnxModel, x, *, training: bool = False) -> np.ndarray:
    """Eval-mode logits ``(N, classes)`` (aux heads are extra graph outputs, not returned here)."""
    model = _model(model)
    if C.check_training(training):
        raise NotImplementedError("impl_onnx is inference-only: onnxruntime runs the eval-mode graph "
                                  "(no dropout, BN running statistics); there is no training mode")
    xs = _input(model, x)
    return model.session().run([B.LOGITS], {B.INPUT: xs})[0]


def layer_outputs(model: OnnxModel, x) -> dict[str, np.ndarray]:
    """Eval-mode activations of every layer in ``spec.walk()`` (extra graph outputs), aux heads included."""
    model = _model(model)
    xs = _input(model, x)
    names = [layer.name for layer in model.spec.walk()]
    values = model.session(all_layers=True).run(names, {B.INPUT: xs})
    return dict(zip(names, values))


def export_weights(model: OnnxModel) -> dict[str, np.ndarray]:
    """float32 copies keyed and shaped exactly as ``spec.weight_shapes()``, in that order."""
    model = _model(model)
    return {key: model.weights[key].copy() for key in model.spec.weight_shapes()}


def import_weights(model: OnnxModel, weights: Mapping[str, np.ndarray]) -> None:
    """Check every key and shape first (``WeightsError`` naming the key), then take copies; sessions are remade."""
    model = _model(model)
    W.check_weights(model.spec, weights)
    model.weights = {key: np.array(weights[key], dtype=np.float32, copy=True) for key in model.spec.weight_shapes()}
    model.invalidate()


def save_weights(model: OnnxModel, path: str | os.PathLike) -> None:
    W.save_weights(path, export_weights(model), _model(model).spec)


def load_weights(model: OnnxModel, path: str | os.PathLike) -> None:
    weights, _ = W.load_weights(path, _model(model).spec)
    import_weights(model, weights)


def count_params(model: OnnxModel) -> tuple[int, int]:
    """(trainable parameters, BN running mean + var), counted from the initializers."""
    model = _model(model)
    trainable = sum(v.size for k, v in model.weights.items() if not S.is_buffer(k))
    buffers = sum(v.size for k, v in model.weights.items() if S.is_buffer(k))
    return int(trainable), int(buffers)


def device_of(model: OnnxModel) -> str:
    return "gpu" if _model(model).providers[0] == "CUDAExecutionProvider" else "cpu"


def framework_version() -> str:
    return f"onnxruntime {ort.__version__} / onnx {onnx.__version__}"


def to_model_proto(model: OnnxModel, *, opset: int = B.OPSET) -> onnx.ModelProto:
    """The model as a checked ``onnx.ModelProto`` with its weights as initializers."""
    proto = _model(model).proto(opset=opset)
    onnx.checker.check_model(proto)
    return proto


def save_onnx(model: OnnxModel, path: str | os.PathLike, *, opset: int = B.OPSET) -> None:
    """Write the model to ``path`` (one self-contained .onnx file; outputs ``logits`` and the aux heads)."""
    proto = to_model_proto(model, opset=opset)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        onnx.save_model(proto, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
