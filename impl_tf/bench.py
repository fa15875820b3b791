"""``googlenet-suite bench`` for Keras 3 (TensorFlow): the runner, and a hand-written GoogLeNet.

The runner protocol is in :mod:`googlenet_suite.bench.worker`; the hand-written models in ``handwritten.py``
(``HANDWRITTEN``: variant -> its hand-written network).
Both sources go through the same runner code, so spec-built / hand-written time measures the models only.
The models are channels-last (N x H x W x C), as Keras prefers; inputs are made in that layout.

- plain: eager calls (``model(x, training=...)``, ``tf.GradientTape``, a Python loop of
  ``assign_sub`` for plain SGD), as a beginner writes it.
- fast: the same forward and training step inside ``tf.function`` without XLA: a graph on TF's oneDNN
  kernels, faster on a CPU than XLA's code (``python -m impl_tf.fast_modes``, googlenet at batch 8 on the 2-core
  AVX-512 CPU: forward 115 img/s in the graph against 63 with XLA, training step 33.6 against 8.6; on the
  earlier CPU without AVX-512 the training step 7.15 against 4.04). The forward's graph is frozen (its
  variables made constants, 1.11x the unfrozen graph: docs/benchmarks.md, "Closing the gap"), so it computes
  with the weights of the runner's start. Tracing happens while the runner is created (``setup_s``), never in
  the timed calls.
- bf16: fast with the model built under Keras's ``mixed_bfloat16`` policy (fp32 variables, bf16
  computation) and given the fp32 model's weights, where the CPU has AVX512_BF16 or AMX; ``precision``
  holds its logits against the fp32 model's on the same batch.

Each call synchronises: the result is fetched with ``.numpy()``, and on a GPU
``tf.test.experimental.sync_devices()`` waits for everything queued (the SGD updates too).
"""

from __future__ import annotations

import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2  # noqa: E402

import shared_spec  # noqa: E402
from shared_spec import protocol  # noqa: E402

from shared_spec.protocol import (against_fp32, bench_model, best_gflops, check_bench_options,  # noqa: E402
                                  check_bf16_path, compile_now, cpu_has_bf16)

from .builder import build  # noqa: E402
from .handwritten import REFERENCES as HANDWRITTEN  # noqa: E402,F401  (the worker reads it)
from .handwritten import handwritten, resolve_device  # noqa: E402

LR = 0.01
SEED = 0


# --------------------------------------------------------------------------- the runner


def trainable_params(model: keras.Model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


class Runner:
    precision: dict | None = None  # mode "bf16": the logits against fp32 (protocol.against_fp32)

    def __init__(self, model: keras.Model, spec: shared_spec.Spec, *, target: str, mode: str, batch: int,
                 train: bool, aux_weights: tuple[float, ...] = (), reference: keras.Model | None = None):
        self.model = model
        self._target = target
        self.device = "gpu" if "GPU" in target else "cpu"
        rng = np.random.default_rng(SEED)
        x = rng.standard_normal((batch, *spec.input_shape), dtype=np.float32).transpose(0, 2, 3, 1)  # NHWC
        y = rng.integers(0, spec.num_classes, size=batch)
        with tf.device(target):
            self._x = tf.constant(np.ascontiguousarray(x))
            self._y = tf.constant(y, dtype=tf.int64)
        variables = model.trainable_variables
        cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)  # mean over the batch

        def predict(x):
            return model(x, training=False)

        def step(x, y):
            with tf.GradientTape() as tape:
                out = model(x, training=True)
                main, *aux = out if isinstance(out, (tuple, list)) else (out,)
                loss = cross_entropy(y, main)
                for weight, logits in zip(aux_weights, aux, strict=True):
                    loss = loss + weight * cross_entropy(y, logits)
            grads = tape.gradient(loss, variables)
            for variable, grad in zip(variables, grads, strict=True):
                variable.assign_sub(LR * grad)
            return loss

        if mode == "plain":
            self._predict, self._step = predict, step
            self.notes = "eager, fp32, NHWC"
            return
        # graphs without XLA: TF's oneDNN kernels beat XLA's CPU code (python -m impl_tf.fast_modes; module docstring);
        # the forward's graph frozen: its weights as constants that grappler folds
        self._predict = _frozen(predict, self._x, target)
        self._step = tf.function(step, jit_compile=False)
        self.notes = "tf.function (graph, no XLA), the forward frozen" + (", mixed_bfloat16" if mode == "bf16" else "")
        if reference is not None:  # mode bf16: the fp32 model, before the training step at setup moves the weights
            compile_now(self, False, "tf.function")
            with tf.device(target):
                expected = np.asarray(reference(self._x, training=False))
                self.precision = against_fp32(expected, np.asarray(tf.cast(self._predict(self._x), tf.float32)))
        compile_now(self, train, "tf.function")

    def _sync(self, result) -> None:
        result.numpy()
        if self.device == "gpu":
            tf.test.experimental.sync_devices()

    def forward(self) -> None:
        with tf.device(self._target):
            self._sync(self._predict(self._x))

    def train_step(self) -> None:
        with tf.device(self._target):
            self._sync(self._step(self._x, self._y))

    def peak_gpu_bytes(self) -> int | None:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] if self.device == "gpu" else None


def _frozen(predict, x: tf.Tensor, target: str):
    """``predict`` traced for ``x``'s shape and frozen (``convert_variables_to_constants_v2``): the variables
    become constants, so grappler folds BatchNorm's arithmetic into the convolutions' weights once, instead of at
    every call (googlenet's forward at batch 8, 1.11x the unfrozen graph: docs/benchmarks.md, "Closing the gap").
    It computes with the weights it was frozen with: the bench times the forward before any training step."""
    with tf.device(target):
        concrete = tf.function(predict).get_concrete_function(tf.TensorSpec(x.shape, x.dtype))
        frozen = convert_variables_to_constants_v2(concrete)
    return lambda x: tf.nest.flatten(frozen(x))[0]


def set_threads(intra: int, inter: int) -> dict[str, int]:
    """The bench's thread counts, set before TensorFlow's runtime starts in the measuring process; read back."""
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    return {"intra": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter": tf.config.threading.get_inter_op_parallelism_threads()}


def peak_gflops(device: str, dtype: str = "float32", *, matmul: int | None = None,
                conv: tuple[int, int, int] | None = None, repeats: int | None = None) -> float | None:
    """This machine's reachable rate in TensorFlow (GFLOP/s): the faster of a ``matmul`` x ``matmul`` matmul and a
    3x3 convolution of ``conv`` = (batch, channels, side) (defaults ``protocol.PEAK_MATMUL``, ``PEAK_CONV``),
    best of ``repeats``; None where ``dtype`` has no fast path."""
    target = resolve_device(device)
    if dtype == "bfloat16" and "GPU" not in target and not cpu_has_bf16():
        return None
    n, rng = matmul or protocol.PEAK_MATMUL, np.random.default_rng(SEED)
    with tf.device(target):
        a, b = (tf.cast(tf.constant(rng.standard_normal((n, n), dtype=np.float32)), dtype) for _ in range(2))

        batch, channels, side = conv or protocol.PEAK_CONV
        x = tf.cast(tf.constant(rng.standard_normal((batch, side, side, channels), dtype=np.float32)), dtype)
        w = tf.cast(tf.constant(rng.standard_normal((3, 3, channels, channels), dtype=np.float32)), dtype)

    def matmul_call():
        with tf.device(target):
            tf.linalg.matmul(a, b).numpy()

    def conv_call():
        with tf.device(target):
            tf.nn.conv2d(x, w, strides=1, padding="SAME").numpy()  # 'same' at stride 1, 3x3: padding 1

    return max(best_gflops(matmul_call, n, repeats),
               best_gflops(conv_call, repeats=repeats, flops=2 * batch * channels**2 * 9 * side**2))


def runner(spec: shared_spec.Spec, *, source: str, mode: str, device: str, batch: int, train: bool) -> Runner:
    check_bench_options(source, mode, batch)
    target = resolve_device(device)
    keras.backend.clear_session()  # drop the previous runners' models and traced functions
    gc.collect()
    if "GPU" in target:
        # impl_tf.build turns TF32 off (process-wide) for fp32 agreement; the same for both sources,
        # whichever runs first.
        tf.config.experimental.enable_tensor_float_32_execution(False)
        tf.config.experimental.reset_memory_stats("GPU:0")
    if mode == "bf16":
        check_bf16_path("Keras (TensorFlow)", "GPU" in target or cpu_has_bf16())

    def model_for_bench():
        return bench_model(spec, source, build=lambda s: build(s, device=device, seed=SEED),
                           handwritten=lambda s: handwritten(s, device=device), params=trainable_params)

    model, aux_weights = model_for_bench()
    if mode != "bf16":
        return Runner(model, spec, target=target, mode=mode, batch=batch, train=train, aux_weights=aux_weights)
    reference, policy = model, keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")  # layers made now compute in bf16 on fp32 variables
    try:
        model, aux_weights = model_for_bench()
    finally:
        keras.config.set_dtype_policy(policy)
    model.set_weights(reference.get_weights())
    return Runner(model, spec, target=target, mode=mode, batch=batch, train=train, aux_weights=aux_weights,
                  reference=reference)
