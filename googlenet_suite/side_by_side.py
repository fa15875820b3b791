"""``train --framework all`` and ``evaluate --framework all``: one model, one recipe, three APIs side by side.

* ``train_all``: the same recipe in every framework that trains (PyTorch, Keras, Gluon), one after the other,
  from the same start (the first framework's seeded draw, imported into the others in the neutral layout) and
  in the same batch order; each run written where ``train --framework X`` writes it (``OUT/X-VARIANT-DATA``),
  and one overlay plot of the three, ``OUT/overlay-VARIANT-DATA.png``, at the top of ``OUT``.
* ``evaluate_all``: one checkpoint in every installed framework, through the builder contract (ONNX Runtime
  included: evaluation is inference); one table, or JSON. A framework that is not installed is one note line.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

from shared_spec import Spec
from shared_spec.files import atomic_write

from . import curves
from . import frameworks as fw_registry
from . import train as T

TRAINABLE = fw_registry.with_capability("train")  # registry order: torch, tf, mxnet


def run_dir(out: str | os.PathLike, recipe: T.Recipe) -> Path:
    """Where one framework's run goes: ``train --framework X``'s default directory, under ``out``."""
    return Path(out) / f"{recipe.framework}-{recipe.variant}-{recipe.data}"


def overlay_path(out: str | os.PathLike, recipe: T.Recipe) -> Path:
    return Path(out) / f"overlay-{recipe.variant}-{recipe.data}.png"


def available(keys: list[str], log: Callable[[str], None], *, training: bool) -> list[str]:
    """The frameworks of ``keys`` that are installed (imported in a safe order), a note line for each that is not."""
    found = []
    for key in fw_registry.import_order(keys):
        try:
            T.builder_module(key, tensorflow_backend=training)  # train drives Keras through TensorFlow
        except T.TrainError as exc:
            log(f"note: {key} left out: {exc}")
            continue
        found.append(key)
    return [key for key in keys if key in found]  # back in the registry's order


def train_all(spec: Spec, recipe: T.Recipe, out: str | os.PathLike, *, data_dir=None, download: bool = False,
              progress: bool = True, log: Callable[[str], None] = print) -> dict[str, list[dict]]:
    """``spec``'s network with ``recipe`` in every framework that trains; returns each framework's per-epoch
    history."""
    T.check_variant(spec, recipe)
    recipe.check()
    ds = T.load_dataset(recipe, data_dir, download=download)
    fitted = T.fit_to_data(spec, ds, resize=recipe.resize, aux=recipe.aux)  # bad input: one line before anything
    for key, fw in fw_registry.FRAMEWORKS.items():
        if not fw.can("train"):
            log(f"note: {key} left out: {fw.label} is inference only")
    keys = available(TRAINABLE, log, training=True)
    if not keys:
        raise T.TrainError(f"train --framework all: none of {', '.join(TRAINABLE)} is installed")
    first = T.builder_module(keys[0])
    start = first.export_weights(first.build(fitted, device="cpu", seed=recipe.seed))
    log(f"every framework starts from {fw_registry.FRAMEWORKS[keys[0]].label}'s draw with seed {recipe.seed}")
    histories = {}
    for key in keys:
        run = dataclasses.replace(recipe, framework=key)
        histories[key] = T.train(spec, run, run_dir(out, run), data_dir=data_dir, download=download,
                                 progress=progress, log=log, initial_weights=start)
    path = overlay_path(out, recipe)
    atomic_write(path, lambda tmp: curves.plot_overlay(histories, tmp, title=_title(recipe)))
    log(f"overlay of the {len(histories)} runs: {path}")
    return histories


def _title(recipe: T.Recipe) -> str:
    return (f"{recipe.variant} on {recipe.data}{f' (first {recipe.limit})' if recipe.limit else ''}: "
            f"{recipe.optimizer} lr {recipe.lr:g}, batch {recipe.batch}, {recipe.resize}x{recipe.resize}, "
            f"seed {recipe.seed}, same start and batch order")


def evaluate_all(spec: Spec, weights: str | os.PathLike, *, log: Callable[[str], None] = print, **options) -> dict:
    """``train.evaluate_checkpoint`` of ``spec``'s network in every installed framework:
    {"frameworks": {key: result}, "left_out": [...]}."""
    notes = []
    keys = available(list(fw_registry.FRAMEWORKS), notes.append, training=False)
    for note in notes:
        log(note)
    if not keys:
        raise T.TrainError("evaluate --framework all: no framework is installed")
    results = {key: T.evaluate_checkpoint(spec, key, weights, **options) for key in keys}
    first = results[keys[0]]
    accuracies = [r["accuracy"] for r in results.values()]
    return {"weights": str(weights), "variant": first["variant"], "data": first["data"], "resize": first["resize"],
            "examples": first["examples"], "frameworks": results, "left_out": notes,
            "accuracy_spread": max(accuracies) - min(accuracies)}


def render_table(result: dict) -> str:
    """One row per framework: accuracy, loss, and each one's distance from the first."""
    rows = list(result["frameworks"].items())
    first = rows[0][1]
    lines = [f"{result['variant']} on {result['data']} test ({result['examples']} examples, "
             f"{result['resize']}x{result['resize']}), weights {result['weights']}",
             f"{'framework':<14} {'device':<8} {'accuracy':>10} {'loss':>12} {'acc - first':>12} {'loss - first':>13}"]
    for key, r in rows:
        lines.append(f"{fw_registry.FRAMEWORKS[key].label:<14} {r['device']:<8} {r['accuracy']:>10.6f} "
                     f"{r['loss']:>12.6f} {r['accuracy'] - first['accuracy']:>12.1e} {r['loss'] - first['loss']:>13.1e}")
    return "\n".join(lines) + "\n"
