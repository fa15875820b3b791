"""``googlenet-suite train`` and ``evaluate``: one recipe, one epoch driver, three training loops.

The framework-neutral half of training. The loops themselves live in ``impl_torch/train.py``,
``impl_tf/train.py`` and ``impl_mxnet/train.py``; each one is that framework's idiom (a torch
``DataLoader`` and optimizer, Keras ``compile``/``fit`` on a ``tf.data.Dataset``, a Gluon
``DataLoader`` with ``autograd.record()`` and a ``Trainer``). Everything they share is here:

* the recipe (d2l's by default: plain SGD, lr 0.1, batch 128, 10 epochs, inputs resized to 96),
* the data (``googlenet_suite.data``: one preprocessing and one seeded batch order per epoch,
  so the three frameworks see the same pixels in the same order),
* the epoch driver: train one epoch, evaluate, log ``log.csv``/``log.json``, plot ``curves.png``,
  checkpoint ``epoch_K.safetensors`` and ``last.safetensors`` (the suite's weight format) with a
  JSON beside each,
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
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import shared_spec
from shared_spec import weights as W
from shared_spec.contract import ContractError
from shared_spec.protocol import EpochStats  # noqa: F401  (what the loops return)

from . import data
from . import frameworks as fw_registry
from shared_spec.files import atomic_write

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow's first import (its C++ info lines)

CHECKPOINT_FORMAT = "googlenet-suite/checkpoint-v1"
OPTIMIZERS = ("sgd", "adam")
#: the variant a data set trains when none is named: d2l's network (d2l's recipe) for the real data sets; for the
#: synthetic set torchvision's GoogLeNet (BatchNorm), which learns it within an epoch at ``--resize 32 --batch 32``,
#: where d2l's network (no BatchNorm) stays at chance for the quick demo's 3 epochs (loss 2.30 after 126 steps)
DEFAULT_VARIANTS = {"synthetic": "googlenet"}
DEFAULT_LR = {"sgd": 0.1, "adam": 0.001}  # at d2l's batch 128; see default_lr
EVAL_BATCH = 256
LOG_FIELDS = ("epoch", "loss", "train_acc", "test_loss", "test_acc", "examples_per_s", "seconds", "steps")


class TrainError(shared_spec.InputError):
    """Bad training input (a recipe value, a checkpoint): one line, exit code 2."""


# --------------------------------------------------------------------------- the recipe


@dataclass(frozen=True, slots=True)
class Recipe:
    """Everything that decides a training run. The defaults are d2l's (seed 004): plain SGD
    (no momentum, no weight decay), lr 0.1, batch 128, 10 epochs, Fashion-MNIST resized to 96x96."""

    framework: str = "torch"
    variant: str = "d2l"
    data: str = "fashion-mnist"
    epochs: int = 10
    batch: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"
    resize: int = 96
    seed: int = 0
    aux: bool = False
    limit: int | None = None
    device: str = "auto"

    def check(self) -> "Recipe":
        if self.framework not in fw_registry.FRAMEWORKS:
            raise TrainError(f"unknown framework {self.framework!r}; "
                             f"expected one of {', '.join(fw_registry.FRAMEWORKS)}")
        if self.optimizer not in OPTIMIZERS:
            raise TrainError(f"unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        for name in ("epochs", "batch", "resize"):
            if getattr(self, name) < 1:
                raise TrainError(f"--{name} must be >= 1. Received: --{name} {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise TrainError(f"--limit must be >= 1. Received: --limit {self.limit}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise TrainError(f"--lr must be a finite number > 0. Received: --lr {self.lr}")
        if self.seed < 0:
            raise TrainError(f"--seed must be >= 0. Received: --seed {self.seed}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "recipe") -> "Recipe":
        """A recipe read from a file, every field checked for its type first (a one-line TrainError naming
        ``source`` and the field, never a TypeError deep inside training)."""
        check_recipe_fields(values, source)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


#: the fields of a recipe as a checkpoint's .json stores them
RECIPE_SCHEMA = {
    "type": "object",
    "properties": {
        **{name: {"type": "string"} for name in ("framework", "variant", "data", "optimizer", "device")},
        **{name: {"type": "integer"} for name in ("epochs", "batch", "resize", "seed")},
        "lr": {"type": "number"},
        "aux": {"type": "boolean"},
        "limit": {"type": ["integer", "null"]},
    },
}


def default_lr(optimizer: str, batch: int) -> float:
    """The learning rate when none is given: Adam's 0.001; for SGD d2l's 0.1 at its batch 128, scaled linearly
    with the batch (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): 0.025 at batch 32. Unscaled, lr 0.1
    at batch 32 is too much for googlenet on the synthetic set (test accuracy 0.55 after 3 epochs, against 0.95
    after one at 0.025: docs/teaching.md)."""
    lr = DEFAULT_LR.get(optimizer, DEFAULT_LR["sgd"])
    return lr * batch / _recipe_default("batch") if optimizer == "sgd" else lr


def default_variant(data_name: str | None) -> str:
    """The variant ``train`` uses for ``data_name`` when none is given (``DEFAULT_VARIANTS``, else d2l)."""
    return DEFAULT_VARIANTS.get(data_name or _recipe_default("data"), _recipe_default("variant"))


def _recipe_default(name: str):
    return next(f.default for f in dataclasses.fields(Recipe) if f.name == name)


def check_recipe_fields(values, source: str) -> None:
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(RECIPE_SCHEMA).iter_errors(values))
    if error is not None:
        where = "$.recipe" + "".join(f".{part}" for part in error.absolute_path)
        raise TrainError(f"{source}: {where}: {error.message[:120]}")


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


def model_spec(recipe: Recipe, ds: data.Dataset, *, spec_file=None, aux: bool | None = None) -> shared_spec.Spec:
    """The variant, fitted to the data: its classes, its channels, inputs resized to ``recipe.resize``."""
    aux = recipe.aux if aux is None else aux
    return shared_spec.load(recipe.variant, spec_file=spec_file, num_classes=ds.num_classes, in_channels=ds.channels,
                            input_size=(recipe.resize, recipe.resize), **({"aux_logits": True} if aux else {}))


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
    atomic_write(out / "curves.png", lambda tmp: plot_curves(history, tmp, title=_title(recipe)))


def _title(recipe: Recipe) -> str:
    return (f"{recipe.variant} in {fw_registry.FRAMEWORKS[recipe.framework].label} on {recipe.data}"
            f"{f' (first {recipe.limit})' if recipe.limit else ''}: {recipe.optimizer} lr {recipe.lr:g}, "
            f"batch {recipe.batch}, {recipe.resize}x{recipe.resize}")


def plot_curves(history: list[dict], path, *, title: str = "") -> None:
    """d2l's plot: train loss, train accuracy and test accuracy against the epoch, here in two panels."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=80)
    left.plot(epochs, [row["loss"] for row in history], "o-", label="train loss")
    left.plot(epochs, [row["test_loss"] for row in history], "s--", label="test loss")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    right.plot(epochs, [row["train_acc"] for row in history], "o-", label="train acc")
    right.plot(epochs, [row["test_acc"] for row in history], "s--", label="test acc")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


# --------------------------------------------------------------------------- checkpoints


def sidecar(weights_path: str | os.PathLike) -> Path:
    """``epoch_3.safetensors`` -> ``epoch_3.json`` (epoch, step count, recipe, history)."""
    return Path(weights_path).with_suffix(".json")


def save_checkpoint(out: Path, trainer, mod, recipe: Recipe, epoch: int, steps: int, history: list[dict]) -> Path:
    """``epoch_K.safetensors`` (the builder's ``save_weights``: neutral layout, any framework loads it),
    ``epoch_K.json`` beside it, the optimizer's own state where it has one, and the same again as ``last.*``."""
    for stem in (f"epoch_{epoch}", "last"):
        weights = out / f"{stem}.safetensors"
        mod.save_weights(trainer.model, weights)  # atomic (shared_spec.weights.save_weights)
        optimizer_file = f"{stem}.optimizer{trainer.optimizer_suffix}" if trainer.optimizer_suffix else None
        if optimizer_file:
            atomic_write(out / optimizer_file, trainer.save_optimizer)
        meta = {"format": CHECKPOINT_FORMAT, "framework": recipe.framework, "epoch": epoch, "steps": steps,
                "weights": weights.name, "optimizer_state": optimizer_file, "recipe": recipe.to_dict(),
                "history": history}
        _write_text(sidecar(weights), json.dumps(meta, indent=2) + "\n")
    return out / f"epoch_{epoch}.safetensors"


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint's JSON, after checking that its weight file is a readable suite weight file."""
    path = Path(path)
    try:
        _, weights_meta = W.load_weights(path)
    except W.WeightsError as exc:
        raise TrainError(f"--resume: {exc}") from None
    meta_path = sidecar(path)
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise TrainError(f"--resume: {meta_path}: missing (a checkpoint is the .safetensors file and the .json "
                         f"beside it, as train writes them)") from None
    except (OSError, ValueError) as exc:
        raise TrainError(f"--resume: {meta_path}: not readable JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"--resume: {meta_path}: not a googlenet-suite checkpoint (format "
                         f"{meta.get('format') if isinstance(meta, dict) else None!r}, expected {CHECKPOINT_FORMAT!r})")
    expected = {"framework": str, "epoch": int, "steps": int, "recipe": dict, "history": list}
    wrong = [key for key, kind in expected.items() if not isinstance(meta.get(key), kind)]
    if wrong:
        raise TrainError(f"--resume: {meta_path}: {wrong[0]!r} is missing or not a {expected[wrong[0]].__name__}")
    if meta.get("optimizer_state") and not (path.parent / meta["optimizer_state"]).is_file():
        raise TrainError(f"--resume: {path.parent / meta['optimizer_state']}: missing (the optimizer state "
                         f"{meta_path.name} names)")
    meta["path"] = str(path)
    meta["weights_meta"] = weights_meta
    return meta


def resume_recipe(meta: dict, given: dict) -> Recipe:
    """The checkpoint's recipe; ``given`` (options typed on the command line) may change the number of
    epochs, the device and, for plain SGD, the framework (the weights are neutral, plain SGD has no
    state). Anything else that differs would make the resumed run a different run: an error."""
    recipe = Recipe.from_dict(meta["recipe"], source=f"--resume: {sidecar(meta['path'])}")
    changes = {}
    for key, value in given.items():
        if value is None or value == getattr(recipe, key):
            continue
        if key in ("epochs", "device") or (key == "framework" and not meta.get("optimizer_state")):
            changes[key] = value
        else:
            raise TrainError(f"--resume: the checkpoint was trained with {key}={getattr(recipe, key)!r}; "
                             f"cannot resume it with {key}={value!r}")
    recipe = dataclasses.replace(recipe, **changes)
    if meta["epoch"] >= recipe.epochs:
        raise TrainError(f"--resume: the checkpoint has finished epoch {meta['epoch']} of {recipe.epochs}; "
                         f"ask for more with --epochs N (N > {meta['epoch']})")
    return recipe


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


def train(recipe: Recipe, out: str | os.PathLike, *, data_dir=None, download: bool = False, resume=None,
          spec_file=None, progress: bool = True, log: Callable[[str], None] = print,
          initial_weights: dict | None = None) -> list[dict]:
    """Train ``recipe`` (or continue the checkpoint ``resume``), writing logs and checkpoints to ``out``.

    ``initial_weights`` (neutral layout) replace the framework's own first draw, so runs in several frameworks
    can start from the same weights. Everything that can be wrong with the input (recipe, checkpoint, data,
    spec) is checked before ``out`` is created. Returns the per-epoch history (the rows of ``log.csv``)."""
    meta = read_checkpoint(resume) if resume else None
    recipe.check()
    ds = load_dataset(recipe, data_dir, download=download)
    spec = model_spec(recipe, ds, spec_file=spec_file)
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
            save_checkpoint(out, trainer, mod, recipe, epoch, steps, history)
            log(f"epoch {epoch}: loss {stats.loss:.3f}, train acc {stats.accuracy:.3f}, "
                f"test acc {test['accuracy']:.3f}, {stats.examples / seconds:.1f} examples/s on {trainer.device}")
    finally:
        trainer.close()
    return history


def evaluate_checkpoint(framework: str, weights: str | os.PathLike, *, variant: str | None = None, data_name: str,
                        data_dir=None, download: bool = False, resize: int | None = None, limit: int | None = None,
                        device: str = "auto", spec_file=None) -> dict:
    """Accuracy and mean loss of a checkpoint on a test set, in ``framework``: whichever framework trained it.

    The model is the checkpoint's (variant and aux heads from its metadata), fitted to the data; the input
    size is ``resize``, else the checkpoint's recipe's, else 96."""
    if framework not in fw_registry.FRAMEWORKS:
        raise TrainError(f"unknown framework {framework!r}; expected one of {', '.join(fw_registry.FRAMEWORKS)}")
    try:
        _, meta = W.load_weights(weights)
    except W.WeightsError as exc:
        raise TrainError(f"--weights: {exc}") from None
    try:
        recipe_meta = json.loads(sidecar(weights).read_text()).get("recipe", {})
    except (OSError, ValueError, AttributeError):
        recipe_meta = {}  # weights without train's .json beside them: the defaults
    check_recipe_fields(recipe_meta, f"--weights: {sidecar(weights)}")
    overrides = W.check_metadata(meta, source=f"--weights: {weights}")
    recipe = Recipe(framework=framework, variant=variant or meta.get("variant") or "d2l", data=data_name,
                    resize=resize or recipe_meta.get("resize") or 96, limit=limit, device=device,
                    aux=bool(overrides.get("aux_logits", False))).check()
    ds = load_dataset(recipe, data_dir, download=download)
    spec = model_spec(recipe, ds, spec_file=spec_file)
    mod = builder_module(framework)  # inference is all it takes: ONNX Runtime evaluates too
    model = mod.build(spec, device=device, seed=0)
    mod.load_weights(model, weights)
    result = evaluate_model(mod, model, ds.x_test, ds.y_test, resize=recipe.resize)
    return {"framework": framework, "variant": spec.variant, "data": data_name, "weights": str(weights),
            "resize": recipe.resize, "device": mod.device_of(model), **result}
