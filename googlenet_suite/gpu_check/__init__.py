"""``googlenet-suite gpu-check`` (and ``scripts/gpu-check``): the suite on a GPU, checked and timed in one run.

Sections, each with its own time guard so the whole run stays under 8 minutes on one H200:

1. environment: python, numpy, torch, CUDA, cuDNN, the device, jax/keras/onnxruntime if present;
2. the PyTorch builder on CUDA against the same builder on the CPU, in full fp32 (TF32 off): the same
   reference weights (``harness.reference_weights``: seeded, BatchNorm calibrated), logits and every
   ``layer_outputs`` entry within ``harness.TOLERANCE`` (the harness's per-layer rule) for ``googlenet`` at
   224 and ``d2l`` at 96, and one ``train_step`` (loss and input gradient within it, relative);
3. the Keras builder (impl_tf) on Keras's JAX and torch backends on the GPU against PyTorch's CUDA logits,
   each in a child process (Keras picks its backend at import), skipped with the reason when keras or jax
   is absent;
4. a torch benchmark through ``impl_torch.bench``'s runner: plain (eager fp32, TF32 off) and fast
   (channels_last + torch.compile + bf16 autocast), forward and an SGD training step, images/s, peak
   memory, bf16-vs-fp32 logits, and the H200 targets (bf16 forward >= 20,000 img/s, training >= 5,000
   img/s at 224);
5. OUT/gpu_check.json (every figure) and OUT/gpu_check.md (its tables), the markdown printed.

``--cpu`` runs all of it on the CPU with tiny sizes (the files have the same sections), so the tests can
run it anywhere; ``--quick`` cuts repeats (and, on the CPU, torch.compile); ``--variant NAME`` runs every
section on that variant instead of googlenet and d2l (Inception v3: 299x299 on the GPU, 75x75 with ``--cpu``). Exit 0 when every equivalence
check passes, 1 when one fails or the check cannot run here (a missing package, no CUDA device: one line
naming it), 2 for a bad option or an --out that cannot be made.

This module imports only the standard library until the packages the check needs are known to be there:
on the GPU machine the checkout runs without pip install, and a missing jsonschema is one line, not a
traceback from ``shared_spec``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

USAGE = "scripts/gpu-check [--out DIR] [--cpu] [--quick] [--variant NAME]"
REQUIRED = (("numpy", "the builders take and return numpy arrays"),
            ("jsonschema", "shared_spec validates the JSON spec with it when it loads the spec"),
            ("torch", "the check runs the PyTorch builder"))
CARRY = ("on a machine with internet: `pip download {pkg} --only-binary=:all: --python-version 3.12 "
         "--platform manylinux2014_x86_64 -d wheels`; on this one: `pip install --no-index --find-links wheels "
         "--target vendor {pkg}` and rerun with PYTHONPATH=vendor")


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options, for ``googlenet-suite gpu-check`` and ``scripts/gpu-check`` alike."""
    parser.add_argument("--out", default="gpu-check-results", metavar="DIR",
                        help="folder for gpu_check.json and gpu_check.md (default: gpu-check-results)")
    parser.add_argument("--cpu", action="store_true", help="everything on the CPU with tiny sizes (for tests)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats; on the CPU no torch.compile")
    parser.add_argument("--variant", metavar="NAME",
                        help="every section on this variant alone (e.g. inception-v3, inception-v3-keras, "
                             "inception-v3-fid, inception-v3-gluon), at its own size on the GPU, at 64x64 or its "
                             "smallest input with --cpu (default: googlenet and d2l, the README's)")


def _missing(module: str, why: str) -> str | None:
    """None when ``module`` imports; else one line naming what is missing and how to carry it."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        detail = "" if missing == module else f" (it needs '{missing}', which is missing)"
        return f"missing Python package '{module}'{detail}: {why}. Carry it as a wheel: {CARRY.format(pkg=module)}"
    return None


def _unavailable(*, cpu: bool) -> str | None:
    """Why the check cannot run here (a package it needs is missing, or torch sees no CUDA device), or None."""
    for module, why in REQUIRED:
        if problem := _missing(module, why):
            return problem
    from .. import frameworks  # the suite's own modules import shared_spec, so jsonschema: only now

    torch_side = frameworks.part("torch", "gpu_check")
    if cpu or torch_side.cuda_available():
        return None
    versions = torch_side.versions()
    return (f"torch sees no CUDA device (torch.cuda.is_available() is False; torch {versions['torch']}, built for "
            f"CUDA {versions['torch_cuda']}); use --cpu for the CPU rehearsal")


def execute(out: Path, *, cpu: bool, quick: bool, variant: str | None = None) -> int:
    """Run the check (``cpu``: its CPU rehearsal; ``variant``: every section on that variant), write
    ``out``/gpu_check.json and gpu_check.md, print the markdown. Returns the exit code: 0 when every equivalence
    check passed, 1 when one failed or the check cannot run here (said in one line on stderr). Raises
    ``shared_spec.InputError`` for an ``out`` that cannot be made or an unknown ``variant``, before anything
    is written."""
    if problem := _unavailable(cpu=cpu):
        print(f"gpu-check: {problem}", file=sys.stderr)
        return 1
    from .run import run  # numpy, shared_spec and the harness, now known to import

    return run(out, cpu=cpu, quick=quick, variant=variant)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage and two lines)
        print(f"gpu-check: error: {message} (usage: {USAGE})", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    """``scripts/gpu-check``: the same check as ``googlenet-suite gpu-check``, every problem one line."""
    parser = _Parser(prog="gpu-check", description=__doc__.splitlines()[0])
    add_options(parser)
    args = parser.parse_args(argv)
    try:
        return execute(Path(args.out), cpu=args.cpu, quick=args.quick, variant=args.variant)
    except Exception as exc:
        from shared_spec.errors import InputError  # importable: execute raises only past its requirements

        if not isinstance(exc, InputError):
            raise
        print(f"gpu-check: error: {exc}", file=sys.stderr)
        return 2
