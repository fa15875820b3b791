"""The fast-mode candidates ``bench`` chose between for MXNet on a CPU (googlenet, 224, batch 8, eval forward), timed
A/B in one process: rounds of a few calls of each candidate and of the bench's peak convolution in turn, the order
reversed every other round (``shared_spec.protocol.interleaved_medians``), so that a shared machine's load hits
each alike. Prints, per candidate, the median over the rounds of its images/s, of its share of the peak
convolution's GFLOP/s in the same round and of its speed-up over the first candidate in the same round, with
their ranges. Run: ``python -m impl_mxnet.fast_modes [--candidates a,b] [--rounds N] [--per-round N]``.

Candidates: ``imperative``; ``hybridize`` (``static_alloc=True, static_shape=True``, the fast mode); ``mkldnn``:
that and ``optimize_for(backend="MKLDNN")`` on top (MXNet 1.9's oneDNN subgraph fusion).
"""

from __future__ import annotations

import mxnet as mx
import numpy as np

import shared_spec
from shared_spec import protocol

import impl_mxnet

BATCH = 8


def _hybridized(spec, x, *, fused: bool):
    net = impl_mxnet.build(spec, device="cpu", seed=0)
    net.hybridize(static_alloc=True, static_shape=True)
    if fused:
        net.optimize_for(x, backend="MKLDNN", static_alloc=True, static_shape=True)
    return net


CANDIDATES = {
    "imperative": lambda spec, x: impl_mxnet.build(spec, device="cpu", seed=0),
    "hybridize": lambda spec, x: _hybridized(spec, x, fused=False),
    "mkldnn": lambda spec, x: _hybridized(spec, x, fused=True),
}


def forward_calls(spec, names: list[str]) -> dict:
    x = mx.nd.array(np.random.default_rng(0).standard_normal((BATCH, *spec.input_shape)), dtype=np.float32)
    nets = {name: CANDIDATES[name](spec, x) for name in names}
    return {name: (lambda net=net: net(x).wait_to_read()) for name, net in nets.items()}


def peak_call():
    """The bench's peak convolution (``protocol.PEAK_CONV``, as ``bench.peak_gflops`` times it)."""
    batch, channels, side = protocol.PEAK_CONV
    rng = np.random.default_rng(0)
    x = mx.nd.array(rng.standard_normal((batch, channels, side, side)), dtype=np.float32)
    w = mx.nd.array(rng.standard_normal((channels, channels, 3, 3)), dtype=np.float32)
    return lambda: mx.nd.Convolution(x, w, kernel=(3, 3), pad=(1, 1), num_filter=channels,
                                     no_bias=True).wait_to_read()


def main() -> None:
    parser = protocol.ab_parser(__doc__.splitlines()[0], known=list(CANDIDATES), default="hybridize,mkldnn",
                                per_round=4)
    args = parser.parse_args()
    names = protocol.chosen_candidates(parser, args.candidates, list(CANDIDATES))
    spec = shared_spec.load("googlenet")
    calls = {**forward_calls(spec, names), "peak": peak_call()}
    print(protocol.ab_compare(calls, header=f"mxnet {mx.__version__}; googlenet eval forward", rounds=args.rounds,
                              per_round=args.per_round, flops=2 * shared_spec.analyze(spec).macs, batch=BATCH))


if __name__ == "__main__":
    main()
