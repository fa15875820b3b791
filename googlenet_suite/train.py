"""``googlenet-suite train`` and ``evaluate``: one recipe, one epoch driver, three training loops.

The framework-neutral half of training. The loops themselves live in ``impl_torch/train.py``,
``impl_tf/train.py`` and ``impl_mxnet/train.py``; each one is that framework's idiom (a torch
``DataLoader`` and optimizer, Keras ``compile``/``fit`` on a ``tf.data.Dataset``, a Gluon
``DataLoader`` with ``autograd.record()`` and a ``Trainer``). Everything they share is here:

* the recipe (``recipe.py``; d2l's by default: plain SGD, lr 0.1, batch 128, 10 epochs, inputs resized to 96),
* the network: a ``Spec`` as loaded, fitted to the data set by :func:`fit_to_data` (its classes, channels and
  input size: Fashion-MNIST at 96 is 1x96x96 with 10 classes),
* the data (``googlenet_suite.data``: one preprocessing and one seeded batch order per epoch,
  so the three frameworks see the same pixels in the same order),
* the epoch driver: train one epoch, evaluate, log ``log.csv``/``log.json``, plot ``curves.png``,
  checkpoint ``epoch_K.safetensors`` and ``last.safetensors`` (the suite's weight format) with a
  JSON beside each that records the recipe and the spec (``checkpoints.py``),
* evaluation of a checkpoint in any framework, through the builder contract's ``forward``:
  the same weights give the same accuracy in all three.

Each framework module provides ``Trainer(spec, recipe)`` with ``model``, ``is_main``,
``train_epoch(order, epoch) -> EpochStats``, ``save_optimizer(path)`` / ``load_optimizer(path)``
(or ``None`` as ``optimizer_suffix`` when the optimizer has no state) and ``close()``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

import shared_spec
from shared_spec import weights as W
from shared_spec.contract import ContractError
from shared_spec.protocol import EpochStats  # noqa: F401  (what the loops return)

from . import curves, data
from . import frameworks as fw_registry
from .checkpoints import (CHECKPOINT_FORMAT, SpecRequest, sidecar_fields, checkpoint_spec, read_checkpoint,  # noqa: F401
                          resume_recipe, save_checkpoint, sidecar)
from .recipe import (DEFAULT_LR, DEFAULT_VARIANTS, OPTIMIZERS, RECIPE_SCHEMA, Recipe, TrainError,  # noqa: F401
                     check_recipe_fields, default_lr, default_variant)
from shared_spec.files import atomic_write

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow's first import (its C++ info lines)

EVAL_BATCH = 256
LOG_FIELDS = ("epoch", "loss", "train_acc", "test_loss", "test_acc", "examples_per_s", "seconds", "steps")


# --------------------------------------------------------------------------- data


def load_dataset(recipe: Recipe, data_dir: str | os.PathLike | None, *, download: bool = False) -> data.Dataset:
    """The recipe's dataset, cut to its first ``recipe.limit`` training and test examples."""
    ds = data.load(recipe.data, data_dir, download=download)
    return limit_dataset(ds, recipe.limit)


def limit_dataset(ds: data.Dataset, limit: int | None) -> data.Dataset:
    if limit is None:
        return ds
    return dataclasses.replace(ds, x_train=ds.x_train[:limit], y_train=ds.y_train[:limit],
                               x_test=ds.x_test[:limit], y_test=ds.y_test[:limit])


def epoch_order(ds: data.Dataset, recipe: Recipe, epoch: int) -> np.ndarray:
    """The training examples' order in ``epoch``: ``data.batches`` seeded by (seed, epoch), flattened.

    Every framework's loader cuts this order into consecutive batches of ``recipe.batch`` (the last
    one smaller), so all three see the same batches in the same order, and a resumed run sees what
    an uninterrupted one would have."""
    return np.concatenate([np.asarray(idx, dtype=np.int64)
                           for idx in data.batches(ds, recipe.batch, shuffle=True, seed=recipe.seed, epoch=epoch)])


def fit_to_data(spec: shared_spec.Spec, ds: data.Dataset, *, resize: int, aux: bool = False) -> shared_spec.Spec:
    """``spec``'s variant fitted to the data: its classes, its channels, inputs resized to ``resize`` (MNIST at 96:
    1x96x96, 10 classes) and, with ``aux``, the aux heads on; every override ``spec`` was loaded with stays. Its
    file is read again (``spec.source``): the channel numbers these change run through the network, and working
    them out is the loader's job."""
    fitted = {"num_classes": ds.num_classes, "in_channels": ds.channels, "input_size": (resize, resize),
              **({"aux_logits": True} if aux else {})}
    return shared_spec.load(spec.variant, spec_file=spec.source, **{**spec.overrides, **fitted})


# --------------------------------------------------------------------------- evaluation


def evaluate_model(mod, model, x_uint8: np.ndarray, y: np.ndarray, *, resize: int, batch: int = EVAL_BATCH) -> dict:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) through the builder contract's ``forward``.

    The same code for every framework: logits come back as numpy, the loss is computed in float64,
    so one set of weights gives one accuracy and (within fp32 rounding of the logits) one loss."""
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), batch):
        x = data.preprocess(x_uint8[start:start + batch], resize=resize)
        labels = np.asarray(y[start:start + batch], dtype=np.int64)
        logits = np.asarray(mod.forward(model, x, training=False), dtype=np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss_sum += float(-log_probs[np.arange(len(labels)), labels].sum())
        correct += int((logits.argmax(axis=1) == labels).sum())
    n = len(y)
    return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1), "examples": n}


# --------------------------------------------------------------------------- files


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_logs(out: Path, recipe: Recipe, history: list[dict]) -> None:
    """``log.csv`` (one row per epoch), ``log.json`` (the recipe and the rows) and ``curves.png``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row[k] for k in LOG_FIELDS} for row in history)
    _write_text(out / "log.csv", buffer.getvalue())
    _write_text(out / "log.json", json.dumps({"recipe": recipe.to_dict(), "epochs": history}, indent=2) + "\n")
    atomic_write(out / "curves.png", lambda tmp: curves.plot_curves(history, tmp, title=_title(recipe)))


def _title(recipe: Recipe) -> str:
    return (f"{recipe.variant} in {fw_registry.FRAMEWORKS[recipe.framework].label} on {recipe.data}"
            f"{f' (first {recipe.limit})' if recipe.limit else ''}: {recipe.optimizer} lr {recipe.lr:g}, "
            f"batch {recipe.batch}, {recipe.resize}x{recipe.resize}")


# --------------------------------------------------------------------------- the driver


def builder_module(key: str, *, tensorflow_backend: bool = False):
    """``impl_torch`` (the builder contract), or a one-line error when the framework is missing."""
    try:
        return fw_registry.load(key, tensorflow_backend=tensorflow_backend)
    except fw_registry.FrameworkMissing as exc:
        raise TrainError(str(exc)) from None


def trainer_module(key: str):
    """``impl_torch.train`` and its builder, or a one-line error when the framework is missing or cannot train."""
    if not fw_registry.FRAMEWORKS[key].can("train"):
        raise TrainError(f"{fw_registry.FRAMEWORKS[key].label} is inference only: it cannot train")
    builder = builder_module(key, tensorflow_backend=True)
    return fw_registry.part(key, "train"), builder


def train(spec: shared_spec.Spec, recipe: Recipe, out: str | os.PathLike, *, data_dir=None, download: bool = False,
          resume=None, progress: bool = True, log: Callable[[str], None] = print,
          initial_weights: dict | None = None) -> list[dict]:
    """Train ``spec``'s network with ``recipe`` (or continue the checkpoint ``resume``), writing logs and
    checkpoints to ``out``.

    ``spec`` is the variant as loaded (``shared_spec.load``; ``recipe.variant`` names it too), fitted here to the
    recipe's data (:func:`fit_to_data`) and recorded in each checkpoint (:class:`SpecRequest`).
    ``initial_weights`` (neutral layout) replace the framework's own first draw, so runs in several frameworks
    can start from the same weights. Everything that can be wrong with the input (recipe, checkpoint, data,
    spec) is checked before ``out`` is created. Returns the per-epoch history (the rows of ``log.csv``)."""
    check_variant(spec, recipe)
    meta = read_checkpoint(resume) if resume else None
    recipe.check()
    ds = load_dataset(recipe, data_dir, download=download)
    given, spec = SpecRequest.of(spec), fit_to_data(spec, ds, resize=recipe.resize, aux=recipe.aux)
    loop, mod = trainer_module(recipe.framework)
    start, steps, history = 0, 0, []
    if meta is not None:
        weights, _ = W.load_weights(meta["path"], spec)  # a checkpoint for another model: WeightsError, exit 2
    try:
        trainer = loop.Trainer(spec, recipe, preprocess=data.preprocess)
    except ContractError as exc:
        raise TrainError(str(exc)) from None
    try:
        if initial_weights is not None and meta is None:
            mod.import_weights(trainer.model, initial_weights)
        if meta is not None:
            mod.import_weights(trainer.model, weights)
            state = meta.get("optimizer_state") if recipe.framework == meta["framework"] else None
            state = str(Path(meta["path"]).parent / state) if state else None
            try:
                trainer.load_optimizer(state, steps=meta["steps"])
            except Exception as exc:  # a damaged file: each framework raises its own error
                raise TrainError(f"--resume: {state}: cannot restore the optimizer state "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
            start, steps, history = meta["epoch"], meta["steps"], list(meta["history"])
        out = Path(out)
        if trainer.is_main:
            out.mkdir(parents=True, exist_ok=True)
            log(f"{_title(recipe)}; {len(ds.y_train)} training / {len(ds.y_test)} test examples; "
                f"epochs {start + 1}..{recipe.epochs}; writing to {out}")
        for epoch in range(start + 1, recipe.epochs + 1):
            order = epoch_order(ds, recipe, epoch)
            started = time.perf_counter()
            stats = trainer.train_epoch(ds, order, epoch, progress=progress)
            seconds = time.perf_counter() - started
            steps += stats.steps
            if not trainer.is_main:
                continue
            test = evaluate_model(mod, trainer.model, ds.x_test, ds.y_test, resize=recipe.resize)
            history.append({"epoch": epoch, "loss": stats.loss, "train_acc": stats.accuracy,
                            "test_loss": test["loss"], "test_acc": test["accuracy"],
                            "examples_per_s": stats.examples / seconds, "seconds": seconds, "steps": steps})
            write_logs(out, recipe, history)
            save_checkpoint(out, trainer, mod, recipe, epoch, steps, history, spec=given)
            log(f"epoch {epoch}: loss {stats.loss:.3f}, train acc {stats.accuracy:.3f}, "
                f"test acc {test['accuracy']:.3f}, {stats.examples / seconds:.1f} examples/s on {trainer.device}")
    finally:
        trainer.close()
    return history


def check_variant(spec: shared_spec.Spec, recipe: Recipe) -> None:
    """The recipe names the variant it trains (logs, titles and checkpoints record it): the spec's."""
    if recipe.variant != spec.variant:
        raise ValueError(f"recipe.variant must name the spec's variant {spec.variant!r}. "
                         f"Received: recipe.variant={recipe.variant!r}")


def evaluate_checkpoint(spec: shared_spec.Spec, framework: str, weights: str | os.PathLike, *, data_name: str,
                        data_dir=None, download: bool = False, resize: int | None = None, limit: int | None = None,
                        device: str = "auto") -> dict:
    """Accuracy and mean loss of a checkpoint of ``spec``'s network on a test set, in ``framework``: whichever
    framework trained it (:func:`checkpoint_spec` says which spec a checkpoint was trained from).

    The model is ``spec`` with the checkpoint's aux heads (from its metadata), fitted to the data; the input
    size is ``resize``, else the checkpoint's recipe's, else 96."""
    if framework not in fw_registry.FRAMEWORKS:
        raise TrainError(f"unknown framework {framework!r}; expected one of {', '.join(fw_registry.FRAMEWORKS)}")
    try:
        _, meta = W.load_weights(weights)
    except W.WeightsError as exc:
        raise TrainError(f"--weights: {exc}") from None
    recipe_meta = sidecar_fields(weights).get("recipe", {})  # weights without train's .json: the defaults
    check_recipe_fields(recipe_meta, f"--weights: {sidecar(weights)}")
    overrides = W.check_metadata(meta, source=f"--weights: {weights}")
    recipe = Recipe(framework=framework, variant=spec.variant, data=data_name,
                    resize=resize or recipe_meta.get("resize") or 96, limit=limit, device=device,
                    aux=bool(overrides.get("aux_logits", False))).check()
    ds = load_dataset(recipe, data_dir, download=download)
    spec = fit_to_data(spec, ds, resize=recipe.resize, aux=recipe.aux)
    mod = builder_module(framework)  # inference is all it takes: ONNX Runtime evaluates too
    model = mod.build(spec, device=device, seed=0)
    mod.load_weights(model, weights)
    result = evaluate_model(mod, model, ds.x_test, ds.y_test, resize=recipe.resize)
    return {"framework": framework, "variant": spec.variant, "data": data_name, "weights": str(weights),
            "resize": recipe.resize, "device": mod.device_of(model), **result}
