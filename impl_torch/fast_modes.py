"""The fast-mode candidates ``bench`` chose between for PyTorch on a CPU (googlenet, 224, batch 8, eval forward),
timed A/B in one process: rounds of a few calls of each candidate and of the bench's peak convolution in turn,
the order reversed every other round (``shared_spec.protocol.interleaved_medians``), so that a shared machine's
load hits each alike. Prints, per candidate, the median over the rounds of its images/s, of its share of the peak
convolution's GFLOP/s in the same round and of its speed-up over the first candidate in the same round, with
their ranges, and the load average before and after.
Run: ``python -m impl_torch.fast_modes [--candidates a,b,...] [--rounds N] [--per-round N]``.

Candidates (each compiles its own copy of the model while the script starts; compiling is not timed):

- ``compile``: ``channels_last`` + ``torch.compile(fullgraph=True)``, inductor's defaults;
- ``freezing``: the same with ``freezing=True`` (weights become constants: BatchNorm folded into the
  convolutions, oneDNN weights prepacked once; inference only);
- ``freezing-cpp``: freezing with ``cpp_wrapper=True`` (the graph's calls in C++, not Python);
- ``freezing-autotune``: freezing with ``max_autotune=True`` (``mode="max-autotune-no-cudagraphs"`` on a CPU:
  inductor times its GEMM templates against the library kernels);
- ``jit``: ``torch.jit.trace`` + ``torch.jit.freeze`` + ``torch.jit.optimize_for_inference`` (TorchScript's
  oneDNN conv fusion and prepacking);
- ``eager``: ``channels_last``, no compiler.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

import shared_spec
from shared_spec import protocol

import impl_torch

from .bench import use_all_cores

BATCH = 8


def _compiled(model, **options):
    return torch.compile(model, fullgraph=True, options=options or None)


def _jit(model, x):
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


CANDIDATES = {
    "eager": lambda model, x: model,
    "compile": lambda model, x: _compiled(model),
    "freezing": lambda model, x: _compiled(model, freezing=True),
    "freezing-cpp": lambda model, x: _compiled(model, freezing=True, cpp_wrapper=True),
    "freezing-autotune": lambda model, x: _compiled(model, freezing=True, max_autotune=True),
    "jit": _jit,
}


def forward_calls(spec: shared_spec.Spec, names: list[str]) -> dict:
    base = impl_torch.build(spec, device="cpu", seed=0).eval().to(memory_format=torch.channels_last)
    x = torch.randn(BATCH, *spec.input_shape, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)
    calls = {}
    for name in names:
        model = CANDIDATES[name](copy.deepcopy(base), x)

        def call(model=model):
            with torch.no_grad():
                model(x)

        call()  # compiles now, not in the timed calls
        calls[name] = call
    return calls


def peak_call():
    """The bench's peak convolution (``protocol.PEAK_CONV``, channels_last, as ``bench.peak_gflops`` times it)."""
    batch, channels, side = protocol.PEAK_CONV
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, side, side, generator=generator).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3, generator=generator).contiguous(memory_format=torch.channels_last)

    def call():
        with torch.no_grad():
            F.conv2d(x, w, padding=1)

    return call


def main() -> None:
    parser = protocol.ab_parser(__doc__.splitlines()[0], known=list(CANDIDATES), default="compile,freezing,jit",
                                per_round=5)
    args = parser.parse_args()
    names = protocol.chosen_candidates(parser, args.candidates, list(CANDIDATES))
    use_all_cores()
    spec = shared_spec.load("googlenet")
    calls = {**forward_calls(spec, names), "peak": peak_call()}
    print(protocol.ab_compare(calls, header=f"torch {torch.__version__}, {torch.get_num_threads()} threads; googlenet "
                                            "eval forward", rounds=args.rounds, per_round=args.per_round,
                              flops=2 * shared_spec.analyze(spec).macs, batch=BATCH))


if __name__ == "__main__":
    main()
