"""``keras.applications.InceptionV3``'s parameters for the suite's weight keys (no framework needed here: the
model is built and read by ``impl_tf.checkpoints``).

Keras names its layers by a per-process counter (``conv2d_37``, ``batch_normalization_37``), so names say
nothing. The layers are matched through the model's data flow instead, the way ``check`` maps a functional Keras
model onto the spec with no ``--map``: :func:`googlenet_suite.check.graph.rank` puts the parameters in the
canonical order (the trunk to a fork, then each branch whole, in the order the concatenation takes them, the
spec's own order), and :func:`googlenet_suite.check.mapping.map_weights` pairs each conv unit and dense layer
with the spec's, shape for shape. Anything else than a clean pairing in that order is refused.
"""

from __future__ import annotations

import numpy as np

import shared_spec
from shared_spec import weights as W

from ..check.graph import Flow, rank
from ..check.mapping import Param, map_weights

APPLICATION = "keras.applications.InceptionV3"


def names(spec: shared_spec.Spec, layout: dict) -> dict[str, str]:
    """Suite weight key -> the parameter name ``impl_tf.check`` gives (``conv2d_37.weight``,
    ``batch_normalization_37.running_var``, ``predictions.bias``), in ``spec.weight_shapes()`` order."""
    params = [Param(p["name"], p["module"], p["role"], tuple(p["shape"])) for p in layout["params"]]
    graph = layout["flow"]
    if graph is None:
        raise W.WeightsError(f"{APPLICATION} has no functional graph here; its layers cannot be matched")
    flow = Flow({node: tuple(inputs) for node, inputs in graph["edges"].items()}, tuple(graph["outputs"]))
    place = rank((p.module for p in params), flow)
    params.sort(key=lambda p: place[p.module])
    zeros = {key: np.zeros(shape, np.float32) for key, shape in spec.weight_shapes().items()}
    mapping = map_weights(spec, params, zeros, aux_last=True)
    if mapping.mismatch is not None or mapping.notes:
        why = mapping.mismatch.text if mapping.mismatch is not None else mapping.notes[0]
        raise W.WeightsError(f"{APPLICATION} does not map onto variant {spec.variant!r} through its graph: {why}")
    return {key: mapping.keys[key] for key in spec.weight_shapes()}
