"""``googlenet-suite bench`` for onnxruntime: forward only (``impl_onnx`` is inference only).

Two sources: ``spec``, the graph :mod:`impl_onnx.builder` writes from the spec, and ``export``, a file
that one of the frameworks' exporters wrote (``googlenet_suite.bench`` makes it with
``impl_X.onnx_export`` and passes its path), so a row shows what onnxruntime gives over that framework's
own fast mode. Both run in the same session code:

- plain: ``ORT_ENABLE_BASIC`` graph optimisations (constant folding, redundant nodes removed);
- fast: ``ORT_ENABLE_ALL`` (onnxruntime's default: also the CPU layout transform to blocked NCHWc and
  node fusions).

The session runs on the CPU provider (or CUDA's, on a GPU) with the threads ``set_threads`` gave (the bench
sets them in its measuring process), else onnxruntime's own count.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

import shared_spec
from shared_spec import contract, protocol

from shared_spec.protocol import best_gflops, check_bench_options

from . import builder as B
from .api import build
from .api import resolve_providers as resolve_device  # the bench protocol's name

SEED = 0
SOURCES = ("spec", "export")
LEVELS = {"plain": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "fast": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
MODES = tuple(LEVELS)  # the bench modes this runner has (no bf16)
#: intra- and inter-op threads of every session made here; 0 is onnxruntime's own choice (``set_threads``)
THREADS = {"intra": 0, "inter": 0}


def set_threads(intra: int, inter: int) -> dict[str, int]:
    """The thread counts every session made afterwards in this process is given (onnxruntime has no global
    setting: each session takes them in its options)."""
    THREADS.update(intra=intra, inter=inter)
    return dict(THREADS)


def _session(model: bytes | str, providers: list[str], mode: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[mode]
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS["intra"], THREADS["inter"]
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":  # idle pool threads sleep instead of spinning
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=providers)


class Runner:
    def __init__(self, session: ort.InferenceSession, spec: shared_spec.Spec, *, mode: str, batch: int):
        self._session = session
        self.device = "gpu" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        (inp,) = session.get_inputs()
        self._feed = {inp.name: np.random.default_rng(SEED).standard_normal((batch, *spec.input_shape),
                                                                            dtype=np.float32)}
        self._outputs = [session.get_outputs()[0].name]  # the logits
        self.notes = f"onnxruntime {'ORT_ENABLE_ALL' if mode == 'fast' else 'ORT_ENABLE_BASIC'}"
        self.forward()  # the session's first run allocates and plans: setup, not timed

    def forward(self) -> None:
        self._session.run(self._outputs, self._feed)  # returns numpy: synchronised

    def train_step(self) -> None:
        raise NotImplementedError("onnxruntime runs inference only here: no training step")

    def peak_gpu_bytes(self) -> int | None:
        return None  # onnxruntime does not report its arena's high-water mark


def runner(spec: shared_spec.Spec, *, source: str, mode: str, device: str, batch: int, train: bool = False,
           model_file: str | os.PathLike | None = None) -> Runner:
    """``source="export"`` runs ``model_file`` (an exporter's file with the suite's ONNX interface);
    ``train`` is accepted for the common signature, and no training step is measured."""
    check_bench_options(source, mode, batch, sources=SOURCES)
    if mode not in LEVELS:  # bf16: onnxruntime's CPU provider runs the fp32 graph; a bf16 graph is another file
        raise contract.ContractError(f"onnxruntime runs the fp32 graph only: mode must be one of "
                                     f"{', '.join(LEVELS)}. Received: mode={mode!r}")
    providers = resolve_device(device)
    if source == "export":
        if model_file is None:
            raise ValueError("source='export' needs model_file. Received: model_file=None")
        model = os.fspath(model_file)
    else:
        model = build(spec, device=device, seed=SEED).proto().SerializeToString()
    return Runner(_session(model, providers, mode), spec, mode=mode, batch=batch)


def peak_gflops(device: str, dtype: str = "float32", *, matmul: int | None = None,
                conv: tuple[int, int, int] | None = None, repeats: int | None = None) -> float | None:
    """This machine's reachable rate in onnxruntime (GFLOP/s): the faster of one ``matmul`` x ``matmul`` MatMul
    node and one 3x3 Conv node of ``conv`` = (batch, channels, side) (defaults ``protocol.PEAK_MATMUL``,
    ``PEAK_CONV``), best of ``repeats``; fp32 only."""
    if dtype != "float32":
        return None
    n = matmul or protocol.PEAK_MATMUL  # read at call time (tests make it small)
    batch, channels, side = conv or protocol.PEAK_CONV
    rng = np.random.default_rng(SEED)
    shapes = {"matmul": ([n, n], [n, n], [n, n]),
              "conv": ([batch, channels, side, side], [channels, channels, 3, 3], [batch, channels, side, side])}
    rates = []
    for op, (a, b, c) in shapes.items():
        node = helper.make_node("MatMul", ["a", "b"], ["c"]) if op == "matmul" else \
            helper.make_node("Conv", ["a", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        graph = helper.make_graph([node], "peak", [helper.make_tensor_value_info("a", TensorProto.FLOAT, a),
                                                   helper.make_tensor_value_info("b", TensorProto.FLOAT, b)],
                                  [helper.make_tensor_value_info("c", TensorProto.FLOAT, c)])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", B.OPSET)])
        onnx.checker.check_model(proto)
        session = _session(proto.SerializeToString(), resolve_device(device), "fast")
        feed = {"a": rng.standard_normal(a, dtype=np.float32), "b": rng.standard_normal(b, dtype=np.float32)}
        rates.append(best_gflops(lambda: session.run(["c"], feed), n, repeats,
                                 flops=None if op == "matmul" else 2 * batch * channels**2 * 9 * side**2))
    return max(rates)
