"""The hand-written networks ``googlenet-suite bench --handwritten`` pairs with the spec-built models in PyTorch: a
table from variant to the network written by hand for it (``handwritten.py``'s torchvision GoogLeNet,
``handwritten_inception.py``'s torchvision and pytorch-fid Inception v3), and the door that picks one. A module of
its own: ``handwritten_inception`` builds on ``handwritten``'s ``BasicConv2d``, so the table that names both sits
above them.
"""

from __future__ import annotations

from torch import nn

import shared_spec
from shared_spec.protocol import handwritten_reference

from .builder import resolve_device
from .handwritten import GoogLeNet
from .handwritten_inception import Inception3

#: variant -> its hand-written network, for ``spec``'s classes (and input channels)
REFERENCES = {
    "googlenet": lambda spec: GoogLeNet(num_classes=spec.num_classes, in_channels=spec.in_channels),
    "inception-v3": lambda spec: Inception3(spec.num_classes),  # torchvision's Inception3
    "inception-v3-fid": lambda spec: Inception3(spec.num_classes, fid=True),  # pytorch-fid's FID network
}


def handwritten(spec: shared_spec.Spec, *, device: str = "auto") -> nn.Module:
    """The hand-written network of ``spec``'s variant (``REFERENCES``) for its classes, on ``device``; a variant
    without one is refused (``shared_spec.ContractError``, one line)."""
    build = handwritten_reference("PyTorch", REFERENCES, spec)
    return build(spec).to(resolve_device(device))
