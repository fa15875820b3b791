"""The fast-mode candidates ``bench`` chose between for MXNet on a CPU (batch 8, googlenet, 224): imperative,
``hybridize(static_alloc, static_shape)`` and, on top, ``optimize_for(backend="MKLDNN")`` (MXNet 1.9's oneDNN
subgraph fusion), eval forward. Median images/s of a few calls after two warm-ups.
Run: ``python -m impl_mxnet.fast_modes [--repeats N]``.
"""

from __future__ import annotations

import argparse

import mxnet as mx
import numpy as np

import shared_spec
from shared_spec import protocol

import impl_mxnet

BATCH = 8


def rate(call, repeats: int) -> float:
    return protocol.images_per_s(call, BATCH, repeats)


def mxnet_forward(spec, repeats: int) -> dict[str, float]:
    x = mx.nd.array(np.random.default_rng(0).standard_normal((BATCH, *spec.input_shape)), dtype=np.float32)
    out = {}
    net = impl_mxnet.build(spec, device="cpu", seed=0)
    out["imperative"] = rate(lambda: net(x).wait_to_read(), repeats)
    net.hybridize(static_alloc=True, static_shape=True)
    out["hybridize(static)"] = rate(lambda: net(x).wait_to_read(), repeats)
    fused = impl_mxnet.build(spec, device="cpu", seed=0)
    fused.hybridize(static_alloc=True, static_shape=True)
    fused.optimize_for(x, backend="MKLDNN", static_alloc=True, static_shape=True)
    out["hybridize + optimize_for(MKLDNN)"] = rate(lambda: fused(x).wait_to_read(), repeats)
    return out



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    spec = shared_spec.load("googlenet")
    for title, result in (("MXNet eval forward", mxnet_forward(spec, args.repeats)),):
        base = next(iter(result.values()))
        for name, value in result.items():
            print(f"{title}, batch {BATCH}: {name:34s} {value:6.2f} img/s  ({value / base:.2f}x)")


if __name__ == "__main__":
    main()
