"""torchvision's ``state_dict`` names for the suite's weight keys, for each family (no framework needed).

- GoogLeNet (torchvision's ``models/googlenet.py``): module paths. A conv unit is a ``BasicConv2d`` (``.conv``,
  ``.bn``); an Inception branch of one conv unit is that unit (``inception3a.branch1``), a longer one an
  ``nn.Sequential`` indexed from 0, the pool counting (``inception3a.branch4.1`` is the 1x1 after the pool).
  torchvision registers ``aux1``/``aux2`` after ``inception5b``, before the classifier.
- Inception v3 (torchvision's ``models/inception.py``, and pytorch-fid's port, which keeps its names): each conv
  unit is an attribute of its block, numbered within its branch when the branch has more than one
  (``Mixed_6e.branch7x7dbl_5``; InceptionE's split ``Mixed_7b.branch3x3_2a``/``_2b``; a branch of one conv unit
  is its name alone, ``Mixed_5b.branch_pool``); stem units and blocks are capitalised (``Conv2d_1a_3x3``,
  ``Mixed_5b``); the aux head is ``AuxLogits`` (``conv0``, ``conv1``, ``fc``), registered after ``Mixed_6e``,
  the spec's own place for it.

In both, BatchNorm ``weight``/``bias`` are gamma/beta, and every BatchNorm has a ``num_batches_tracked`` counter
(ignored on reading, written as 0).
"""

from __future__ import annotations

import shared_spec
from shared_spec.spec import Aux, Concat, Conv, Dense, weight_entries

TORCH_BN = {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"}
#: a weight's part -> its path under the module (a BasicConv2d's ``conv`` and ``bn``; a Linear is the module)
TORCH_PART = {"conv": "conv.", "bn": "bn.", "dense": ""}
TRACKED = "num_batches_tracked"
V3_HEADS = {"aux": "AuxLogits"}  # the spec's top-level names that torchvision spells otherwise


def _googlenet_modules(spec: shared_spec.Spec) -> dict[str, str]:
    """Spec layer name -> torchvision module path, GoogLeNet's scheme."""
    modules: dict[str, str] = {}

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
    return modules


def _capitalised(name: str) -> str:
    return V3_HEADS.get(name, name[:1].upper() + name[1:] if name.startswith(("conv2d_", "mixed_")) else name)


def _inception_v3_modules(spec: shared_spec.Spec) -> dict[str, str]:
    """Spec layer name -> torchvision module path, Inception v3's scheme: ``mixed_6e.branch7x7dbl.conv5`` ->
    ``Mixed_6e.branch7x7dbl_5``, ``mixed_7b.branch3x3.conv2.a.conv`` -> ``Mixed_7b.branch3x3_2a``."""
    modules: dict[str, str] = {}
    for layer in spec.layers:
        if isinstance(layer, Concat):
            for branch in layer.branches:
                units = [inner for inner in spec.walk(branch.layers) if isinstance(inner, Conv)]
                short = branch.name.rpartition(".")[2]
                for unit in units:
                    conv, *split = unit.name[len(branch.name) + 1:].split(".")  # "conv2", ["a", "conv"]
                    suffix = "" if len(units) == 1 else f"_{conv.removeprefix('conv')}{split[0] if split else ''}"
                    modules[unit.name] = f"{_capitalised(layer.name)}.{short}{suffix}"
        elif isinstance(layer, Aux):
            for inner in layer.layers:
                modules[inner.name] = f"{_capitalised(layer.name)}.{inner.name.rpartition('.')[2]}"
        else:
            modules[layer.name] = _capitalised(layer.name)
    return modules


def _googlenet_order(keys: list[str]) -> list[str]:
    """torchvision registers aux1 and aux2 after inception5b, before the classifier."""
    aux = [k for k in keys if k.startswith(("aux1.", "aux2."))]
    main = [k for k in keys if k not in aux]
    head = [k for k in main if k.startswith("fc.")]
    return [k for k in main if k not in head] + aux + head


#: family -> (spec layer name -> module path, the order torchvision's module registers its keys in)
FAMILIES = {"googlenet": (_googlenet_modules, _googlenet_order),
            "inception-v3": (_inception_v3_modules, list)}


def names(spec: shared_spec.Spec, family: str) -> dict[str, str]:
    """Suite weight key -> torchvision ``state_dict`` key, in ``spec.weight_shapes()`` order."""
    modules = FAMILIES[family][0](spec)
    out = {}
    for layer in spec.walk():
        for key, part, entry, _ in weight_entries(layer):
            out[key] = f"{modules.get(layer.name)}.{TORCH_PART[part]}{TORCH_BN.get(entry, entry)}"
    return {key: out[key] for key in spec.weight_shapes()}


def counters(spec: shared_spec.Spec, family: str) -> list[str]:
    """The ``num_batches_tracked`` keys of torchvision's module for ``spec``."""
    found = names(spec, family)
    return [found[key].rpartition(".")[0] + f".{TRACKED}" for key in found if key.endswith(".bn.beta")]


def order(keys: list[str], family: str) -> list[str]:
    return FAMILIES[family][1](keys)


__all__ = ["FAMILIES", "TORCH_BN", "TRACKED", "counters", "names", "order"]
