"""``googlenet-suite check --onnx FILE``: a user's ONNX model, its initializers read and replaced in the neutral
layout (Conv W/B, BatchNormalization's four, Gemm B with or without transB, MatMul + Add), every node's output
made a graph output and run by onnxruntime (``googlenet_suite/check.py`` does the rest).

A file exported in eval mode usually has its BatchNorm folded into the convolutions: there is then no BN to
load the suite's statistics into, and the mapping says so (export with ``training=TrainingMode.PRESERVE``)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

CHANNELS_LAST = False

_POOL = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"}


class Model:
    def __init__(self, proto: onnx.ModelProto):
        self.proto = proto
        self.inits = {init.name: init for init in proto.graph.initializer}


def load_model(path: str, spec) -> Model:
    try:
        proto = onnx.load(path)
        onnx.checker.check_model(proto)  # a node without outputs, an op no schema knows: refused here, not later
    except FileNotFoundError:
        raise ValueError(f"--onnx {path}: no such file") from None
    except Exception as exc:
        raise ValueError(f"--onnx {path}: not an ONNX model ({type(exc).__name__}: {str(exc)[:120]})") from None
    return Model(proto)


def _attr(node, name, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _slots(model: Model) -> list[tuple[str, str, str, bool]]:
    """(initializer, module, role, transposed) in node order; ``transposed``: stored (in, out) for a dense."""
    out, used = [], set()
    nodes = list(model.proto.graph.node)
    for k, node in enumerate(nodes):
        module = node.name or node.output[0]
        inputs = [name for name in node.input]
        if node.op_type == "Conv":
            roles = [(1, "conv.weight"), (2, "conv.bias")]
        elif node.op_type == "BatchNormalization":
            roles = [(1, "bn.gamma"), (2, "bn.beta"), (3, "bn.running_mean"), (4, "bn.running_var")]
        elif node.op_type == "Gemm":
            roles = [(1, "dense.weight"), (2, "dense.bias")]
        elif node.op_type == "MatMul":
            roles = [(1, "dense.weight")]
        elif node.op_type == "Add" and k and nodes[k - 1].op_type == "MatMul" and nodes[k - 1].output[0] in inputs:
            module = nodes[k - 1].name or nodes[k - 1].output[0]
            roles = [(1 - inputs.index(nodes[k - 1].output[0]), "dense.bias")]
        else:
            continue
        for index, role in roles:
            if index < len(inputs) and inputs[index] in model.inits and inputs[index] not in used:
                transposed = role == "dense.weight" and (node.op_type == "MatMul" or not _attr(node, "transB", 0))
                used.add(inputs[index])
                out.append((inputs[index], module, role, transposed))
    return out


def parameters(model: Model) -> list[dict]:
    out = []
    for name, module, role, transposed in _slots(model):
        shape = tuple(model.inits[name].dims)
        out.append({"name": name, "module": module, "role": role, "shape": shape[::-1] if transposed else shape})
    return out


def load(model: Model, values: dict[str, np.ndarray]) -> None:
    transposed = {name: t for name, _, _, t in _slots(model)}
    for name, value in values.items():
        value = np.ascontiguousarray(value.T if transposed[name] else value, np.float32)
        model.inits[name].CopyFrom(numpy_helper.from_array(value, name))


def run(model: Model, x: np.ndarray):
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    graph = proto.graph
    final = graph.output[0].name
    kinds = {}
    for node in graph.node:
        kind = ("conv" if node.op_type == "Conv" else "bn" if node.op_type == "BatchNormalization" else
                "dense" if node.op_type in ("Gemm", "MatMul") else "pool" if node.op_type in _POOL else "other")
        for output in node.output:
            kinds[output] = (node.name or output, kind)
    existing = {o.name for o in graph.output}
    graph.output.extend([onnx.ValueInfoProto(name=name) for name in kinds if name and name not in existing])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node's output
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inits = set(model.inits)
    feed_name = next(i.name for i in graph.input if i.name not in inits)
    names = [o.name for o in session.get_outputs()]
    outs = session.run(names, {feed_name: x.astype(np.float32)})
    records = []
    by_name = dict(zip(names, outs))
    for output, (node_name, kind) in kinds.items():
        value = by_name.get(output)
        if isinstance(value, np.ndarray) and value.dtype == np.float32 and value.ndim in (2, 4):
            records.append({"name": node_name, "kind": kind, "value": value,
                            "pre_activation": kind in ("conv", "bn", "dense")})
    return by_name[final], records
