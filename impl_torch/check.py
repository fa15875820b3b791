"""``googlenet-suite check --torch``: a user's own ``nn.Module``, read and set in the neutral layout, run with
forward hooks on every module; its data flow (which module feeds which, and the order a ``torch.cat`` takes its
inputs in) seen in one forward through a ``TorchFunctionMode`` (``googlenet_suite/check/`` does the rest,
framework-free)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

CHANNELS_LAST = False

_CONV = (nn.Conv2d,)
_BN = (nn.BatchNorm2d,)
_POOL = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def is_model(obj) -> bool:
    return isinstance(obj, nn.Module)


def prepare(obj, spec):
    if not isinstance(obj, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(obj).__module__}.{type(obj).__name__}")
    return obj.eval()


def parameters(model: nn.Module) -> list[dict]:
    """Conv, BN and Linear tensors in registration order: ``{name, module, role, shape}`` (torch's layout is the
    neutral one: OIHW, (out, in))."""
    out = []
    for mod_name, module in model.named_modules():
        if isinstance(module, _CONV):
            roles = {"weight": "conv.weight", "bias": "conv.bias"}
        elif isinstance(module, _BN):
            roles = {"weight": "bn.gamma", "bias": "bn.beta", "running_mean": "bn.running_mean",
                     "running_var": "bn.running_var"}
        elif isinstance(module, nn.Linear):
            roles = {"weight": "dense.weight", "bias": "dense.bias"}
        else:
            continue
        tensors = {**dict(module.named_parameters(recurse=False)), **dict(module.named_buffers(recurse=False))}
        for attr, role in roles.items():
            tensor = tensors.get(attr)
            if tensor is not None:
                out.append({"name": f"{mod_name}.{attr}" if mod_name else attr, "module": mod_name or "(root)",
                            "role": role, "shape": tuple(tensor.shape)})
    return out


def load(model: nn.Module, values: dict[str, np.ndarray]) -> None:
    state = model.state_dict()
    with torch.no_grad():
        for name, value in values.items():
            target = state[name]
            target.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(target.dtype))


def run(model: nn.Module, x: np.ndarray):
    """Logits and every module's output, in the order the modules finish."""
    records = []

    def hook(name, module):
        kind = ("conv" if isinstance(module, _CONV) else "bn" if isinstance(module, _BN) else
                "dense" if isinstance(module, nn.Linear) else "pool" if isinstance(module, _POOL) else "other")

        def record(mod, args, output):
            if isinstance(output, torch.Tensor) and output.dim() in (2, 4):
                records.append({"name": name, "kind": kind, "value": output.detach().cpu().float().numpy().copy(),
                                "pre_activation": kind in ("conv", "bn", "dense")})
        return record

    handles = [module.register_forward_hook(hook(name, module))
               for name, module in model.named_modules() if name]
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            out = model.eval()(torch.from_numpy(x).to(device))
    finally:
        for handle in handles:
            handle.remove()
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "logits"):  # torchvision's GoogLeNetOutputs
        out = out.logits
    return out.detach().cpu().float().numpy(), records


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


class _DataFlow(TorchFunctionMode):
    """Which node each tensor comes from: a leaf module (its forward hook names its output), or a torch function
    with two or more traced inputs (``torch.cat``, an add), which becomes a node of its own with its inputs in
    order; a function of one traced input (``F.relu``, a view) passes its origin on."""

    def __init__(self):
        super().__init__()
        self.origin: dict[int, str] = {}
        self.edges: dict[str, tuple[str, ...]] = {}
        self.alive: list[torch.Tensor] = []  # ids stay unique while the tensors live

    def mark(self, value, name: str) -> None:
        for tensor in _tensors(value):
            self.origin[id(tensor)] = name
            self.alive.append(tensor)

    def sources(self, value) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.origin[id(t)] for t in _tensors(value) if id(t) in self.origin))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sources = self.sources((args, kwargs))
        if len(sources) > 1:
            name = f"{getattr(func, '__name__', 'op')}#{len(self.edges)}"
            self.edges[name] = sources
            self.mark(out, name)
        elif sources:
            self.mark(out, sources[0])
        return out


def flow(model: nn.Module, x: np.ndarray) -> dict | None:
    """One forward (its own weights) traced: every leaf module -> the nodes that feed it, in order, and the output
    node. None where the forward does not run so (the order modules ran in then stands for the data flow)."""
    tracer = _DataFlow()
    leaves = [(name, module) for name, module in model.named_modules() if name and not any(module.children())]

    def before(name):
        def hook(module, args):
            tracer.edges[name] = tracer.edges.get(name, ()) + tracer.sources(args)
        return hook

    def after(name):
        def hook(module, args, output):
            tracer.mark(output, name)
        return hook

    handles = [h for name, module in leaves for h in (module.register_forward_pre_hook(before(name)),
                                                      module.register_forward_hook(after(name)))]
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        inputs = torch.from_numpy(x).to(device)
        tracer.mark(inputs, "(input)")
        with torch.no_grad(), tracer:
            out = model.eval()(inputs)
    except Exception:
        return None
    finally:
        for handle in handles:
            handle.remove()
    first = _tensors(getattr(out, "logits", out))[:1]
    outputs = tracer.sources(first)
    return {"edges": tracer.edges, "outputs": outputs} if outputs else None
