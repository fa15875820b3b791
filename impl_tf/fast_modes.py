"""The fast-mode candidates ``bench`` chose between for Keras on a CPU (batch 8, googlenet, 224): the eval forward
and the training step eager, in ``tf.function`` and in ``tf.function(jit_compile=True)`` (XLA). Median images/s
of a few calls after two warm-ups. Run: ``python -m impl_tf.fast_modes [--repeats N]``.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import shared_spec  # noqa: E402
from shared_spec import protocol  # noqa: E402

import impl_tf  # noqa: E402

BATCH = 8


def rate(call, repeats: int) -> float:
    return protocol.images_per_s(call, BATCH, repeats)


def tf_forward(spec, repeats: int) -> dict[str, float]:
    model = impl_tf.build(spec, device="cpu", seed=0)
    x = tf.constant(np.random.default_rng(0).standard_normal((BATCH, *spec.input_shape), dtype=np.float32)
                    .transpose(0, 2, 3, 1))

    def predict(x):
        return model(x, training=False)

    graph, xla = tf.function(predict), tf.function(predict, jit_compile=True)
    return {"eager": rate(lambda: predict(x).numpy(), repeats),
            "tf.function": rate(lambda: graph(x).numpy(), repeats),
            "tf.function(jit_compile=True)": rate(lambda: xla(x).numpy(), repeats)}


def tf_train_step(spec, repeats: int) -> dict[str, float]:
    model = impl_tf.build(spec, device="cpu", seed=0)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((BATCH, *spec.input_shape), dtype=np.float32).transpose(0, 2, 3, 1))
    y = tf.constant(rng.integers(0, spec.num_classes, BATCH))
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = cross_entropy(y, model(x, training=True))
        for variable, grad in zip(variables, tape.gradient(loss, variables)):
            variable.assign_sub(0.01 * grad)
        return loss

    graph, xla = tf.function(step), tf.function(step, jit_compile=True)
    return {"eager": rate(lambda: step(x, y).numpy(), repeats),
            "tf.function": rate(lambda: graph(x, y).numpy(), repeats),
            "tf.function(jit_compile=True)": rate(lambda: xla(x, y).numpy(), repeats)}



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    spec = shared_spec.load("googlenet")
    for title, result in (("Keras eval forward", tf_forward(spec, args.repeats)),
                          ("Keras training step", tf_train_step(spec, args.repeats))):
        base = next(iter(result.values()))
        for name, value in result.items():
            print(f"{title}, batch {BATCH}: {name:34s} {value:6.2f} img/s  ({value / base:.2f}x)")


if __name__ == "__main__":
    main()
