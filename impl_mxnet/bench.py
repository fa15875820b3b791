"""``googlenet-suite bench`` for MXNet Gluon: the runner, and a hand-written GoogLeNet.

The runner protocol is in :mod:`googlenet_suite.bench.worker`; the hand-written models in ``handwritten.py``
(``HANDWRITTEN``: variant -> its hand-written network).
Both sources go through the same runner code, so spec-built / hand-written time measures the models only.

- plain: imperative Gluon (not hybridized): ``net(x)``, ``autograd.record()``, ``loss.backward()``,
  ``gluon.Trainer(..., "sgd").step(batch)``, as a beginner writes it.
- fast: ``hybridize(static_alloc=True, static_shape=True)``. The cached graphs (inference, and
  training when ``train``) are built while the runner is created (``setup_s``), not in the timed calls.
- bf16: fast, then ``mxnet.contrib.amp.convert_hybrid_block(net, target_dtype="bfloat16")`` (MXNet 1.9's
  oneDNN AMP pass: bf16 convolutions and matmuls, fp32 parameters), on a CPU with AVX512_BF16 or AMX;
  ``precision`` holds its logits against the hybridized fp32 net's on the same batch. The converted graph
  is the inference graph, so it has no aux outputs: a spec with aux heads is refused.

Each call ends with ``mx.nd.waitall()`` (MXNet's engine is asynchronous, on the CPU too).
"""

from __future__ import annotations

import ctypes
import gc
import os
import warnings

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.contrib import amp

import shared_spec
from shared_spec import contract, protocol

from shared_spec.protocol import against_fp32, bench_model, best_gflops, check_bench_options, \
    check_bf16_path, compile_now, cpu_has_bf16

from .builder import build
from .builder import context as resolve_device
from .handwritten import REFERENCES as HANDWRITTEN  # noqa: F401  (the worker reads it)
from .handwritten import handwritten

LR = 0.01
SEED = 0


# --------------------------------------------------------------------------- the runner


def trainable_params(net: gluon.Block) -> int:
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values() if p.grad_req != "null")


def _gpu_used(ctx: mx.Context) -> int:
    free, total = mx.context.gpu_memory_info(ctx.device_id)
    return total - free


class Runner:
    precision: dict | None = None  # mode "bf16": the logits against fp32 (protocol.against_fp32)

    def __init__(self, net: gluon.HybridBlock, spec: shared_spec.Spec, *, ctx: mx.Context, mode: str, batch: int,
                 train: bool, aux_weights: tuple[float, ...] = (), gpu_baseline: int = 0):
        self._ctx = ctx
        self._baseline = gpu_baseline
        self.device = "gpu" if ctx.device_type == "gpu" else "cpu"
        self.model = self._net = net
        self._batch = batch
        self._aux_weights = aux_weights
        rng = np.random.default_rng(SEED)
        self._x = mx.nd.array(rng.standard_normal((batch, *spec.input_shape)), ctx=ctx, dtype=np.float32)
        self._y = mx.nd.array(rng.integers(0, spec.num_classes, size=batch), ctx=ctx, dtype=np.float32)
        self._loss = gluon.loss.SoftmaxCrossEntropyLoss()
        if mode == "plain":
            self._trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})  # no momentum, no wd
            mx.nd.waitall()
            self.notes = "imperative (not hybridized)"
            return
        net.hybridize(static_alloc=True, static_shape=True)
        self.notes = "hybridize(static_alloc=True, static_shape=True)"
        if mode == "bf16":
            reference = net(self._x).asnumpy()  # fp32, inference mode
            with warnings.catch_warnings():  # "Cannot decide type for the following arguments": the input's, given
                warnings.simplefilter("ignore", UserWarning)
                net = amp.convert_hybrid_block(net, target_dtype="bfloat16", ctx=ctx)
            net.hybridize(static_alloc=True, static_shape=True)
            self.model = self._net = net
            self.notes += " + amp.convert_hybrid_block(bfloat16)"
        self._trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})
        mx.nd.waitall()
        if mode == "bf16":  # the converted graph's logits, before the setup's training step moves the weights
            compile_now(self, False, self.notes)
            self.precision = against_fp32(reference, self._net(self._x).astype("float32").asnumpy())
        compile_now(self, train, self.notes)

    def forward(self) -> None:
        self._net(self._x)  # not recording: inference mode (running BN statistics, no dropout)
        mx.nd.waitall()

    def train_step(self) -> None:
        with autograd.record():  # training mode
            out = self._net(self._x)
            main, *aux = out if isinstance(out, (tuple, list)) else (out,)
            loss = self._loss(main, self._y)
            for weight, logits in zip(self._aux_weights, aux, strict=True):
                loss = loss + weight * self._loss(logits, self._y)
        loss.backward()
        self._trainer.step(self._batch)  # gradients of the summed loss / batch: SGD on the mean
        mx.nd.waitall()

    def peak_gpu_bytes(self) -> int | None:
        """On a GPU: device memory taken since the runner was created. MXNet reports no peak, but its
        memory pool keeps what it allocates, so this is its high-water mark (device-wide: another
        process allocating at the same time would count too)."""
        if self.device != "gpu":
            return None
        mx.nd.waitall()
        return max(0, _gpu_used(self._ctx) - self._baseline)


def set_threads(intra: int, inter: int) -> dict[str, int]:
    """The bench's thread counts: OpenMP's for the operators (set now; the session's environment set it before
    MXNet started too), and the engine's CPU workers, which MXNet reads from ``MXNET_CPU_WORKER_NTHREADS`` when
    it starts (the session sets it; read back from there)."""
    mx.base.check_call(mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(intra)))
    return {"intra": intra, "inter": int(os.environ.get("MXNET_CPU_WORKER_NTHREADS", "1"))}


def peak_gflops(device: str, dtype: str = "float32", *, matmul: int | None = None,
                conv: tuple[int, int, int] | None = None, repeats: int | None = None) -> float | None:
    """This machine's reachable rate in MXNet (GFLOP/s): the faster of a ``matmul`` x ``matmul`` matmul and a 3x3
    convolution of ``conv`` = (batch, channels, side) (defaults ``protocol.PEAK_MATMUL``, ``PEAK_CONV``), best of
    ``repeats``; None for bf16 (MXNet 1.9's NDArray ``dot`` takes float16/32/64; its bf16 is a oneDNN AMP graph
    pass, not an array type)."""
    ctx = resolve_device(device)
    if dtype == "bfloat16":
        return None
    n, rng = matmul or protocol.PEAK_MATMUL, np.random.default_rng(SEED)
    a, b = (mx.nd.array(rng.standard_normal((n, n)), ctx=ctx, dtype=dtype) for _ in range(2))
    batch, channels, side = conv or protocol.PEAK_CONV
    x = mx.nd.array(rng.standard_normal((batch, channels, side, side)), ctx=ctx, dtype=dtype)
    w = mx.nd.array(rng.standard_normal((channels, channels, 3, 3)), ctx=ctx, dtype=dtype)
    mx.nd.waitall()

    def matmul_call():
        mx.nd.dot(a, b).wait_to_read()

    def conv_call():
        mx.nd.Convolution(x, w, kernel=(3, 3), pad=(1, 1), num_filter=channels, no_bias=True).wait_to_read()

    return max(best_gflops(matmul_call, n, repeats),
               best_gflops(conv_call, repeats=repeats, flops=2 * batch * channels**2 * 9 * side**2))


def runner(spec: shared_spec.Spec, *, source: str, mode: str, device: str, batch: int, train: bool) -> Runner:
    check_bench_options(source, mode, batch)
    ctx = resolve_device(device)
    if mode == "bf16":
        check_bf16_path("MXNet", ctx.device_type == "cpu" and cpu_has_bf16())  # its bf16 AMP is oneDNN's: CPU only
        if spec.aux_logits:
            raise contract.ContractError("MXNet's bf16 conversion keeps the inference graph, which has no aux "
                                         "outputs: bench it with aux heads off. Received: aux_logits=True")
    gc.collect()
    baseline = 0
    if ctx.device_type == "gpu":
        mx.nd.zeros((1,), ctx=ctx).wait_to_read()  # the CUDA context exists before the baseline
        mx.nd.waitall()
        ctx.empty_cache()  # give back what earlier runners' pools hold
        baseline = _gpu_used(ctx)
    net, aux_weights = bench_model(spec, source, build=lambda s: build(s, device=device, seed=SEED),
                                   handwritten=lambda s: handwritten(s, device=device),
                                   params=trainable_params)
    return Runner(net, spec, ctx=ctx, mode=mode, batch=batch, train=train, aux_weights=aux_weights,
                  gpu_baseline=baseline)
