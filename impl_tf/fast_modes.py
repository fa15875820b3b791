"""The fast-mode candidates ``bench`` chose between for Keras on a CPU (googlenet, 224, batch 8), timed A/B in one
process: rounds of a few calls of each candidate and of the bench's peak convolution in turn, the order reversed
every other round (``shared_spec.protocol.interleaved_medians``), so that a shared machine's load hits each alike.
Prints, per candidate, the median over the rounds of its images/s, of its share of the peak convolution's GFLOP/s
in the same round and of its speed-up over the first candidate in the same round, with their ranges, and the load
average before and after. Run: ``python -m impl_tf.fast_modes [--part forward|train] [--candidates a,b]``.

Candidates (the eval forward, or the training step with plain SGD):

- ``graph``: ``tf.function`` without XLA (the fast mode): TF's graph on its oneDNN kernels, grappler's fusions;
- ``xla``: ``tf.function(jit_compile=True)``;
- ``frozen`` (forward only): the graph with its variables turned into constants
  (``convert_variables_to_constants_v2``), so that grappler can fold BatchNorm's arithmetic into the convolutions;
- ``eager``: Keras's eager call.

oneDNN itself (``TF_ENABLE_ONEDNN_OPTS``, on by default on Linux x86) is read when TensorFlow is imported: compare it
on and off by alternating processes (``TF_ENABLE_ONEDNN_OPTS=0 python -m impl_tf.fast_modes --candidates graph``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2  # noqa: E402

import shared_spec  # noqa: E402
from shared_spec import protocol  # noqa: E402

import impl_tf  # noqa: E402

BATCH = 8


def _inputs(spec):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((BATCH, *spec.input_shape), dtype=np.float32).transpose(0, 2, 3, 1))
    return x, tf.constant(rng.integers(0, spec.num_classes, BATCH))


def forward_calls(spec, names: list[str]) -> dict:
    model = impl_tf.build(spec, device="cpu", seed=0)
    x, _ = _inputs(spec)

    def predict(x):
        return model(x, training=False)

    def frozen():
        concrete = tf.function(predict).get_concrete_function(tf.TensorSpec(x.shape, x.dtype))
        return convert_variables_to_constants_v2(concrete)

    made = {"eager": lambda: predict, "graph": lambda: tf.function(predict),
            "xla": lambda: tf.function(predict, jit_compile=True), "frozen": frozen}
    functions = {name: made[name]() for name in names}
    return {name: (lambda f=f: tf.nest.flatten(f(x))[0].numpy()) for name, f in functions.items()}


def _step_function(spec):
    """A fresh model's SGD step (every candidate's steps move its own weights) and its batch."""
    model = impl_tf.build(spec, device="cpu", seed=0)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = cross_entropy(y, model(x, training=True))
        for variable, grad in zip(variables, tape.gradient(loss, variables)):
            variable.assign_sub(0.01 * grad)
        return loss

    return step


def train_calls(spec, names: list[str]) -> dict:
    x, y = _inputs(spec)
    wrap = {"eager": lambda step: step, "graph": tf.function, "xla": lambda step: tf.function(step, jit_compile=True)}
    steps = {name: wrap[name](_step_function(spec)) for name in names}
    return {name: (lambda f=f: f(x, y).numpy()) for name, f in steps.items()}


def peak_call():
    """The bench's peak convolution (``protocol.PEAK_CONV``, NHWC, as ``bench.peak_gflops`` times it)."""
    batch, channels, side = protocol.PEAK_CONV
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((batch, side, side, channels), dtype=np.float32))
    w = tf.constant(rng.standard_normal((3, 3, channels, channels), dtype=np.float32))
    return lambda: tf.nn.conv2d(x, w, strides=1, padding="SAME").numpy()


PARTS = {"forward": (forward_calls, 1, ("graph", "xla", "frozen", "eager")),
         "train": (train_calls, protocol.TRAIN_WORK, ("graph", "xla", "eager"))}


def main() -> None:
    parser = protocol.ab_parser(__doc__.splitlines()[0], known=sorted({n for _, _, k in PARTS.values() for n in k}),
                                default=None, per_round=4,
                                default_text="graph,xla and, for the forward, frozen")
    parser.add_argument("--part", choices=PARTS, default="forward")
    args = parser.parse_args()
    make, work, known = PARTS[args.part]
    names = (protocol.chosen_candidates(parser, args.candidates, known, where=f" for --part {args.part}")
             if args.candidates else [name for name in known if name != "eager"])
    tf.config.threading.set_intra_op_parallelism_threads(protocol.cores())  # as the bench sets them
    tf.config.threading.set_inter_op_parallelism_threads(1)
    spec = shared_spec.load("googlenet")
    calls = {**make(spec, names), "peak": peak_call()}
    header = (f"tensorflow {tf.__version__}, keras {keras.__version__}, oneDNN "
              f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default (on)')}, "
              f"{tf.config.threading.get_intra_op_parallelism_threads()} intra-op threads; googlenet {args.part}")
    print(protocol.ab_compare(calls, header=header, rounds=args.rounds, per_round=args.per_round,
                              flops=2 * work * shared_spec.analyze(spec).macs, batch=BATCH))


if __name__ == "__main__":
    main()
