"""Checkpoints: what ``train`` writes after each epoch, and reading it back for ``--resume`` and ``evaluate``.

``epoch_K.safetensors`` (the suite's weight format: neutral layout, any framework loads it) with ``epoch_K.json``
beside it: the format, framework, epoch, step count, the recipe, the spec train was given (:class:`SpecRequest`)
and the history; the optimizer's own state where it has one; the same again as ``last.*``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import shared_spec
from shared_spec import weights as W
from shared_spec.files import atomic_write

from .recipe import Recipe, TrainError, check_fields

CHECKPOINT_FORMAT = "googlenet-suite/checkpoint-v1"


def sidecar(weights_path: str | os.PathLike) -> Path:
    """``epoch_3.safetensors`` -> ``epoch_3.json`` (epoch, step count, recipe, spec, history)."""
    return Path(weights_path).with_suffix(".json")


@dataclass(frozen=True, slots=True)
class SpecRequest:
    """How to load a network again: ``shared_spec.load(variant, spec_file=spec_file, **overrides)``.

    A checkpoint's .json records the spec ``train`` was given (``"spec"``; not the one fitted to the data, which
    ``train.fit_to_data`` makes again), so that ``train --resume`` and ``evaluate`` rebuild it from the same file
    without ``--spec`` given again. A ``Spec`` has no JSON form of its own: its file, variant and overrides stand
    for it."""

    variant: str
    spec_file: str | None = None  # absolute; None: the built-in spec
    overrides: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, spec: shared_spec.Spec) -> "SpecRequest":
        source = Path(spec.source).resolve()
        builtin = source in {path.resolve() for path in shared_spec.BUILTIN_SPECS}
        return cls(spec.variant, None if builtin else str(source),
                   json.loads(json.dumps(dict(spec.overrides), default=list)))  # JSON's view: (H, W) as [H, W]

    def to_dict(self) -> dict:
        return {"variant": self.variant, "file": self.spec_file, "overrides": self.overrides}


#: ``"spec"`` in a checkpoint's .json (SpecRequest.to_dict); checkpoints written before it have none
SPEC_RECORD_SCHEMA = {"type": "object", "required": ["variant"], "properties": {
    "variant": {"type": "string"}, "file": {"type": ["string", "null"]}, "overrides": {"type": "object"}}}


def sidecar_fields(weights) -> dict:
    """The .json beside ``weights`` as train wrote it; {} for bare weights (none, unreadable, not an object)."""
    try:
        meta = json.loads(sidecar(weights).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def checkpoint_spec(weights: str | os.PathLike, *, variant: str | None = None, spec_file=None,
                    option: str = "--weights") -> SpecRequest:
    """The spec to load for the checkpoint ``weights``: the one its .json records, else the variant its weight file
    names (d2l when none) in the built-in spec. ``variant`` and ``spec_file`` given win; a variant given names a
    variant of ``spec_file`` or of the built-in spec, as in every command, so the recorded file and overrides go
    with the recorded variant only."""
    path = Path(weights)
    try:
        if not path.is_file():
            raise W.WeightsError(f"{path}: no such weight file")
        _, meta = W.read_header(path)
        W.check_metadata(meta, source=str(path))
    except W.WeightsError as exc:
        raise TrainError(f"{option}: {exc}") from None
    record = sidecar_fields(path).get("spec")
    if record is None:
        recorded = SpecRequest(meta.get("variant") or Recipe().variant)
    else:
        check_fields(record, SPEC_RECORD_SCHEMA, f"{option}: {sidecar(path)}", "$.spec")
        recorded = SpecRequest(record["variant"], record.get("file"), record.get("overrides") or {})
    if variant and variant != recorded.variant:
        return SpecRequest(variant, spec_file)
    return dataclasses.replace(recorded, spec_file=spec_file or recorded.spec_file)


def save_checkpoint(out: Path, trainer, mod, recipe: Recipe, epoch: int, steps: int, history: list[dict], *,
                    spec: SpecRequest) -> Path:
    """``epoch_K.safetensors`` (the builder's ``save_weights``: neutral layout, any framework loads it),
    ``epoch_K.json`` beside it (with ``spec``, the network as train was given it), the optimizer's own state where
    it has one, and the same again as ``last.*``."""
    for stem in (f"epoch_{epoch}", "last"):
        weights = out / f"{stem}.safetensors"
        mod.save_weights(trainer.model, weights)  # atomic (shared_spec.weights.save_weights)
        optimizer_file = f"{stem}.optimizer{trainer.optimizer_suffix}" if trainer.optimizer_suffix else None
        if optimizer_file:
            atomic_write(out / optimizer_file, trainer.save_optimizer)
        meta = {"format": CHECKPOINT_FORMAT, "framework": recipe.framework, "epoch": epoch, "steps": steps,
                "weights": weights.name, "optimizer_state": optimizer_file, "recipe": recipe.to_dict(),
                "spec": spec.to_dict(), "history": history}
        text = json.dumps(meta, indent=2) + "\n"
        atomic_write(sidecar(weights), lambda tmp: Path(tmp).write_text(text))
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
