"""Run and check an exported .onnx file with onnxruntime, whichever framework wrote it.

Every exporter in the suite (``impl_onnx.save_onnx``, ``impl_torch.onnx_export``, ``impl_tf.onnx_export``,
``impl_mxnet.onnx_export``) writes the same interface: one float32 NCHW input ``x`` (batch axis free) and
the outputs ``logits`` then one per aux head (``aux1``, ``aux2``). :func:`rename_io` gives a framework's
file those names. A file that is not ONNX, has no such input, or needs an opset onnxruntime does not know
raises :class:`OnnxFileError` with a one-line message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError

from shared_spec import SpecError
from shared_spec import contract as C

MIN_OPSET = 7  # onnxruntime's oldest supported default-domain opset


class OnnxFileError(SpecError):
    """An .onnx file that cannot be read, run or verified. The message is one line."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load(path: str | os.PathLike) -> onnx.ModelProto:
    """Read and sanity-check a model: a parseable protobuf, a known opset, one float NCHW input."""
    path = Path(path)
    if not path.is_file():
        raise OnnxFileError(f"{path}: no such .onnx file")
    data = path.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise OnnxFileError(f"{path}: not an ONNX model (the protobuf does not parse: {_first_line(exc)})") from None
    if not model.graph.node:
        raise OnnxFileError(f"{path}: not an ONNX model (no graph nodes; {len(data)} bytes)")
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    opset = opsets.get("ai.onnx")
    top = onnx.defs.onnx_opset_version()
    if opset is None or not MIN_OPSET <= opset <= top:
        raise OnnxFileError(f"{path}: unknown opset {opset} for the default domain; onnx {onnx.__version__} "
                            f"and onnxruntime {ort.__version__} know {MIN_OPSET}..{top}")
    _input_of(model, path)
    return model


def _input_of(model: onnx.ModelProto, path) -> onnx.ValueInfoProto:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise OnnxFileError(f"{path}: expected one image input, found {len(inputs)} "
                            f"({', '.join(i.name for i in inputs) or 'none'})")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT or len(tensor.shape.dim) != 4:
        raise OnnxFileError(f"{path}: input {inputs[0].name!r} is not a float32 NCHW tensor "
                            f"(elem_type {onnx.TensorProto.DataType.Name(tensor.elem_type)}, "
                            f"rank {len(tensor.shape.dim)})")
    return inputs[0]


def session(path: str | os.PathLike, *, threads: int = 0) -> ort.InferenceSession:
    load(path)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        raise OnnxFileError(f"{path}: onnxruntime cannot load it: {_first_line(exc)}") from None


def run_file(path: str | os.PathLike, x, *, threads: int = 0) -> dict[str, np.ndarray]:
    """Every output of the model in ``path`` for the NCHW batch ``x``, by output name."""
    sess = session(path, threads=threads)
    (inp,) = sess.get_inputs()
    x = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
    fixed = [d if isinstance(d, int) else None for d in inp.shape]
    if x.ndim != 4 or any(f is not None and f != s for f, s in zip(fixed[1:], x.shape[1:])):
        raise C.ContractError(f"x does not fit the model's input {inp.name!r} of shape {inp.shape}. "
                         f"Received: x.shape={x.shape}")
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {inp.name: x})))


def verify(path: str | os.PathLike, x, expected: Mapping[str, np.ndarray], *, threads: int = 0) -> float:
    """Max abs difference between the file's outputs and ``expected`` (by name) on ``x``."""
    got = run_file(path, x, threads=threads)
    missing = [name for name in expected if name not in got]
    if missing:
        raise OnnxFileError(f"{path}: no output named {missing[0]!r}; outputs: {', '.join(got)}")
    diffs = [0.0]
    for name, value in expected.items():
        value = np.asarray(value)
        if got[name].shape != value.shape:
            raise OnnxFileError(f"{path}: output {name!r} has shape {got[name].shape}, expected {value.shape}")
        diffs.append(float(np.max(np.abs(got[name].astype(np.float64) - value))))
    return float(np.max(diffs))  # NaN anywhere, in either side, is NaN here: it never passes ``<= tolerance``


def rename_io(path: str | os.PathLike, input_name: str, output_names: Sequence[str]) -> None:
    """Rename a file's single input and its outputs (in order), rewriting every node that uses them."""
    model = onnx.load(str(path))
    old_in = _input_of(model, path).name
    if len(model.graph.output) != len(output_names):
        raise OnnxFileError(f"{path}: has {len(model.graph.output)} outputs, expected {len(output_names)} "
                            f"({', '.join(output_names)})")
    mapping = {old_in: input_name, **{o.name: new for o, new in zip(model.graph.output, output_names)}}

    def rename(graph: onnx.GraphProto) -> None:
        for value in [*graph.input, *graph.output, *graph.value_info]:
            value.name = mapping.get(value.name, value.name)
        for node in graph.node:
            node.input[:] = [mapping.get(n, n) for n in node.input]
            node.output[:] = [mapping.get(n, n) for n in node.output]
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    rename(attr.g)

    rename(model.graph)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
