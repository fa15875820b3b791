"""The training recipe: every choice that decides a ``train`` run (d2l's by default), checked once.

:class:`Recipe` is what ``train`` runs and what each checkpoint's .json records (``$.recipe``); read back from a file,
every field is checked for its type first (:func:`check_fields`), so a damaged file is one line naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import shared_spec

from . import frameworks as fw_registry

OPTIMIZERS = ("sgd", "adam")
#: the variant a data set trains when none is named: d2l's network (d2l's recipe) for the real data sets; for the
#: synthetic set torchvision's GoogLeNet (BatchNorm), which learns it within an epoch at ``--resize 32 --batch 32``,
#: where d2l's network (no BatchNorm) stays at chance for the quick demo's 3 epochs (loss 2.30 after 126 steps)
DEFAULT_VARIANTS = {"synthetic": "googlenet"}
DEFAULT_LR = {"sgd": 0.1, "adam": 0.001}  # at d2l's batch 128; see default_lr


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
    check_fields(values, RECIPE_SCHEMA, source, "$.recipe")


def check_fields(values, schema: dict, source: str, where: str) -> None:
    """``values`` (a part of a checkpoint's .json, at ``where``) against ``schema``: a one-line TrainError naming
    ``source`` and the field."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(values))
    if error is not None:
        where += "".join(f".{part}" for part in error.absolute_path)
        raise TrainError(f"{source}: {where}: {error.message[:120]}")
