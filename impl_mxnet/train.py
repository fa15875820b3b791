"""Training GoogLeNet in MXNet Gluon: a ``gluon.data.DataLoader``, ``autograd.record()``, a ``gluon.Trainer``."""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from tqdm import tqdm

import impl_mxnet

from shared_spec.protocol import EpochStats


def batchify(preprocess, resize: int):
    """Stack a batch and preprocess it the suite's way (``preprocess``, the driver's ``data.preprocess``:
    float32 in [0, 1], resized)."""
    def batch(items):
        images, labels = zip(*items)
        x = preprocess(np.stack(images), resize=resize)  # N x C x resize x resize
        return mx.nd.array(x, dtype=np.float32), mx.nd.array(labels, dtype=np.float32)
    return batch


def train_epoch(net, loader, trainer, aux_weights, ctx, desc=None) -> tuple[float, int, int, int]:
    """One pass over ``loader``. Returns (sum of losses, correct, examples, steps)."""
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()  # one loss per example
    loss_sum, correct, n, steps = 0.0, 0, 0, 0
    for x, y in tqdm(loader, desc=desc, disable=desc is None, unit="batch"):  # a progress bar per epoch
        x, y = x.as_in_context(ctx), y.as_in_context(ctx)
        with autograd.record():  # training mode: (main, aux1, aux2) when aux heads are on
            out = net(x)
            main, *aux = out if isinstance(out, tuple) else (out,)
            loss = loss_fn(main, y)
            for weight, logits in zip(aux_weights, aux, strict=True):
                loss = loss + weight * loss_fn(logits, y)
        loss.backward()
        trainer.step(x.shape[0])  # gradients of the summed loss / batch size: the mean, as in torch and Keras
        loss_sum += loss.sum().asscalar()
        correct += (main.argmax(axis=1) == y).sum().asscalar()
        n += x.shape[0]
        steps += 1
    return loss_sum, int(correct), n, steps


class Trainer:
    """The recipe's model, Gluon trainer and loader, for the epoch driver in ``train.py``."""

    is_main = True

    def __init__(self, spec, recipe, *, preprocess):
        self.recipe, self.spec, self.preprocess = recipe, spec, preprocess
        self.model = impl_mxnet.build(spec, device=recipe.device, seed=recipe.seed, hybridize=True)
        self.ctx = mx.gpu(0) if impl_mxnet.device_of(self.model) == "gpu" else mx.cpu()
        self.device = str(self.ctx)
        if recipe.optimizer == "sgd":  # d2l's plain SGD: no momentum, no weight decay
            self.trainer = gluon.Trainer(self.model.collect_params(), "sgd", {"learning_rate": recipe.lr})
            self.optimizer_suffix = None
        else:
            self.trainer = gluon.Trainer(self.model.collect_params(), "adam",
                                         {"learning_rate": recipe.lr, "epsilon": 1e-8})
            self.optimizer_suffix = ".states"  # Trainer.save_states: MXNet's own format
        self.aux_weights = [head.loss_weight for head in spec.aux_heads]

    def loader(self, ds, order) -> gluon.data.DataLoader:
        dataset = gluon.data.ArrayDataset(ds.x_train, ds.y_train)
        return gluon.data.DataLoader(dataset, batch_size=self.recipe.batch, sampler=order.tolist(),
                                     last_batch="keep", batchify_fn=batchify(self.preprocess, self.recipe.resize))

    def train_epoch(self, ds, order, epoch, *, progress=True) -> EpochStats:
        desc = f"epoch {epoch}/{self.recipe.epochs}" if progress else None
        loss_sum, correct, n, steps = train_epoch(self.model, self.loader(ds, order), self.trainer,
                                                  self.aux_weights, self.ctx, desc)
        return EpochStats(loss=loss_sum / n, accuracy=correct / n, examples=n, steps=steps)

    def save_optimizer(self, path: str) -> None:
        self.trainer.save_states(path)

    def load_optimizer(self, path: str | None, *, steps: int) -> None:
        if path is not None:
            self.trainer.load_states(path)

    def close(self) -> None:
        pass
