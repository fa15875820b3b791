"""``googlenet-suite check --onnx FILE``: a user's ONNX model, its initializers read and replaced in the neutral
layout (Conv W/B, BatchNormalization's four, Gemm B with or without transB, MatMul + Add), its data flow read from
the graph's edges, every node's output made a graph output and run by onnxruntime (``googlenet_suite/check/`` does
the rest).

An initializer that feeds several nodes (torch's exporter stores identical fresh BatchNorm tensors once with
``training=TrainingMode.PRESERVE``, behind Identity nodes) is one parameter per node here: loading the suite's
weights gives each node its own copy. A file exported in eval mode usually has its BatchNorm folded into the
convolutions: there is then no BN to load the suite's statistics into, and the mapping says so."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

CHANNELS_LAST = False

_KIND = {"Conv": "conv", "BatchNormalization": "bn", "Gemm": "dense", "MatMul": "dense", "MaxPool": "pool",
         "AveragePool": "pool", "GlobalAveragePool": "pool", "GlobalMaxPool": "pool", "Concat": "concat"}
_ROLES = {"Conv": [(1, "conv.weight"), (2, "conv.bias")],
          "BatchNormalization": [(1, "bn.gamma"), (2, "bn.beta"), (3, "bn.running_mean"), (4, "bn.running_var")],
          "Gemm": [(1, "dense.weight"), (2, "dense.bias")],
          "MatMul": [(1, "dense.weight")]}


@dataclass(frozen=True, slots=True)
class Slot:
    """One initializer input of one node: the parameter ``name`` the check sees (the initializer's own name when
    no other node reads it), where it is, and whether a dense weight is stored (in, out)."""

    name: str
    initializer: str
    node: int
    index: int
    module: str
    role: str
    transposed: bool


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
    if not proto.graph.node:
        raise ValueError(f"--onnx {path}: not an ONNX model (no graph nodes)")
    return Model(proto)


def _attr(node, name, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _name(node) -> str:
    return node.name or node.output[0]


def _producers(graph) -> dict[str, int]:
    return {output: k for k, node in enumerate(graph.node) for output in node.output}


def _slots(model: Model) -> list[Slot]:
    nodes = list(model.proto.graph.node)
    producer = _producers(model.proto.graph)

    def initializer(name: str) -> str | None:
        """The initializer behind an input, through Identity nodes (torch's exporter aliases shared tensors so)."""
        while name not in model.inits and name in producer and nodes[producer[name]].op_type == "Identity":
            name = nodes[producer[name]].input[0]
        return name if name in model.inits else None

    found = []
    for k, node in enumerate(nodes):
        module, roles = _name(node), _ROLES.get(node.op_type, [])
        if node.op_type == "Add":  # MatMul + Add: the Add's initializer is the MatMul's bias
            matmul = [i for i, name in enumerate(node.input) if name in producer
                      and nodes[producer[name]].op_type == "MatMul"]
            if len(matmul) == 1 and len(node.input) == 2:
                module, roles = _name(nodes[producer[node.input[matmul[0]]]]), [(1 - matmul[0], "dense.bias")]
        for index, role in roles:
            init = initializer(node.input[index]) if index < len(node.input) else None
            if init is not None:
                transposed = role == "dense.weight" and (node.op_type == "MatMul" or not _attr(node, "transB", 0))
                found.append((init, k, index, module, role, transposed))
    readers: dict[str, int] = {}
    for init, *_ in found:
        readers[init] = readers.get(init, 0) + 1
    return [Slot(init if readers[init] == 1 and nodes[k].input[index] == init else f"{init}@{_name(nodes[k])}:{index}",
                 init, k, index, module, role, transposed)
            for init, k, index, module, role, transposed in found]


def parameters(model: Model) -> list[dict]:
    out = []
    for slot in _slots(model):
        init = model.inits[slot.initializer]
        shape = tuple(init.dims)
        # BatchNormalization always has a scale: where it is all ones, the file may stand for a BN without one
        ones = slot.role == "bn.gamma" and bool(np.all(numpy_helper.to_array(init) == 1))
        out.append({"name": slot.name, "module": slot.module, "role": slot.role,
                    "shape": shape[::-1] if slot.transposed else shape, "ones": ones})
    return out


def flow(model: Model, x=None) -> dict:
    """The graph's edges: each node's name -> the names of the nodes whose outputs it reads, in input order."""
    graph = model.proto.graph
    producer = _producers(graph)
    edges = {_name(node): tuple(_name(graph.node[producer[name]]) for name in node.input if name in producer)
             for node in graph.node}
    outputs = tuple(_name(graph.node[producer[o.name]]) for o in graph.output if o.name in producer)
    return {"edges": edges, "outputs": outputs}


def load(model: Model, values: dict[str, np.ndarray]) -> None:
    """Each value into its own initializer (a shared one is copied for each node that reads it)."""
    graph = model.proto.graph
    for slot in _slots(model):
        if slot.name not in values:
            continue
        value = values[slot.name]
        tensor = numpy_helper.from_array(np.ascontiguousarray(value.T if slot.transposed else value, np.float32),
                                         slot.name)
        if slot.name in model.inits:
            model.inits[slot.name].CopyFrom(tensor)
        else:
            graph.initializer.append(tensor)
            model.inits[slot.name] = graph.initializer[-1]
            graph.node[slot.node].input[slot.index] = slot.name


def run(model: Model, x: np.ndarray):
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    graph = proto.graph
    final = graph.output[0].name
    kinds = {output: (_name(node), _KIND.get(node.op_type, "other")) for node in graph.node for output in node.output}
    existing = {o.name for o in graph.output}
    graph.output.extend([onnx.ValueInfoProto(name=name) for name in kinds if name and name not in existing])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node's output
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inits = set(model.inits)
    feed_name = next(i.name for i in graph.input if i.name not in inits)
    names = [o.name for o in session.get_outputs()]
    by_name = dict(zip(names, session.run(names, {feed_name: x.astype(np.float32)})))
    records = []
    for output, (node_name, kind) in kinds.items():
        value = by_name.get(output)
        if isinstance(value, np.ndarray) and value.dtype == np.float32 and value.ndim in (2, 4):
            records.append({"name": node_name, "kind": kind, "value": value,
                            "pre_activation": kind in ("conv", "bn", "dense")})
    return by_name[final], records
