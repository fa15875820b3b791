"""``googlenet-suite bench`` for PyTorch: the runner, and a hand-written torchvision GoogLeNet.

The runner protocol is in :mod:`googlenet_suite.bench.worker`; the hand-written models in ``references.py``
(``HANDWRITTEN``: variant -> its hand-written network).
Both sources go through the same runner code, so spec-built / hand-written time measures the models only.

- plain: eager fp32 in NCHW, ``torch.no_grad()`` for inference, ``torch.optim.SGD`` for training,
  as a beginner writes it.
- fast: ``channels_last`` weights and inputs + ``torch.compile(model, fullgraph=True)``; on a GPU
  also bf16 autocast. Compilation (eval graph, and training graph when ``train``) happens while the
  runner is created, so it counts in ``setup_s`` and never in the timed calls. A compilation error
  is raised (bench records it in the row); there is no fallback to eager. ``compiled=False`` keeps
  channels_last (and bf16) eager: the GPU check's CPU rehearsal, where compiling takes minutes.
- bf16: fast with ``torch.autocast(device, dtype=torch.bfloat16)`` on the CPU too (fp32 weights, bf16
  matmuls and convolutions), where the CPU has AVX512_BF16 or AMX; ``precision`` holds the compiled bf16
  logits against the same model's eager fp32 logits on the same batch.
"""

from __future__ import annotations

import contextlib
import gc
import os

import torch
import torch.nn.functional as F
from torch import nn

import shared_spec
from shared_spec import protocol

from shared_spec.protocol import against_fp32, bench_model, best_gflops, check_bench_options, \
    check_bf16_path, compile_now, cpu_has_bf16

from .api import import_weights
from .builder import build, resolve_device
from .references import REFERENCES as HANDWRITTEN  # noqa: F401  (the worker reads it)
from .references import handwritten

LR = 0.01
SEED = 0


# --------------------------------------------------------------------------- the runner


def _logits(out):
    return out[0] if isinstance(out, tuple) else out


class Runner:
    precision: dict | None = None  # mode "bf16": the logits against fp32 (protocol.against_fp32)

    def __init__(self, model: nn.Module, spec: shared_spec.Spec, *, mode: str, batch: int, train: bool,
                 aux_weights: tuple[float, ...] = (), compiled: bool = True):
        target = next(model.parameters()).device
        self._cuda = target.type == "cuda"
        self.device = "gpu" if self._cuda else "cpu"
        self._aux_weights = aux_weights
        generator = torch.Generator().manual_seed(SEED)
        x = torch.randn(batch, *spec.input_shape, generator=generator)
        y = torch.randint(spec.num_classes, (batch,), generator=generator)
        fast, bf16 = mode != "plain", mode == "bf16" or (mode == "fast" and self._cuda)
        memory_format = torch.channels_last if fast else torch.contiguous_format
        self.model = model.to(memory_format=memory_format)
        self._x = x.to(target).contiguous(memory_format=memory_format)
        self._y = y.to(target)
        self._optimizer = torch.optim.SGD(model.parameters(), lr=LR)  # no momentum, no weight decay
        self._autocast = (lambda: torch.autocast(target.type, dtype=torch.bfloat16)) if bf16 \
            else contextlib.nullcontext
        if not fast:
            self._call = model
            self.notes = "eager, fp32, NCHW"
            return
        if mode == "bf16":
            model.eval()
            with torch.no_grad():
                reference = _logits(model(self._x))  # eager fp32, before anything is compiled
        self._call = torch.compile(model, fullgraph=True) if compiled else model
        self.notes = "channels_last" + (" + torch.compile" if compiled else "") + (" + bf16 autocast" if bf16 else "")
        if mode == "bf16":  # the compiled logits, before the setup's training step moves the weights
            compile_now(self, False, "torch.compile")
            with torch.no_grad(), self._autocast():
                output = _logits(self._call(self._x)).float()
            self.precision = against_fp32(reference.cpu().numpy(), output.cpu().numpy())
        compile_now(self, train, "torch.compile")

    def _sync(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    def forward(self) -> None:
        self.model.eval()
        with torch.no_grad(), self._autocast():
            self._call(self._x)
        self._sync()

    def train_step(self):
        """One SGD step; returns its loss (a tensor on the device: converting it would synchronise)."""
        self.model.train()
        self._optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = self._call(self._x)
            main, *aux = out if isinstance(out, tuple) else (out,)
            loss = F.cross_entropy(main, self._y)
            for weight, logits in zip(self._aux_weights, aux, strict=True):
                loss = loss + weight * F.cross_entropy(logits, self._y)
        loss.backward()
        self._optimizer.step()
        self._sync()
        return loss.detach()

    def peak_gpu_bytes(self) -> int | None:
        return torch.cuda.max_memory_allocated() if self._cuda else None


def use_all_cores() -> None:
    """MXNet, imported first wherever a process loads it (it must come before TensorFlow), leaves OpenMP at one
    thread, and torch then computes on one core (measured: googlenet's eager forward at half speed on two).
    Unless OMP_NUM_THREADS says otherwise, torch gets every core this process may run on."""
    if "OMP_NUM_THREADS" not in os.environ and hasattr(os, "sched_getaffinity"):
        torch.set_num_threads(len(os.sched_getaffinity(0)))


def set_threads(intra: int, inter: int) -> dict[str, int]:
    """The bench's thread counts, set before any parallel work in the measuring process; read back."""
    torch.set_num_threads(intra)
    with contextlib.suppress(RuntimeError):  # inter-op threads can be set once, before the pool starts
        torch.set_num_interop_threads(inter)
    return {"intra": torch.get_num_threads(), "inter": torch.get_num_interop_threads()}


def peak_gflops(device: str, dtype: str = "float32", *, matmul: int | None = None,
                conv: tuple[int, int, int] | None = None, repeats: int | None = None) -> float | None:
    """This machine's reachable rate in PyTorch (GFLOP/s): the faster of a ``matmul`` x ``matmul`` matmul and a
    3x3 convolution of ``conv`` = (batch, channels, side) (defaults ``protocol.PEAK_MATMUL``, ``PEAK_CONV``),
    best of ``repeats``; None where ``dtype`` has no fast path (bf16 on a CPU without AVX512_BF16/AMX)."""
    target = resolve_device(device)
    if dtype == "bfloat16" and target.type == "cpu" and not cpu_has_bf16():
        return None
    use_all_cores()
    n, generator = matmul or protocol.PEAK_MATMUL, torch.Generator().manual_seed(SEED)
    a, b = (torch.randn(n, n, generator=generator).to(target, getattr(torch, dtype)) for _ in range(2))

    batch, channels, side = conv or protocol.PEAK_CONV
    x = torch.randn(batch, channels, side, side, generator=generator).to(target, getattr(torch, dtype))
    w = torch.randn(channels, channels, 3, 3, generator=generator).to(target, getattr(torch, dtype))
    x, w = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)

    def timed(op):
        def call():
            with torch.no_grad():
                op()
            if target.type == "cuda":
                torch.cuda.synchronize()
        return call

    return max(best_gflops(timed(lambda: a @ b), n, repeats),
               best_gflops(timed(lambda: F.conv2d(x, w, padding=1)), repeats=repeats,
                           flops=2 * batch * channels**2 * 9 * side**2))


def runner(spec: shared_spec.Spec, *, source: str, mode: str, device: str, batch: int, train: bool,
           weights: dict | None = None, compiled: bool = True) -> Runner:
    """``weights``: the spec-built model's weights in the neutral layout (default: seeded); ``compiled``:
    whether the fast modes use torch.compile."""
    check_bench_options(source, mode, batch)
    target = resolve_device(device)
    use_all_cores()
    if mode == "bf16":
        check_bf16_path("PyTorch", target.type == "cuda" or cpu_has_bf16())
    if mode != "plain" and compiled:
        torch.compiler.reset()  # each runner compiles afresh (no recompile limit across runners)
    gc.collect()
    if target.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model, aux_weights = bench_model(spec, source, build=lambda s: _built(s, device, weights),
                                     handwritten=lambda s: handwritten(s, device=device),
                                     params=lambda m: sum(p.numel() for p in m.parameters()))
    return Runner(model, spec, mode=mode, batch=batch, train=train, aux_weights=aux_weights, compiled=compiled)


def _built(spec: shared_spec.Spec, device: str, weights: dict | None) -> nn.Module:
    model = build(spec, device=device, seed=SEED)
    if weights is not None:
        import_weights(model, weights)
    return model
