"""``googlenet-suite export --framework onnx``: the spec-built graph itself, the same interface as the
framework exporters (one NCHW input ``x``; outputs ``logits``, then each aux head when they are on)."""

from __future__ import annotations

import os

import onnx

from shared_spec import contract as C

from . import api
from .builder import MIN_OPSET, OPSET

__all__ = ["OPSET", "OPSETS", "export_onnx"]

OPSETS = range(MIN_OPSET, onnx.defs.onnx_opset_version() + 1)


def export_onnx(model: api.OnnxModel, path: str | os.PathLike, *, opset: int, aux: bool) -> None:
    spec = C.check_model_spec(model, "impl_onnx")
    if aux != spec.aux_logits:
        raise C.ContractError(f"aux={aux} but {spec.variant} was built with aux_logits={spec.aux_logits}: the graph "
                              f"has the aux outputs exactly when the spec has them on. Received: aux={aux!r}")
    api.save_onnx(model, path, opset=opset)
