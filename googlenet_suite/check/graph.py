"""The two graphs ``check`` lines up: the spec's layers with the layer that feeds each, and the user's model as
its data flow (which node feeds which), put in one canonical order.

The canonical order is the one the spec lists its layers in: the trunk up to a fork, then each branch whole, in the
order the concatenation takes them. A depth-first post-order from the model's outputs, visiting each node's inputs
in their order, gives exactly that for any topological order the framework happens to run in (Keras runs a
functional graph a level at a time, so the branches' layers interleave; tf2onnx writes its nodes in an order of its
own). Equal-shaped layers are then told apart by their place in the graph, not by when they ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import shared_spec
from shared_spec.spec import Aux, Concat, Dense, Dropout, Flatten


@dataclass(frozen=True, slots=True)
class Step:
    """One spec layer in execution order, with the layer whose output is its input."""

    layer: object
    top: bool  # a top-level layer of the main path
    source: str | None  # the layer whose output is this one's input (None: the network's input)
    container: str | None  # the enclosing concat or aux head


def steps(spec: shared_spec.Spec) -> list[Step]:
    """Every layer in execution order (children before their container), with the layer that feeds it."""
    out: list[Step] = []

    def walk(layers, source, top, container):
        for layer in layers:
            if isinstance(layer, Concat):
                for branch in layer.branches:
                    walk(branch.layers, source, False, layer.name)
                out.append(Step(layer, top, source, container))
                source = layer.name
            elif isinstance(layer, Aux):
                walk(layer.layers, source, False, layer.name)
                out.append(Step(layer, False, source, container))
            else:
                out.append(Step(layer, top, source, container))
                source = layer.name
        return source

    walk(spec.layers, None, True, None)
    return out


def aux_layers(spec: shared_spec.Spec) -> set[str]:
    """The names of every layer inside an aux head."""
    return {layer.name for head in spec.aux_heads for layer in spec.walk(head.layers)}


def _flattened(spec: shared_spec.Spec) -> dict[str, tuple[int, ...]]:
    """For a flatten of a spatial map, the dropouts after it and the dense layer they feed: the (C, H, W) that was
    flattened (H*W > 1)."""
    report = shared_spec.analyze(spec)
    plan = steps(spec)
    by_name = {s.layer.name: s for s in plan}
    out: dict[str, tuple[int, ...]] = {}
    for step in plan:
        layer = step.layer
        if isinstance(layer, Flatten):
            shape = tuple(report.layer(layer.name).in_shape)
            if len(shape) == 3 and shape[1] * shape[2] > 1:
                out[layer.name] = shape
        elif isinstance(layer, (Dropout, Dense)) and step.source in out \
                and isinstance(by_name[step.source].layer, (Flatten, Dropout)):
            out[layer.name] = out[step.source]
    return out


def flatten_shapes(spec: shared_spec.Spec) -> dict[str, tuple[int, ...]]:
    """A flatten of a spatial map and the dropouts after it: the (C, H, W) flattened, so that a channels-last
    flatten can be read back in channels-first order."""
    return {name: shape for name, shape in _flattened(spec).items() if not isinstance(spec.layer(name), Dense)}


def flatten_sources(spec: shared_spec.Spec) -> dict[str, tuple[int, ...]]:
    """For each dense layer fed by a flatten (through dropouts), the (C, H, W) that was flattened."""
    return {name: shape for name, shape in _flattened(spec).items() if isinstance(spec.layer(name), Dense)}


def dataflow_order(edges: Mapping[str, Sequence[str]], outputs: Sequence[str]) -> list[str]:
    """Every node reachable from ``outputs`` (main output first), each after all of its inputs, the inputs of a
    node visited in their order: a depth-first post-order, iterative (an ONNX graph is deeper than Python's
    recursion limit)."""
    order: list[str] = []
    seen: set[str] = set()
    for root in outputs:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(edges.get(root, ())))]
        while stack:
            node, inputs = stack[-1]
            following = next((name for name in inputs if name not in seen), None)
            if following is None:
                stack.pop()
                order.append(node)
            else:
                seen.add(following)
                stack.append((following, iter(edges.get(following, ()))))
    return order


@dataclass(frozen=True, slots=True)
class Flow:
    """The user's model as data flow: for each node (layer, module or ONNX node, named as the adapter names its
    parameters' modules) the nodes that feed it, in input order, and the output nodes, main output first. An
    adapter that cannot see the graph gives ``order`` instead: the order the nodes ran in."""

    edges: Mapping[str, tuple[str, ...]] | None = None
    outputs: tuple[str, ...] = ()
    order: tuple[str, ...] = ()

    @property
    def from_graph(self) -> bool:
        return self.edges is not None


def rank(names: Iterable[str], flow: Flow) -> dict[str, tuple[int, int]]:
    """Each name's place in the canonical order, as a sort key. A name the graph does not hold (a layer inside a
    Sequential or subclassed layer of a functional model, ``block.conv``) takes its nearest enclosing node's place,
    then the order it ran in; names neither saw come last."""
    graph = {name: k for k, name in enumerate(dataflow_order(flow.edges, flow.outputs))} if flow.from_graph else {}
    ran = {name: k for k, name in enumerate(flow.order)}

    def key(name: str) -> tuple[int, int]:
        parts = name.split(".")
        place = next((graph[head] for head in (".".join(parts[:n]) for n in range(len(parts), 0, -1))
                      if head in graph), len(graph))
        return place, ran.get(name, len(ran))

    return {name: key(name) for name in names}
