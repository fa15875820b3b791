"""Export an :func:`impl_mxnet.build` model to ONNX with MXNet's own exporter (mx2onnx, ``mx.onnx``).

The network is traced to a symbol (the block called on ``mx.sym.var``, as ``hybridize`` + ``export``
would write it) and exported with its parameters. Interface of :mod:`impl_onnx.verify`: input ``x``
(batch axis dynamic), outputs ``logits`` and, with ``aux=True``, one per aux head in spec order.

mx2onnx converts ``_contrib_AdaptiveAvgPooling2D`` only to a global pool (output size 1): while the
symbol is traced, each adaptive pool block with another output size writes PyTorch's windows instead
(``slice`` + ``mean`` + ``concat``, the same numbers). An exporter that still refuses a layer raises
:class:`MxnetOnnxExportError` naming the exporter and the layer.
"""

from __future__ import annotations

import os

import mxnet as mx
import onnx

import shared_spec
from shared_spec import contract as C

from .builder import AdaptiveAvgPool, GoogLeNet, named_blocks


class MxnetOnnxExportError(C.ContractError):
    """mx2onnx cannot convert a layer. One line."""


def _windows(size: int, out: int) -> list[tuple[int, int]]:
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _explicit_adaptive(in_shape, output_size):
    _, h, w = in_shape
    oh, ow = output_size

    def hybrid_forward(F, x):
        rows = []
        for h0, h1 in _windows(h, oh):
            cells = [F.mean(F.slice(x, begin=(None, None, h0, w0), end=(None, None, h1, w1)), axis=(2, 3),
                            keepdims=True) for w0, w1 in _windows(w, ow)]
            rows.append(F.concat(*cells, dim=3))
        return F.concat(*rows, dim=2)

    return hybrid_forward


output_names = C.onnx_output_names


def symbol(model: GoogLeNet, aux: bool) -> mx.sym.Symbol:
    """The eval-mode graph as one symbol (grouped outputs: main logits, then the aux heads if ``aux``)."""
    spec = model.spec
    shapes = {info.name: info.in_shape for info in shared_spec.analyze(spec).layers}
    patched = []
    try:
        for name, block in named_blocks(model):
            if isinstance(block, AdaptiveAvgPool) and tuple(block._output_size) != (1, 1):
                block.hybrid_forward = _explicit_adaptive(shapes[name], block._output_size)
                patched.append(block)
        out = model(mx.sym.var("x"))
    finally:
        for block in patched:
            del block.hybrid_forward  # back to the class's AdaptiveAvgPooling2D
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    outs = outs[:len(output_names(spec, aux))]
    return outs[0] if len(outs) == 1 else mx.sym.Group(outs)


def _graph_proto(sym, params, input_shape, opset: int):
    """mx2onnx's graph, written with the converters of ``opset``.

    ``mx.onnx.export_model`` (1.9.1) always asks for the newest opset of the installed onnx package
    and then checks its opset-13 nodes against that opset (onnx 1.18: opset 23, where ReduceMean's
    ``axes`` is an input, so the check fails): this calls the same converter with ``opset`` and leaves
    the check to ``onnx.checker.check_model`` on the finished model, which reads its real opset.
    """
    from mxnet.onnx.mx2onnx import _export_onnx

    saved = onnx.checker.check_graph  # mx2onnx imports it inside the call: swap it for the call only
    onnx.checker.check_graph = lambda graph, *args, **kwargs: None
    try:
        return _export_onnx.MXNetGraph().create_onnx_graph_proto(
            sym, params, [(1, *input_shape)], [onnx.TensorProto.FLOAT], opset_version=opset, dynamic=True,
            dynamic_input_shapes=[(None, *input_shape)])
    finally:
        onnx.checker.check_graph = saved


def export_onnx(model: GoogLeNet, path: str | os.PathLike, *, opset: int, aux: bool) -> None:
    """Write ``model`` (eval mode) to ``path``; ``aux=True`` needs a model built with aux heads.

    mx2onnx (MXNet 1.9.1) has converters for opsets 12 and 13 only: another ``opset`` is a ``ValueError``.
    """
    spec = C.check_export(model, "impl_mxnet", aux=aux, opset=opset, opsets=OPSETS)  # mx2onnx: 12 or 13 only
    sym = symbol(model, aux)
    params = {p.name: p.data(p.list_ctx()[0]).as_in_context(mx.cpu()) for p in model.collect_params().values()}
    used = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    params = {k: v for k, v in params.items() if k in used}
    try:
        graph = _graph_proto(sym, params, spec.input_shape, opset)
    except (AttributeError, NotImplementedError, ValueError, KeyError) as exc:
        text = str(exc).strip().splitlines()
        raise MxnetOnnxExportError(f"mx2onnx (MXNet {mx.__version__}) cannot convert "
                                   f"{spec.variant}: {text[0] if text else type(exc).__name__}") from None
    weights = {init.name for init in graph.initializer}  # mx2onnx also lists every weight as a graph input
    inputs = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   producer_name="mx2onnx", producer_version=mx.__version__)
    onnx.save_model(model, os.fspath(path))


OPSETS = range(12, 14)  # mx2onnx (MXNet 1.9.1) has converters for opsets 12 and 13 only
OPSET = 13  # the opset `googlenet-suite export` writes unless --opset says otherwise
