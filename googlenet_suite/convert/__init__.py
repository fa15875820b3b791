"""``googlenet-suite convert``: GoogLeNet weights between the suite's format, torchvision's ``state_dict`` and
GluonCV's ``.params``, by name, never by position.

The key mapping is here and needs no framework; reading and writing a framework's own file format lives in
that framework's package (``impl_torch.checkpoints``: ``torch.load(weights_only=True)`` / ``torch.save``;
``impl_mxnet.checkpoints``: ``mx.nd.load`` / ``mx.nd.save``). safetensors files are read and written with
``safetensors.numpy``.

Names (facts from torchvision's ``models/googlenet.py`` and GluonCV 0.10's ``model_zoo/googlenet.py``):

- torchvision: module paths. A conv unit is a ``BasicConv2d`` (``.conv``, ``.bn``); an Inception branch of
  one conv unit is that unit (``inception3a.branch1``), a longer one an ``nn.Sequential`` indexed from 0, the
  pool counting (``inception3a.branch4.1`` is the 1x1 after the pool); BN ``weight``/``bias`` are
  gamma/beta, and every BN has a ``num_batches_tracked`` counter (ignored on reading, written as 0).
- GluonCV (MXNet 1.x, name scopes): a counter per class and scope. Top-level convs, BNs and denses are
  ``convN``/``batchnormN``/``denseN`` in creation order (conv1, conv2, conv3, then aux1's and aux2's conv;
  aux1 fc1, fc2, aux2 fc1, fc2, then the classifier), each Inception block has its own scope
  ``Mixed_3a_`` counting its branches' convs in order; parameters ``_weight``, ``_gamma``, ``_beta``,
  ``_running_mean``, ``_running_var``, ``_bias``. A file may carry the instance prefix ``googlenetN_``
  (``collect_params().save()``; N counts instances: any N is accepted, one for all keys) or not
  (``save_params``' legacy form, which ``GoogLeNet.load_parameters`` restores for any instance: written so).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

import shared_spec
from shared_spec import InputError
from shared_spec import weights as W
from shared_spec.spec import BN_KEYS, Aux, Concat, Conv, Dense

from . import frameworks as fw_registry
from .console import check_output, write_file

FORMATS = ("suite", "torchvision", "gluoncv")
TORCH_BN = {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"}
TRACKED = "num_batches_tracked"
_GLUON_PREFIX = re.compile(r"^googlenet\d+_")
DDP_PREFIX = "module."  # torch.nn.parallel.DistributedDataParallel / DataParallel wrap the model as .module
GLUONCV_VARIANT = "googlenet-gluoncv"  # GluonCV's model zoo network, in the built-in spec
_NOT_NUMPY = {"BF16", "F8_E4M3", "F8_E5M2"}  # safetensors dtypes numpy has no type for


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- name maps (suite key -> theirs)


def torchvision_names(spec: shared_spec.Spec) -> dict[str, str]:
    """Suite weight key -> torchvision ``state_dict`` key, in ``spec.weight_shapes()`` order."""
    modules: dict[str, str] = {}  # spec layer name -> torchvision module path

    def visit(layers):
        for layer in layers:
            if isinstance(layer, Concat):
                for branch in layer.branches:
                    for i, inner in enumerate(branch.layers):
                        modules[inner.name] = branch.name if len(branch.layers) == 1 else f"{branch.name}.{i}"
            elif isinstance(layer, Aux):
                visit(layer.layers)
            else:
                modules[layer.name] = layer.name

    visit(spec.layers)
    names = {}
    for layer in spec.walk():
        module = modules.get(layer.name)
        if isinstance(layer, Conv):
            names[f"{layer.name}.conv.weight"] = f"{module}.conv.weight"
            if layer.bias:
                names[f"{layer.name}.conv.bias"] = f"{module}.conv.bias"
            if layer.norm is not None:
                for key in BN_KEYS:
                    names[f"{layer.name}.bn.{key}"] = f"{module}.bn.{TORCH_BN[key]}"
        elif isinstance(layer, Dense):
            names[f"{layer.name}.weight"] = f"{module}.weight"
            if layer.bias:
                names[f"{layer.name}.bias"] = f"{module}.bias"
    return {key: names[key] for key in spec.weight_shapes()}


def torchvision_counters(spec: shared_spec.Spec) -> list[str]:
    """The ``num_batches_tracked`` keys of torchvision's module for ``spec``."""
    names = torchvision_names(spec)
    return [names[key].rpartition(".")[0] + f".{TRACKED}" for key in names if key.endswith(".bn.gamma")]


def gluoncv_names(spec: shared_spec.Spec) -> dict[str, str]:
    """Suite weight key -> GluonCV parameter name without the instance prefix (``Mixed_3a_conv0_weight``)."""
    names: dict[str, str] = {}

    def visit(layers, scope: str, counters: dict[str, int]):
        for layer in layers:
            if isinstance(layer, Concat):
                if not layer.name.startswith("inception"):
                    raise W.WeightsError(f"{spec.variant}: concat {layer.name!r} has no GluonCV name "
                                         f"(GluonCV names inceptionNX blocks Mixed_NX)")
                inner = f"{scope}Mixed_{layer.name[len('inception'):]}_"
                block_counters: dict[str, int] = {}
                for branch in layer.branches:
                    visit(branch.layers, inner, block_counters)
            elif isinstance(layer, Aux):
                visit(layer.layers, scope, counters)
            elif isinstance(layer, (Conv, Dense)):
                def take(kind: str) -> str:
                    n = counters.get(kind, 0)
                    counters[kind] = n + 1
                    return f"{scope}{kind}{n}_"

                if isinstance(layer, Conv):
                    conv = take("conv")
                    names[f"{layer.name}.conv.weight"] = conv + "weight"
                    if layer.bias:
                        names[f"{layer.name}.conv.bias"] = conv + "bias"
                    if layer.norm is not None:
                        bn = take("batchnorm")
                        for key in BN_KEYS:
                            names[f"{layer.name}.bn.{key}"] = bn + key
                else:
                    dense = take("dense")
                    names[f"{layer.name}.weight"] = dense + "weight"
                    if layer.bias:
                        names[f"{layer.name}.bias"] = dense + "bias"

    visit(spec.layers, "", {})
    return {key: names[key] for key in spec.weight_shapes()}


#: GluonCV's aux head as a HybridSequential: AvgPool2D, basic conv, Flatten, Dense, Activation, Dropout, Dense
_GLUON_AUX_INDEX = {"conv": 1, "fc1": 3, "fc2": 6}


def gluoncv_block_names(spec: shared_spec.Spec) -> dict[str, str]:
    """Suite weight key -> the structural name ``net.save_parameters()`` writes in MXNet 1.x (block paths:
    ``conv1.0.weight``, ``inception3a.1.1.1.gamma`` (branch 2, second conv unit, its BN), ``aux1.3.weight``,
    ``output.weight``). Each conv unit is a HybridSequential [Conv2D, BatchNorm, Activation]."""
    names: dict[str, str] = {}

    def conv_unit(layer: Conv, path: str) -> None:
        names[f"{layer.name}.conv.weight"] = f"{path}.0.weight"
        if layer.bias:
            names[f"{layer.name}.conv.bias"] = f"{path}.0.bias"
        if layer.norm is not None:
            for key in BN_KEYS:
                names[f"{layer.name}.bn.{key}"] = f"{path}.1.{key}"

    def dense(layer: Dense, path: str) -> None:
        names[f"{layer.name}.weight"] = f"{path}.weight"
        if layer.bias:
            names[f"{layer.name}.bias"] = f"{path}.bias"

    for layer in spec.layers:
        if isinstance(layer, Concat):
            for b, branch in enumerate(layer.branches):
                for i, inner in enumerate(branch.layers):
                    if isinstance(inner, Conv):
                        conv_unit(inner, f"{layer.name}.{b}.{i}")
        elif isinstance(layer, Aux):
            for inner in layer.layers:
                short = inner.name.rpartition(".")[2]
                if isinstance(inner, (Conv, Dense)) and short not in _GLUON_AUX_INDEX:
                    raise W.WeightsError(f"{spec.variant}: aux layer {inner.name!r} has no GluonCV name")
                if isinstance(inner, Conv):
                    conv_unit(inner, f"{layer.name}.{_GLUON_AUX_INDEX[short]}")
                elif isinstance(inner, Dense):
                    dense(inner, f"{layer.name}.{_GLUON_AUX_INDEX[short]}")
        elif isinstance(layer, Conv):
            conv_unit(layer, layer.name)
        elif isinstance(layer, Dense):
            dense(layer, "output" if layer.name == "fc" else layer.name)
    return {key: names[key] for key in spec.weight_shapes()}


def _names(fmt: str, spec: shared_spec.Spec) -> dict[str, str]:
    if fmt == "torchvision":
        return torchvision_names(spec)
    if fmt == "gluoncv":
        return gluoncv_names(spec)
    if fmt == "gluoncv-blocks":
        return gluoncv_block_names(spec)
    return {key: key for key in spec.weight_shapes()}


# --------------------------------------------------------------------------- reading


def _strip_gluon_prefix(path, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arg:``/``aux:`` (mx.model checkpoints) and one ``googlenetN_`` instance prefix, if every key has it."""
    plain = {(k[4:] if k.startswith(("arg:", "aux:")) else k): v for k, v in arrays.items()}
    prefixes = {m.group() if (m := _GLUON_PREFIX.match(k)) else "" for k in plain}
    if len(prefixes) > 1:
        shown = sorted(prefixes)
        raise W.WeightsError(f"{path}: parameter names mix instance prefixes {', '.join(repr(p) for p in shown[:3])}; "
                             f"expected one googlenetN_ prefix on every name, or none")
    prefix = prefixes.pop() if prefixes else ""
    return {k[len(prefix):]: v for k, v in plain.items()}


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    header, _ = W.read_header(path)  # damaged or truncated headers: one line naming the file
    for key, entry in header.items():  # numpy holds no bfloat16 or float8: named here, not a reader's error
        if entry["dtype"] in _NOT_NUMPY or entry["dtype"] not in W.SAFETENSORS_DTYPES:
            name = W.SAFETENSORS_DTYPES.get(entry["dtype"], _short(entry["dtype"]))
            raise W.WeightsError(f"{path}: key {_short(key)} has dtype {name}; expected float32")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise W.WeightsError(f"{path}: not a readable safetensors file: {first}") from None


def _strip_module_prefix(path, arrays: dict[str, np.ndarray], notes: list[str]) -> dict[str, np.ndarray]:
    """A state_dict of a model wrapped in DistributedDataParallel or DataParallel: every key ``module.``..."""
    if not arrays or not all(key.startswith(DDP_PREFIX) for key in arrays):
        return arrays
    notes.append(f"note: {path}: every key starts with {DDP_PREFIX!r} (the state_dict of a DistributedDataParallel "
                 f"or DataParallel model): read without it")
    return {key[len(DDP_PREFIX):]: value for key, value in arrays.items()}


def _gluon_blocks(path, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``save_parameters``' structural names: GluonCV's classifier is both ``head.2`` and ``output`` (one Dense
    registered twice), saved under both names unless deduplicated; keep ``output``."""
    out = dict(arrays)
    for suffix in ("weight", "bias"):
        twin = out.pop(f"head.2.{suffix}", None)
        if twin is None:
            continue
        if f"output.{suffix}" not in out:
            out[f"output.{suffix}"] = twin
        elif not np.array_equal(twin, out[f"output.{suffix}"]):
            raise W.WeightsError(f"{path}: 'head.2.{suffix}' and 'output.{suffix}' (one GluonCV layer) differ")
    return out


def read_arrays(fmt: str, path: Path, notes: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str], str]:
    """A file of format ``fmt`` as ``(name -> array, metadata, naming)``, with the format's own names;
    ``naming`` tells GluonCV's two forms apart (``gluoncv``: parameter names; ``gluoncv-blocks``: paths)."""
    if not path.is_file():
        raise W.WeightsError(f"{path}: no such file")
    if fmt == "suite":
        arrays, meta = W.load_weights(path)
        return arrays, meta, fmt
    if fmt == "torchvision":
        arrays, meta = (_read_safetensors(path) if path.suffix == ".safetensors"
                        else _framework("torch", "torchvision").read_state_dict(path))
        return _strip_module_prefix(path, arrays, notes), meta, fmt
    arrays = _framework("mxnet", "gluoncv").read_params(path)
    if arrays and all("." in key for key in arrays):
        return _gluon_blocks(path, arrays), {}, "gluoncv-blocks"
    return _strip_gluon_prefix(path, arrays), {}, fmt


def _framework(key: str, fmt: str):
    try:
        fw_registry.load(key)
    except fw_registry.FrameworkMissing as exc:
        raise InputError(f"convert: the {fmt} format needs {exc}") from None
    return fw_registry.part(key, "checkpoints")


def _check_arrays(path, fmt: str, arrays: Mapping[str, np.ndarray], spec: shared_spec.Spec,
                  names: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The file's arrays as suite weights for ``spec``: every expected name, no other, right shapes, float32."""
    shapes = spec.weight_shapes()
    ignored = set(torchvision_counters(spec)) if fmt == "torchvision" else set()
    theirs = {name: key for key, name in names.items()}
    present = [name for name in names.values() if name in arrays]
    if names and len(present) < len(names) / 2:  # most names missing: another architecture
        strangers = [k for k in arrays if k not in theirs and k not in ignored]
        first = next(iter(names.values()))
        raise W.WeightsError(f"{path}: not a {fmt.split('-')[0]} GoogLeNet checkpoint for variant {spec.variant!r}: "
                             f"{len(names) - len(present)} of its {len(names)} keys are missing (no {first!r})"
                             + (f"; the file has e.g. {_short(strangers[0])}" if strangers else ""))
    for key, name in names.items():
        if name not in arrays:
            raise W.WeightsError(f"{path}: missing key {name!r} (expected shape {shapes[key]}) for variant "
                                 f"{spec.variant!r}")
    extra = [k for k in arrays if k not in theirs and k not in ignored]
    if extra:
        raise W.WeightsError(f"{path}: unexpected key {_short(extra[0])}"
                             f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}: not in a {fmt.split('-')[0]} "
                             f"GoogLeNet for variant {spec.variant!r}")
    out = {}
    for key, name in names.items():
        value = np.asarray(arrays[name])
        if tuple(value.shape) != shapes[key]:
            raise W.WeightsError(f"{path}: key {name!r} has shape {tuple(value.shape)}, expected {shapes[key]} "
                                 f"for variant {spec.variant!r}" + (f" ({spec.num_classes} classes)"
                                                                    if key.endswith(("fc.weight", "fc.bias", "fc2.weight", "fc2.bias")) else ""))
        if value.dtype != np.float32:
            raise W.WeightsError(f"{path}: key {name!r} has dtype {value.dtype}; expected float32")
        out[key] = value
    return out


def _expected(fmt: str, spec: shared_spec.Spec, present: set[str]) -> set[str]:
    """The names a file of ``fmt`` holds for ``spec`` (torchvision's counters where the file has them)."""
    counters = set(torchvision_counters(spec)) & present if fmt == "torchvision" else set()
    return set(_names(fmt, spec).values()) | counters


def read_weights(fmt: str, path: Path, spec: shared_spec.Spec, spec_with_aux: shared_spec.Spec | None,
                 notes: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Suite weights for ``spec`` from ``path``. A file that also holds the aux heads (torchvision's pretrained
    file always does) converts to a variant with aux off by dropping them, with a note in ``notes``. The file
    is checked against the variant it fits best (with or without its aux heads), so that a wrong key is named
    as itself, not as the aux heads the other reading would leave over."""
    arrays, meta, fmt = read_arrays(fmt, path, notes)
    present = set(arrays)
    candidates = [spec] + ([spec_with_aux] if spec_with_aux is not None and not spec.aux_logits else [])
    target = min(candidates, key=lambda candidate: len(_expected(fmt, candidate, present) ^ present))
    weights = _check_arrays(path, fmt, arrays, target, _names(fmt, target))
    if target is not spec:
        dropped = sorted({key.split(".")[0] for key in weights if key not in spec.weight_shapes()})
        notes.append(f"note: {path} holds {', '.join(dropped)} weights; variant {spec.variant!r} has aux off: "
                     f"dropped them (--aux keeps them)")
        weights = {key: weights[key] for key in spec.weight_shapes()}
    return weights, meta


def check_gluoncv(spec: shared_spec.Spec, option: str = "--to gluoncv") -> None:
    """GluonCV's model zoo has one GoogLeNet: a variant goes to or from its ``.params`` only when its weights
    are that network's, key for key and shape for shape (``googlenet`` and ``googlenet-gluoncv`` are)."""
    def gluoncv(**overrides) -> dict[str, tuple[int, ...]]:  # the built-in spec's, whatever --spec names
        return shared_spec.load(GLUONCV_VARIANT, **overrides).weight_shapes()

    want = gluoncv(num_classes=spec.num_classes, in_channels=spec.in_channels, aux_logits=spec.aux_logits)
    got = spec.weight_shapes()
    if got == want:
        return
    key = next((k for k in got if want.get(k) != got[k]), None) or next(k for k in want if k not in got)
    why = (f"GluonCV's has no key {key!r}" if key not in want else f"it has no key {key!r}" if key not in got
           else f"key {key!r} has shape {got[key]}, GluonCV's {want[key]}")
    builtin = [name for name in shared_spec.list_variants() if shared_spec.load(name).weight_shapes() == gluoncv()]
    raise InputError(f"{option}: GluonCV has no model for variant {spec.variant!r} ({why}); "
                     f"the variants whose weights are GluonCV's GoogLeNet: {', '.join(builtin)}")


# --------------------------------------------------------------------------- writing


def _torchvision_order(keys: list[str]) -> list[str]:
    """torchvision registers aux1 and aux2 after inception5b, before the classifier."""
    aux = [k for k in keys if k.startswith(("aux1.", "aux2."))]
    main = [k for k in keys if k not in aux]
    head = [k for k in main if k.startswith("fc.")]
    return [k for k in main if k not in head] + aux + head


def write_weights(fmt: str, path: Path, weights: Mapping[str, np.ndarray], spec: shared_spec.Spec,
                  provenance: Mapping[str, str]) -> None:
    if fmt == "suite":
        W.check_weights(spec, weights)
        write_file(path, lambda tmp: W.save_weights(tmp, weights, spec, extra=provenance))
        return
    names = _names(fmt, spec)
    arrays = {names[key]: np.ascontiguousarray(weights[key], dtype=np.float32) for key in spec.weight_shapes()}
    if fmt == "torchvision":
        for counter in torchvision_counters(spec):
            arrays[counter] = np.zeros((), dtype=np.int64)
        arrays = {key: arrays[key] for key in _torchvision_order(list(arrays))}
        meta = {**W.metadata(spec), "format": "torchvision state_dict (googlenet-suite convert)", **provenance}
        if path.suffix == ".safetensors":
            from safetensors.numpy import save_file

            write_file(path, lambda tmp: save_file(arrays, tmp, metadata=meta))
        else:
            checkpoints = _framework("torch", fmt)
            write_file(path, lambda tmp: checkpoints.write_state_dict(tmp, arrays, meta))
        return
    checkpoints = _framework("mxnet", fmt)
    write_file(path, lambda tmp: checkpoints.write_params(tmp, arrays))


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


def convert(spec: shared_spec.Spec, *, src: str | Path, output: str | Path, from_format: str, to_format: str,
            spec_with_aux: shared_spec.Spec | None = None) -> Converted:
    """Convert the weight file ``src`` (``from_format``) for ``spec`` into ``output`` (``to_format``); with
    ``spec_with_aux`` (``spec`` with its aux heads on), a file that holds them converts to aux-off ``spec``.
    Everything is checked before anything is written; ``src`` is only read."""
    src, output = Path(src), Path(output)
    for option, fmt in (("--from", from_format), ("--to", to_format)):
        if fmt not in FORMATS:
            raise InputError(f"{option}: unknown format {_short(fmt)}; expected one of {', '.join(FORMATS)}")
    check_output(output)
    if output.resolve() == src.resolve():
        raise InputError(f"--output {output}: is the source file; write the conversion to another file")
    if "gluoncv" in (from_format, to_format):
        check_gluoncv(spec, "--to gluoncv" if to_format == "gluoncv" else "--from gluoncv")
    notes: list[str] = []
    weights, meta = read_weights(from_format, src, spec, spec_with_aux, notes)
    if from_format == "suite" and meta.get("variant") not in (None, spec.variant):
        raise W.WeightsError(f"{src}: weights are for variant {meta['variant']!r}, not {spec.variant!r}")
    provenance = {"source_format": from_format, "source_file": str(src)}
    if meta.get("source_format"):  # a file converted before: keep where it came from first
        provenance["converted_from"] = json.dumps({k: meta[k] for k in ("source_format", "source_file") if k in meta})
    write_weights(to_format, output, weights, spec, provenance)
    return Converted(output, to_format, src, from_format, spec, len(weights), tuple(notes))
