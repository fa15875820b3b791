"""``googlenet-suite convert``: GoogLeNet and Inception v3 weights between the suite's format, torchvision's
``state_dict``, GluonCV's (and MXNet's model zoo's) ``.params`` and Keras's weight files of
``keras.applications.InceptionV3``, by name or by graph, never by position.

The door is :func:`convert`. The rooms:

- :mod:`.torchvision`, :mod:`.gluoncv`, :mod:`.keras`: each format's names for the suite's weight keys, per
  family (framework-free);
- :mod:`.networks`: which variant a library's file holds, and what differs when the weights go into another;
- :mod:`.files`: each format's files read and written (the framework's IO lives in its ``impl_X.checkpoints``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

import shared_spec
from shared_spec import InputError
from shared_spec import weights as W

from ..console import check_output
from . import gluoncv, networks, torchvision
from .files import Arrays, names, read_arrays, short, write_weights
from .networks import family

FORMATS = ("suite", "torchvision", "gluoncv", "keras")
FAMILY_LABELS = {"googlenet": "GoogLeNet", "inception-v3": "Inception v3"}
FAMILY_DEFAULTS = {"googlenet": "googlenet", "inception-v3": "inception-v3"}  # a variant of each, for hints
GLUONCV_VARIANT = gluoncv.VARIANTS["googlenet"]  # GluonCV's model zoo network, in the built-in spec
KERAS_VARIANT = networks.LIBRARY["keras"][0]  # the keras format's network, the default variant for it
TRACKED = torchvision.TRACKED


def torchvision_names(spec: shared_spec.Spec) -> dict[str, str]:
    """Suite weight key -> torchvision ``state_dict`` key, in ``spec.weight_shapes()`` order."""
    return torchvision.names(spec, family(spec))


def torchvision_counters(spec: shared_spec.Spec) -> list[str]:
    """The ``num_batches_tracked`` keys of torchvision's module for ``spec``."""
    return torchvision.counters(spec, family(spec))


def gluoncv_names(spec: shared_spec.Spec) -> dict[str, str]:
    """Suite weight key -> GluonCV parameter name without the instance prefix (``Mixed_3a_conv0_weight``)."""
    return gluoncv.names(spec, family(spec))


def gluoncv_block_names(spec: shared_spec.Spec) -> dict[str, str]:
    """Suite weight key -> the block path ``net.save_parameters()`` writes (``conv1.0.weight``)."""
    return gluoncv.block_names(spec, family(spec))


def check_gluoncv(spec: shared_spec.Spec, option: str = "--to gluoncv") -> None:
    gluoncv.check_variant(spec, family(spec), option)


# --------------------------------------------------------------------------- reading


def _check_arrays(path, found: Arrays, spec: shared_spec.Spec, fam: str) -> dict[str, np.ndarray]:
    """The file's arrays as suite weights for ``spec``: every expected name, no other, right shapes, float32."""
    fmt, arrays, shapes = found.naming.split("-")[0], found.arrays, spec.weight_shapes()
    mapped = names(found.naming, spec, fam, found.layout)
    ignored = set(torchvision.counters(spec, fam)) if fmt == "torchvision" else set()
    theirs = {name: key for key, name in mapped.items()}
    what = f"{fmt} {FAMILY_LABELS[fam]}"
    present = [name for name in mapped.values() if name in arrays]
    if mapped and len(present) < len(mapped) / 2:  # most names missing: another architecture
        strangers = [k for k in arrays if k not in theirs and k not in ignored]
        first = next(iter(mapped.values()))
        raise W.WeightsError(f"{path}: not a {what} checkpoint for variant {spec.variant!r}: "
                             f"{len(mapped) - len(present)} of its {len(mapped)} keys are missing (no {first!r})"
                             + (_other_family(found, fam) or
                                (f"; the file has e.g. {short(strangers[0])}" if strangers else "")))
    for key, name in mapped.items():
        if name not in arrays:
            raise W.WeightsError(f"{path}: missing key {name!r} (expected shape {shapes[key]}) for variant "
                                 f"{spec.variant!r}")
    extra = [k for k in arrays if k not in theirs and k not in ignored]
    if extra:
        raise W.WeightsError(f"{path}: unexpected key {short(extra[0])}"
                             f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}: not in a {what} "
                             f"for variant {spec.variant!r}")
    out = {}
    for key, name in mapped.items():
        value = np.asarray(arrays[name])
        if tuple(value.shape) != shapes[key]:
            head = key.endswith(("fc.weight", "fc.bias", "fc2.weight", "fc2.bias"))
            raise W.WeightsError(f"{path}: key {name!r} has shape {tuple(value.shape)}, expected {shapes[key]} "
                                 f"for variant {spec.variant!r}" + (f" ({spec.num_classes} classes)" if head else ""))
        if value.dtype != np.float32:
            raise W.WeightsError(f"{path}: key {name!r} has dtype {value.dtype}; expected float32")
        out[key] = value
    return out


def _other_family(found: Arrays, fam: str) -> str:
    """'; the file holds Inception v3 weights: ...' when most of another family's names are there."""
    for other, variant in FAMILY_DEFAULTS.items():
        if other == fam or found.naming == "keras":
            continue
        theirs = set(names(found.naming, shared_spec.load(variant, aux_logits=True), other).values())
        if len(theirs & set(found.arrays)) >= len(theirs) / 2:
            return f"; the file holds {FAMILY_LABELS[other]} weights: name its variant (e.g. {variant})"
    return ""


def _expected(found: Arrays, spec: shared_spec.Spec, fam: str) -> set[str]:
    """The names a file holds for ``spec`` (torchvision's counters where the file has them)."""
    counters = set(torchvision.counters(spec, fam)) & set(found.arrays) if found.naming == "torchvision" else set()
    return set(names(found.naming, spec, fam, found.layout).values()) | counters


def read_weights(path: Path, found: Arrays, spec: shared_spec.Spec, spec_with_aux: shared_spec.Spec | None,
                 fam: str, notes: list[str]) -> dict[str, np.ndarray]:
    """Suite weights for ``spec`` from ``found``. A file that also holds the aux heads (torchvision's pretrained
    files always do) converts to a variant with aux off by dropping them, with a note in ``notes``. The file
    is checked against the variant it fits best (with or without its aux heads), so that a wrong key is named
    as itself, not as the aux heads the other reading would leave over."""
    present = set(found.arrays)
    candidates = [spec] + ([spec_with_aux] if spec_with_aux is not None and not spec.aux_logits else [])
    target = min(candidates, key=lambda candidate: len(_expected(found, candidate, fam) ^ present))
    weights = _check_arrays(path, found, target, fam)
    if target is not spec:
        dropped = sorted({key.split(".")[0] for key in weights if key not in spec.weight_shapes()})
        notes.append(f"note: {path} holds {', '.join(dropped)} weights; variant {spec.variant!r} has aux off: "
                     f"dropped them (--aux keeps them)")
        weights = {key: weights[key] for key in spec.weight_shapes()}
    return weights


# --------------------------------------------------------------------------- which network


def _file_classes(found: Arrays, spec: shared_spec.Spec, fam: str) -> int | None:
    """The classes of a torchvision-format file (its classifier's rows), to tell pytorch-fid's file apart."""
    fc = torchvision.names(spec, fam).get("fc.weight")
    value = found.arrays.get(fc) if fc else None
    return int(value.shape[0]) if value is not None and np.ndim(value) == 2 else None


@dataclass(frozen=True, slots=True)
class _Side:
    """One end of a conversion in a library's format: the variant its file holds (``held``) and how the variant
    converted for compares with it (``reading``: the file is the source, so ``held`` is the comparison's source)."""

    option: str
    fmt: str
    held: str
    comparison: networks.Comparison
    reading: bool

    def refusal(self) -> str:
        """One line: the network the file holds, what the variant asked for computes otherwise, the fit."""
        label, c = networks.LABELS[self.held], self.comparison
        if self.reading:
            head = (f"{self.option} {self.fmt}: the file holds the weights of {label} (variant {self.held!r}); "
                    f"variant {c.target!r} computes something else with them")
            fit = f"convert with variant {self.held!r}"
        else:
            head = (f"{self.option} {self.fmt}: {label} is variant {self.held!r}; the weights of variant "
                    f"{c.source!r} compute something else there")
            fit = f"the variant that fits it: {self.held!r}"
        return f"{head}: {'; '.join(c.differs)}; {fit}, or pass --allow-mismatch"


def _networks(found: Arrays, from_format: str, to_format: str, spec: shared_spec.Spec, fam: str, allow: bool,
              notes: list[str]) -> tuple[shared_spec.Spec, shared_spec.Spec]:
    """(the variant the source file holds, the variant the written file will hold). For Inception v3, each
    library's file is its own network's: one that computes something else than ``spec`` is refused (one line,
    the variant that fits named) unless ``allow``; then the notes say what differs."""
    if fam != "inception-v3":
        return spec, spec
    source = target = spec
    sides = []
    if from_format in networks.LIBRARY:
        held = networks.file_variant(from_format, _file_classes(found, spec, fam))
        source = spec if held == spec.variant else networks.like(held, spec)
        sides.append(_Side("--from", from_format, held, networks.compare(source, spec), reading=True))
    if to_format in networks.LIBRARY:
        held = networks.library_variant(to_format, spec)
        target = spec if held == spec.variant else networks.like(held, spec)
        sides.append(_Side("--to", to_format, held, networks.compare(spec, target), reading=False))
    for end, option, fmt in ((source, "--from", from_format), (target, "--to", to_format)):
        if spec.aux_logits and not end.has_aux:
            raise InputError(f"{option} {fmt}: {networks.LABELS[end.variant]} has no aux head; convert without --aux")
    for side in sides:
        c = side.comparison
        notes.extend(f"note: {text}" for text in c.same_here)
        if c.differs and not allow:
            raise InputError(side.refusal())
        if c.differs:
            notes.append(f"note: --allow-mismatch: {c.target} computes something else than {c.source} with these "
                         f"weights: {'; '.join(c.differs)}")
    return source, target


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True, slots=True)
class Converted:
    """What :func:`convert` wrote, and the notes on what it changed on the way (stderr lines)."""

    output: Path
    to_format: str
    src: Path
    from_format: str
    spec: shared_spec.Spec
    tensors: int
    notes: tuple[str, ...]

    def summary(self) -> str:
        spec = self.spec
        return (f"wrote {self.output}: {self.to_format} format, {spec.variant} "
                f"(aux {'on' if spec.aux_logits else 'off'}{', transform_input on' if spec.transform_input else ''}), "
                f"{self.tensors} tensors from {self.src} ({self.from_format} format)")


def _with_aux(spec: shared_spec.Spec, given: shared_spec.Spec | None, source: shared_spec.Spec):
    """The source variant with its aux head on, when it has one off: a file that holds the head converts."""
    if source is spec:
        return given
    if not source.has_aux or source.aux_logits:
        return None
    overrides = {k: v for k, v in source.overrides.items() if k != "input_size"}  # the aux head needs 299x299
    return shared_spec.load(source.variant, **{**overrides, "aux_logits": True})


def convert(spec: shared_spec.Spec, *, src: str | Path, output: str | Path, from_format: str, to_format: str,
            spec_with_aux: shared_spec.Spec | None = None, allow_mismatch: bool = False) -> Converted:
    """Convert the weight file ``src`` (``from_format``) for ``spec`` into ``output`` (``to_format``); with
    ``spec_with_aux`` (``spec`` with its aux heads on), a file that holds them converts to aux-off ``spec``.
    Inception v3 weights that would compute something else in the network they go into are refused unless
    ``allow_mismatch``. Everything is checked before anything is written; ``src`` is only read."""
    src, output = Path(src), Path(output)
    for option, fmt in (("--from", from_format), ("--to", to_format)):
        if fmt not in FORMATS:
            raise InputError(f"{option}: unknown format {short(fmt)}; expected one of {', '.join(FORMATS)}")
    check_output(output)
    if output.resolve() == src.resolve():
        raise InputError(f"--output {output}: is the source file; write the conversion to another file")
    fam = family(spec)
    if "keras" in (from_format, to_format) and fam != "inception-v3":
        option = "--from" if from_format == "keras" else "--to"
        raise InputError(f"{option} keras: keras.applications has no {FAMILY_LABELS[fam]}; the keras format holds "
                         f"keras.applications.InceptionV3 (variant {KERAS_VARIANT!r})")
    if fam == "googlenet" and "gluoncv" in (from_format, to_format):
        check_gluoncv(spec, "--to gluoncv" if to_format == "gluoncv" else "--from gluoncv")
    notes: list[str] = []
    reading = networks.like(KERAS_VARIANT, spec) if from_format == "keras" else spec
    found = read_arrays(from_format, src, reading, fam, notes)
    source, target = _networks(found, from_format, to_format, spec, fam, allow_mismatch, notes)
    weights = read_weights(src, found, source, _with_aux(spec, spec_with_aux, source), fam, notes)
    if from_format == "suite" and found.meta.get("variant") not in (None, spec.variant):
        raise W.WeightsError(f"{src}: weights are for variant {found.meta['variant']!r}, not {spec.variant!r}")
    if source is not target:
        weights, done = networks.adapt(weights, source, target)
        notes.extend(f"note: {line}" for line in done)
    provenance = {"source_format": from_format, "source_file": str(src)}
    if found.meta.get("source_format"):  # a file converted before: keep where it came from first
        provenance["converted_from"] = json.dumps({k: found.meta[k] for k in ("source_format", "source_file")
                                                   if k in found.meta})
    write_weights(to_format, output, weights, target, fam, provenance)
    return Converted(output, to_format, src, from_format, target, len(weights), tuple(notes))


__all__ = ["Converted", "FORMATS", "GLUONCV_VARIANT", "KERAS_VARIANT", "TRACKED", "check_gluoncv", "convert", "family",
           "gluoncv_block_names", "gluoncv_names", "read_weights", "torchvision_counters", "torchvision_names"]
