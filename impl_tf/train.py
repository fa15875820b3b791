"""Training GoogLeNet in Keras 3 (TensorFlow backend): a ``tf.data.Dataset``, ``model.compile``, ``model.fit``.

Aux heads fit Keras's multi-output idiom without a custom loop: in training mode the builder's model
returns ``(main, aux1, aux2)``, so ``compile`` gets one loss per output and ``loss_weights``
``[1, w1, w2]`` (the spec's ``loss_weight``), and the dataset gives each output the same labels.
Evaluation runs in eval mode, where the model returns the main logits only; it goes through the
builder contract's ``forward`` (``train.evaluate_model``), as in the other two frameworks.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

import impl_tf  # noqa: E402

from shared_spec.protocol import EpochStats  # noqa: E402


def make_dataset(ds, order, *, preprocess, batch: int, resize: int, outputs: int) -> tf.data.Dataset:
    """This epoch's batches (``order`` from ``data.batches``), preprocessed the suite's way, channels-last."""
    def batches():
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            x = preprocess(ds.x_train[idx], resize=resize).transpose(0, 2, 3, 1)  # N x H x W x C
            y = ds.y_train[idx].astype(np.int64)
            yield x, (y,) * outputs if outputs > 1 else y  # main and aux heads learn the same labels

    x_spec = tf.TensorSpec((None, resize, resize, ds.channels), tf.float32)
    y_spec = tf.TensorSpec((None,), tf.int64)
    steps = -(-len(order) // batch)
    dataset = tf.data.Dataset.from_generator(
        batches, output_signature=(x_spec, (y_spec,) * outputs if outputs > 1 else y_spec))
    return dataset.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)  # fit knows the epoch's length


class ProgressBar(keras.callbacks.Callback):
    """A tqdm bar per epoch (instead of ``verbose=1``), like the torch and Gluon loops."""

    def __init__(self, total: int, desc: str | None):
        super().__init__()
        self.total, self.desc = total, desc

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = tqdm(total=self.total, desc=self.desc, disable=not self.desc, unit="batch")

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()


def compile_for_training(model, optimizer, aux_weights) -> None:
    """Keras's way: name the loss, the optimizer and the metrics once; ``fit`` then runs the loop."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    # jit_compile=False: XLA would compile again for the smaller last batch; graph mode is enough here
    if aux_weights:  # training mode returns (main, aux1, aux2): one loss per output, weighted
        model.compile(optimizer=optimizer, loss=[loss] * (1 + len(aux_weights)), loss_weights=[1.0, *aux_weights],
                      metrics=[["accuracy"]] + [[]] * len(aux_weights), jit_compile=False)
    else:
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=False)


def train_epoch(model, batches, epoch, bar) -> dict:
    """One epoch of ``fit``: Keras counts epochs from 0, so epoch K (from 1) is ``initial_epoch=K - 1``."""
    history = model.fit(batches, initial_epoch=epoch - 1, epochs=epoch, shuffle=False, verbose=0, callbacks=[bar])
    return {key: values[-1] for key, values in history.history.items()}  # loss, accuracy (fc_accuracy with aux)


class Trainer:
    """The recipe's model, compiled, for the epoch driver in ``train.py``."""

    is_main = True

    def __init__(self, spec, recipe, *, preprocess):
        self.recipe, self.spec, self.preprocess = recipe, spec, preprocess
        keras.utils.set_random_seed(recipe.seed)  # dropout masks (the weights' own seed is build's)
        self.model = impl_tf.build(spec, device=recipe.device, seed=recipe.seed)
        self.device = "/GPU:0" if impl_tf.device_of(self.model) == "gpu" else "/CPU:0"
        if recipe.optimizer == "sgd":  # d2l's plain SGD: no momentum, no weight decay
            optimizer = keras.optimizers.SGD(learning_rate=recipe.lr)
            self.optimizer_suffix = None
        else:  # epsilon as torch and Gluon have it (Keras's default is 1e-7)
            optimizer = keras.optimizers.Adam(learning_rate=recipe.lr, epsilon=1e-8)
            self.optimizer_suffix = ".safetensors"  # its moments and iteration count
        aux_weights = [head.loss_weight for head in spec.aux_heads]
        self.outputs = 1 + len(aux_weights)
        compile_for_training(self.model, optimizer, aux_weights)
        optimizer.build(self.model.trainable_variables)  # its variables exist now, so a checkpoint can fill them

    def train_epoch(self, ds, order, epoch, *, progress=True) -> EpochStats:
        batches = make_dataset(ds, order, preprocess=self.preprocess, batch=self.recipe.batch, resize=self.recipe.resize, outputs=self.outputs)
        steps = -(-len(order) // self.recipe.batch)
        bar = ProgressBar(steps, f"epoch {epoch}/{self.recipe.epochs}" if progress else None)
        with tf.device(self.device):
            logs = train_epoch(self.model, batches, epoch, bar)
        accuracy = next(value for key, value in logs.items() if key.endswith("accuracy"))  # fc_accuracy with aux
        return EpochStats(loss=float(logs["loss"]), accuracy=float(accuracy), examples=len(order), steps=steps)

    def save_optimizer(self, path: str) -> None:
        from safetensors.numpy import save_file

        save_file({f"{i:04d}.{v.path}": np.asarray(v.numpy()) for i, v in enumerate(self.model.optimizer.variables)},
                  path)

    def load_optimizer(self, path: str | None, *, steps: int) -> None:
        if path is None:  # plain SGD: the step count is all there is
            self.model.optimizer.iterations.assign(steps)
            return
        from safetensors.numpy import load_file

        saved = load_file(path)
        for (key, value), variable in zip(sorted(saved.items()), self.model.optimizer.variables, strict=True):
            variable.assign(value)

    def close(self) -> None:
        pass
